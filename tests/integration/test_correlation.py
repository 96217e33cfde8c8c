"""Teardown correlation across replicas: two `connector run` processes against one SQS queue and one
DynamoDB window table (moto) take a burst of 8 deletions by one principal → 8 findings and exactly
one teardown finding listing all 8 in Security Hub; after a restart a ninth deletion updates that
same teardown finding (same id, 9 members).

DynamoDB is a moto server that serves one request at a time (``tests/support/moto_serial.py``):
moto's threaded server can lose one of two concurrent writes to an item, which DynamoDB cannot.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.correlate import DynamoWindowStore
from tests.support.moto import MotoServer
from tests.support.moto_serial import serial_moto_server
from tests.support.records import IAM_USER, an_event, make_record
from tests.support.service import http_get, make_queues, queue_depth, service_env, service_log, start_service, wait_for

ACCOUNT = "123456789012"  # moto's own: default-product findings are importable without a role
REGION = "eu-west-1"  # the records' region


def deletion(tag: str, i: int, principal: dict[str, Any]) -> str:
    record = make_record(an_event(i), event_id=f"{tag}-{i:02d}", recipientAccountId=ACCOUNT,
                         eventTime=f"2026-11-20T10:15:{30 + i:02d}Z", userIdentity=principal)
    return json.dumps(record)


def findings() -> list[dict[str, Any]]:
    client = boto3.client("securityhub", region_name=REGION)
    found, token = [], None
    while True:
        page = client.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
        found += page["Findings"]
        token = page.get("NextToken")
        if not token:
            return found


def state(tag: str, arn: str) -> tuple[set[str], list[dict[str, Any]]]:
    """(ids of this test's member findings, this principal's teardown findings)."""
    everything = findings()
    members = {f["Id"] for f in everything if f["Id"].rsplit("/", 1)[-1].startswith(f"{tag}-")}
    teardowns = [f for f in everything if f.get("GeneratorId") == "network-teardown"
                 and f["ProductFields"].get("connector/correlation/subject") == arn]
    return members, teardowns


def related(teardown: dict[str, Any]) -> set[str]:
    return {r["Id"] for r in teardown["RelatedFindings"]}


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[MotoServer]:
    with serial_moto_server() as server:
        yield server


def test_two_consumers_one_teardown_then_updated_after_restart(aws_env: MotoServer, dynamodb: MotoServer,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.url)
    for region in (REGION, "us-east-1"):  # the events' Region, and the sink's health check's
        boto3.client("securityhub", region_name=region).enable_security_hub()
    tag = f"td{uuid.uuid4().hex[:8]}"
    arn = f"arn:aws:iam::{ACCOUNT}:user/{tag}"
    principal = {**IAM_USER, "arn": arn, "userName": tag, "accountId": ACCOUNT}
    table = f"{tag}-windows"
    DynamoWindowStore(table).create_table_if_missing()
    queue, dlq = make_queues(f"{tag}-q")
    sqs = boto3.client("sqs")

    def consumer(name: str) -> subprocess.Popen[str]:
        # One message a receive and a batch: the burst is split between the processes (and
        # their pollers) and the window is written concurrently, message by message.
        env = service_env(aws_env, queue, dlq, tmp_path / name, CONNECTOR_SINKS="securityhub",
                          CONNECTOR_SQS_MAX_MESSAGES="1", CONNECTOR_GATHER_MESSAGES="1",
                          CONNECTOR_CORRELATION_ENABLED="true", CONNECTOR_CORRELATION_STORE="dynamodb",
                          CONNECTOR_CORRELATION_TABLE=table, CONNECTOR_CORRELATION_THRESHOLD="5",
                          CONNECTOR_CORRELATION_WINDOW_SECONDS="600", AWS_ENDPOINT_URL_DYNAMODB=dynamodb.url)
        proc = start_service(env)
        proc.base = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}"  # type: ignore[attr-defined]
        return proc

    procs = [consumer("a"), consumer("b")]
    try:
        for proc in procs:
            wait_for(lambda p=proc: http_get(f"{p.base}/readyz")[0] == 200 or p.poll() is not None, timeout=60)
            assert proc.poll() is None, service_log(proc)
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "MessageBody": deletion(tag, i, principal)} for i in range(8)])
        wait_for(lambda: queue_depth(queue) == 0, timeout=90)
        try:
            wait_for(lambda: (s := state(tag, arn)) and len(s[0]) == 8 and len(s[1]) == 1 and related(s[1][0]) == s[0],
                     timeout=30)
        except AssertionError:
            members, teardowns = state(tag, arn)
            raise AssertionError(f"{len(members)} members, {len(teardowns)} teardowns; logs:\n"
                                 + "\n".join(service_log(p)[-3000:] for p in procs)) from None
        time.sleep(1.5)  # anything still in flight would show now
        members, teardowns = state(tag, arn)
        logs = [service_log(p) for p in procs]
    finally:
        stop(procs)
    assert len(members) == 8
    assert len(teardowns) == 1, [t["Id"] for t in teardowns]
    teardown = teardowns[0]
    assert related(teardown) == members
    assert {r["Id"] for r in teardown["FindingProviderFields"]["RelatedFindings"]} == members
    assert teardown["Severity"]["Label"] in ("HIGH", "CRITICAL")
    assert teardown["ProductFields"]["connector/correlation/memberCount"] == "8"
    assert "Workflow" not in teardown or teardown["Workflow"].get("Status") == "NEW"
    assert not any("Traceback" in text for text in logs), logs
    first_id, first_updated = teardown["Id"], teardown["UpdatedAt"]

    # A restart (nothing kept in process memory), then a ninth deletion in the same window.
    procs = [consumer("c")]
    try:
        wait_for(lambda: http_get(f"{procs[0].base}/readyz")[0] == 200, timeout=60)  # type: ignore[attr-defined]
        sqs.send_message(QueueUrl=queue, MessageBody=deletion(tag, 8, principal))
        wait_for(lambda: (s := state(tag, arn)) and len(s[1]) == 1 and len(related(s[1][0])) == 9, timeout=60)
        members, teardowns = state(tag, arn)
    finally:
        stop(procs)
    assert len(members) == 9 and len(teardowns) == 1
    assert teardowns[0]["Id"] == first_id
    assert related(teardowns[0]) == members
    assert teardowns[0]["ProductFields"]["connector/correlation/memberCount"] == "9"
    assert teardowns[0]["UpdatedAt"] > first_updated
