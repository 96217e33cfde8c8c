"""Helpers to run `connector run` as a subprocess against moto (and OpenSearch) and to read sinks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from tests.support.moto import MotoServer, free_port
from tests.support.records import an_event, make_record


def make_queues(name: str) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    return queue, dlq


def send_events(queue_url: str, prefix: str, count: int, account: str = "123456789012") -> list[str]:
    sqs = boto3.client("sqs")
    ids = []
    for start in range(0, count, 10):
        entries = []
        for i in range(start, min(count, start + 10)):
            event_id = f"{prefix}-{i:04d}"
            ids.append(event_id)
            body = json.dumps(make_record(an_event(i), event_id=event_id, recipientAccountId=account))
            entries.append({"Id": str(i - start), "MessageBody": body})
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    return ids


def queue_depth(queue_url: str) -> int:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def jsonl_ids(directory: Path, fmt: str = "asff") -> list[str]:
    path = directory / f"{fmt}.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        out.append((doc.get("Id") or doc["finding_info"]["uid"]).rsplit("/", 1)[-1])
    return out


def service_env(moto: MotoServer, queue_url: str, dlq_url: str, out: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ, **moto.env(),
        "CONNECTOR_SOURCE": "sqs", "CONNECTOR_SQS_QUEUE_URL": queue_url, "CONNECTOR_SQS_WAIT_SECONDS": "1",
        "CONNECTOR_SQS_VISIBILITY_TIMEOUT": "30", "CONNECTOR_DEAD_LETTER": dlq_url, "CONNECTOR_SINKS": "jsonl",
        "CONNECTOR_JSONL_DIRECTORY": str(out), "CONNECTOR_HTTP_PORT": str(free_port()), "CONNECTOR_HTTP_HOST": "127.0.0.1",
        "CONNECTOR_GRACE_SECONDS": "20", **extra,
    }


def start_service(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`connector run` in the background, its output in a file (``proc.log_path``).

    Never a pipe nobody reads: once 64 KB of logs fill it, the service blocks in a log write
    while holding the logging lock, and then cannot even handle SIGTERM.
    """
    log = tempfile.NamedTemporaryFile(prefix="connector-run-", suffix=".log", delete=False)  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([sys.executable, "-m", "connector", "run", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    proc.log_path = Path(log.name)  # type: ignore[attr-defined]
    log.close()
    return proc


def service_log(proc: subprocess.Popen[str]) -> str:
    return Path(proc.log_path).read_text(errors="replace")[-3000:]  # type: ignore[attr-defined]


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""
