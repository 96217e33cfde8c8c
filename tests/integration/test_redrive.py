"""``connector redrive`` against each dead-letter destination: files, S3 and SQS (moto server).

Letters are written by the destinations themselves (the same ``put`` the pipeline uses), then
redriven by the command in a subprocess, as an operator runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import boto3

from connector.deadletters import dead_letter_kind
from connector.model import DeadLetter
from tests.support.moto import MotoServer
from tests.support.records import an_event, make_record

EVENT_IDS = [f"0d0d0d0d-0000-4000-8000-{i:012d}" for i in range(3)]


def letters() -> list[DeadLetter]:
    """Three records whose delivery had failed, and one undecodable body."""
    out = [DeadLetter(stage="deliver", reason="opensearch: ConnectionError: down", record_id=eid,
                      body=json.dumps(make_record(an_event(i), event_id=eid)).encode(), source="sqs")
           for i, eid in enumerate(EVENT_IDS)]
    out.append(DeadLetter(stage="decode", reason="not JSON, gzip or base64", record_id="junk-1", body=b"\xff\x00junk",
                          source="sqs"))
    return out


def redrive(url: str, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(env or os.environ)
    environ.update({"CONNECTOR_SINKS": "jsonl", "CONNECTOR_JSONL_DIRECTORY": str(tmp_path / "out"),
                    "CONNECTOR_DEAD_LETTER": url})
    return subprocess.run([sys.executable, "-m", "connector", "redrive", url, *extra], env=environ,
                          capture_output=True, text=True, timeout=120)


def delivered(tmp_path: Path) -> list[str]:
    path = tmp_path / "out" / "asff.jsonl"
    if not path.exists():
        return []
    return sorted(json.loads(line)["Id"].rsplit("/", 1)[-1] for line in path.read_text().splitlines() if line)


def exercise(url: str, tmp_path: Path, remaining: Callable[[], list[dict]], env: dict[str, str] | None = None) -> None:
    dead_letter_kind(url)(url).put(letters())
    dry = redrive(url, tmp_path, "--dry-run", "--stage", "deliver", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "3 letters would be redriven" in dry.stderr and "deliver: 3" in dry.stderr, dry.stderr
    assert delivered(tmp_path) == [] and len(remaining()) == 4, "a dry run changes nothing"

    done = redrive(url, tmp_path, "--stage", "deliver", env=env)
    assert done.returncode == 0, done.stderr
    assert delivered(tmp_path) == sorted(EVENT_IDS)
    left = remaining()
    assert [d["stage"] for d in left] == ["decode"], "only the letter the filter left out remains"

    again = redrive(url, tmp_path, env=env)  # the junk fails again: a new letter with the new reason
    assert again.returncode == 0, again.stderr
    left = remaining()
    assert len(left) == 1 and left[0]["stage"] == "decode" and left[0]["reason"], left
    assert delivered(tmp_path) == sorted(EVENT_IDS), "nothing delivered twice"


def test_redrive_file_letters(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/dlq"

    def remaining() -> list[dict]:
        path = tmp_path / "dlq" / "dead-letters.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    exercise(url, tmp_path, remaining)


def test_redrive_s3_letters(aws_env: MotoServer, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dead-letter-bucket")
    url = "s3://dead-letter-bucket/letters"

    def remaining() -> list[dict]:
        listing = s3.list_objects_v2(Bucket="dead-letter-bucket", Prefix="letters").get("Contents", [])
        return [json.loads(s3.get_object(Bucket="dead-letter-bucket", Key=o["Key"])["Body"].read()) for o in listing]

    exercise(url, tmp_path, remaining, env=dict(os.environ, **aws_env.env()))


def test_redrive_sqs_letters(aws_env: MotoServer, tmp_path: Path) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="redrive-dlq")["QueueUrl"]

    def remaining() -> list[dict]:
        out, seen = [], 0
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                      VisibilityTimeout=0, WaitTimeSeconds=0).get("Messages", [])
            if not got or seen > 20:
                break
            seen += 1
            out.extend({k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()} for m in got)
            if len(out) >= 10:
                break
        unique = {(d.get("record_id"), d.get("reason")): d for d in out}
        return list(unique.values())

    exercise(url, tmp_path, remaining, env=dict(os.environ, **aws_env.env()))


def test_redrive_needs_a_source(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "connector", "redrive"], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "CONNECTOR_DEAD_LETTER" in proc.stderr


def test_a_bad_reason_pattern_is_a_usage_error(tmp_path: Path) -> None:
    proc = redrive(f"file://{tmp_path}/dlq", tmp_path, "--reason", "(")
    assert proc.returncode == 2 and "regular expression" in proc.stderr


def test_redrive_from_a_missing_bucket_or_queue_fails_with_one_line(aws_env: MotoServer, tmp_path: Path) -> None:
    """A destination that cannot be read is not one without letters: exit non-zero, one line
    naming it and the cause (before, a missing bucket ran 0 letters and exited 0)."""
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-dead-letter-queue"
    for url, cause in (("s3://missing-bucket-redrive/letters", "NoSuchBucket"), (queue, "NonExistentQueue")):
        for extra in ((), ("--dry-run",)):
            done = redrive(url, tmp_path, *extra)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert done.returncode == 1, (url, extra, done.stderr)
            assert len(lines) == 1 and lines[0].startswith("connector redrive: cannot read dead letters from " + url), lines
            assert cause in lines[0] or "does not exist" in lines[0], lines
    assert delivered(tmp_path) == []
