"""End to end: target events into SQS and into Kinesis (moto) → `connector run` → every finding
exactly once in Security Hub (GetFindings) and in both OpenSearch indexes; sending the same events
again changes no counts. And OpenSearch stopped for 30 s mid-stream: nothing is acknowledged that
is not delivered, and everything arrives once it is back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from connector.sources.kinesis.checkpoints import CheckpointStore
from tests.support.moto import MotoServer
from tests.support.opensearch import OpenSearchNode
from tests.support.records import an_event, make_record
from tests.support.service import (
    make_queues,
    queue_depth,
    send_events,
    service_env,
    service_log,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.opensearch


def os_count(url: str, index: str) -> int:
    client = OpenSearch(hosts=[url])
    client.indices.refresh(index=index, ignore_unavailable=True)
    return int(client.count(index=index, ignore_unavailable=True)["count"])


def counts_settled(url: str, prefix: str, expected: int) -> bool:
    """After a restart the node answers 503 until its shards are recovered: keep waiting."""
    try:
        return os_count(url, f"{prefix}-asff") == expected and os_count(url, f"{prefix}-ocsf") == expected
    except TransportError:
        return False


def sh_ids(prefix: str) -> list[str]:
    client = boto3.client("securityhub", region_name="eu-west-1")  # the events' region
    found, token = [], None
    while True:
        kwargs = {"MaxResults": 100, **({"NextToken": token} if token else {})}
        page = client.get_findings(**kwargs)
        found += [f["Id"] for f in page["Findings"] if f"/{prefix}" in f["Id"]]
        token = page.get("NextToken")
        if not token:
            return found


def run_once(env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def put_kinesis(stream: str, ids: list[str]) -> None:
    kinesis = boto3.client("kinesis")
    for i, event_id in enumerate(ids):
        record = make_record(an_event(i), event_id=event_id, recipientAccountId="123456789012")
        kinesis.put_record(StreamName=stream, Data=json.dumps(record).encode(), PartitionKey=event_id)


def test_sqs_and_kinesis_to_security_hub_and_opensearch_exactly_once(aws_env: MotoServer, opensearch_url: str, tmp_path: Path) -> None:
    boto3.client("securityhub", region_name="eu-west-1").enable_security_hub()
    tag = f"e2e{uuid.uuid4().hex[:6]}"
    prefix = f"{tag}-idx"
    common = {"CONNECTOR_SINKS": "securityhub,opensearch", "CONNECTOR_OPENSEARCH_URL": opensearch_url,
              "CONNECTOR_OPENSEARCH_INDEX_PREFIX": prefix}
    # SQS
    queue, dlq = make_queues(f"{tag}-q")
    sqs_ids = send_events(queue, f"{tag}s", 25)
    sqs_env = service_env(aws_env, queue, dlq, tmp_path, **common)
    run_once(sqs_env)
    # Kinesis
    stream = f"{tag}-stream"
    boto3.client("kinesis").create_stream(StreamName=stream, ShardCount=2)
    boto3.client("kinesis").get_waiter("stream_exists").wait(StreamName=stream)
    CheckpointStore(f"{tag}-cp", stream).create_table_if_missing()
    kinesis_ids = [f"{tag}k-{i:04d}" for i in range(25)]
    put_kinesis(stream, kinesis_ids)
    kinesis_env = dict(sqs_env, CONNECTOR_SOURCE="kinesis", CONNECTOR_KINESIS_STREAM_NAME=stream,
                       CONNECTOR_KINESIS_CHECKPOINT_TABLE=f"{tag}-cp", CONNECTOR_DEAD_LETTER=f"file://{tmp_path}/dlq")
    run_once(kinesis_env)

    def counts() -> tuple[int, int, int, int]:
        found = sh_ids(tag)
        return len(found), len(set(found)), os_count(opensearch_url, f"{prefix}-asff"), os_count(opensearch_url, f"{prefix}-ocsf")

    assert counts() == (50, 50, 50, 50)
    assert {i.rsplit("/", 1)[-1] for i in sh_ids(tag)} == set(sqs_ids) | set(kinesis_ids)
    # The same events again, through both sources: nothing changes.
    send_events(queue, f"{tag}s", 25)
    run_once(sqs_env)
    put_kinesis(stream, kinesis_ids)
    run_once(kinesis_env)
    assert counts() == (50, 50, 50, 50)
    assert queue_depth(queue) == 0


def test_opensearch_down_for_30_seconds(aws_env: MotoServer, opensearch_node: OpenSearchNode | None, tmp_path: Path) -> None:
    if opensearch_node is None:
        pytest.skip("needs the test-bed node (OPENSEARCH_URL names an external one that the test cannot stop)")
    url = opensearch_node.url
    tag = f"out{uuid.uuid4().hex[:6]}"
    prefix = f"{tag}-idx"
    queue, dlq = make_queues(f"{tag}-q")
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_SINKS="opensearch", CONNECTOR_OPENSEARCH_URL=url,
                      CONNECTOR_OPENSEARCH_INDEX_PREFIX=prefix, CONNECTOR_OPENSEARCH_MAX_ATTEMPTS="2",
                      CONNECTOR_OPENSEARCH_TIMEOUT_SECONDS="3", CONNECTOR_SQS_VISIBILITY_TIMEOUT="10")
    proc = start_service(env)
    try:
        first = send_events(queue, f"{tag}a", 20)
        wait_for(lambda: counts_settled(url, prefix, 20), timeout=120)
        opensearch_node.stop()
        try:
            during = send_events(queue, f"{tag}b", 20)
            time.sleep(30)
            # Down the whole time: none of the new messages may have been acknowledged.
            assert queue_depth(queue) == len(during)
        finally:
            opensearch_node.start()
        try:
            wait_for(lambda: counts_settled(url, prefix, 40), timeout=180, interval=1)
        except AssertionError:
            raise AssertionError(f"not everything arrived after the outage; service log:\n{service_log(proc)}") from None
        wait_for(lambda: queue_depth(queue) == 0, timeout=60)
        assert len(first) + len(during) == 40
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
