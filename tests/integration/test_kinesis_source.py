"""Kinesis source against a moto server: restart after SIGKILL loses nothing, a shard split loses
nothing and parents are read before children, expired iterators resume from the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from connector.build import build_pipeline
from connector.config import load_settings
from connector.model import SourceMessage
from connector.runtime.runner import Runner
from connector.sources.kinesis.checkpoints import CheckpointStore
from connector.sources.kinesis.source import KinesisSource
from tests.support.moto import MotoServer
from tests.support.records import an_event, make_record

NOISE = {"eventVersion": "1.08", "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-east-1",
         "eventTime": "2026-11-20T10:00:00Z", "recipientAccountId": "123456789012"}


def make_stream(shards: int = 2) -> tuple[str, str]:
    kinesis = boto3.client("kinesis")
    name = f"ct-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    table = f"cp-{name}"
    CheckpointStore(table, name).create_table_if_missing()
    return name, table


def put(stream: str, ids: list[str], noise_every: int = 3) -> None:
    kinesis = boto3.client("kinesis")
    for i, event_id in enumerate(ids):
        record = make_record(an_event(i), event_id=event_id, recipientAccountId="123456789012")
        kinesis.put_record(StreamName=stream, Data=json.dumps(record).encode(), PartitionKey=event_id)
        if i % noise_every == 0:
            kinesis.put_record(StreamName=stream, Data=json.dumps(dict(NOISE, eventID=f"n-{event_id}")).encode(), PartitionKey=f"n{i}")


def delivered(directory: Path) -> list[str]:
    path = directory / "asff.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line)["Id"].rsplit("/", 1)[-1])
        except (ValueError, KeyError):
            pass  # a line cut by SIGKILL
    return out


def env_for(moto: MotoServer, stream: str, table: str, out: Path) -> dict[str, str]:
    return {
        **os.environ, **moto.env(),
        "CONNECTOR_SOURCE": "kinesis", "CONNECTOR_SINKS": "jsonl", "CONNECTOR_JSONL_DIRECTORY": str(out),
        "CONNECTOR_DEAD_LETTER": f"file://{out}/dlq", "CONNECTOR_KINESIS_STREAM_NAME": stream,
        "CONNECTOR_KINESIS_CHECKPOINT_TABLE": table, "CONNECTOR_KINESIS_MAX_RECORDS": "2",
        "CONNECTOR_KINESIS_IDLE_SLEEP_SECONDS": "0.2", "CONNECTOR_HTTP_PORT": "0",
    }


def test_sigkill_mid_stream_then_restart_loses_nothing(aws_env: MotoServer, tmp_path: Path) -> None:
    stream, table = make_stream(2)
    ids = [f"kill-{i:04d}" for i in range(150)]
    put(stream, ids)
    env = env_for(aws_env, stream, table, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "connector", "run"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(set(delivered(tmp_path))) < 20:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = set(delivered(tmp_path))
    assert 0 < len(before) < len(ids), "the kill should land mid-stream"
    again = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    after = delivered(tmp_path)
    assert set(after) == set(ids)  # none lost
    # Duplicates only for records after the last checkpoint (re-read, and overwritten by id in real sinks).
    assert len(after) - len(set(after)) <= 2 * 2


def run_until_drained(stream: str, table: str, out: Path, **extra: str) -> Runner:
    env = {"CONNECTOR_SOURCE": "kinesis", "CONNECTOR_SINKS": "jsonl", "CONNECTOR_JSONL_DIRECTORY": str(out),
           "CONNECTOR_DEAD_LETTER": f"file://{out}/dlq", "CONNECTOR_KINESIS_STREAM_NAME": stream,
           "CONNECTOR_KINESIS_CHECKPOINT_TABLE": table, "CONNECTOR_KINESIS_IDLE_SLEEP_SECONDS": "0.1", **extra}
    settings = load_settings(environ=env)
    runner = Runner(KinesisSource.from_settings(settings), build_pipeline(settings), once=True)
    assert runner.run() == 0
    return runner


def test_shard_split_loses_nothing_and_parents_come_first(aws_env: MotoServer, tmp_path: Path) -> None:
    stream, table = make_stream(1)
    kinesis = boto3.client("kinesis")
    first = [f"parent-{i:03d}" for i in range(20)]
    put(stream, first)
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]
    middle = str((int(shard["HashKeyRange"]["StartingHashKey"]) + int(shard["HashKeyRange"]["EndingHashKey"])) // 2)
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=middle)
    second = [f"child-{i:03d}" for i in range(20)]
    put(stream, second)
    run_until_drained(stream, table, tmp_path)
    order = delivered(tmp_path)
    assert set(order) == set(first) | set(second)
    last_parent = max(i for i, event_id in enumerate(order) if event_id.startswith("parent"))
    first_child = min(i for i, event_id in enumerate(order) if event_id.startswith("child"))
    assert last_parent < first_child
    checkpoints = CheckpointStore(table, stream).load()
    assert checkpoints[shard["ShardId"]].finished


def test_restart_resumes_at_the_checkpoint(aws_env: MotoServer, tmp_path: Path) -> None:
    stream, table = make_stream(1)
    put(stream, [f"a-{i}" for i in range(10)])
    run_until_drained(stream, table, tmp_path)
    put(stream, [f"b-{i}" for i in range(10)])
    run_until_drained(stream, table, tmp_path)
    ids = delivered(tmp_path)
    assert len(ids) == len(set(ids)) == 20  # nothing read twice, nothing missed


def test_expired_iterator_and_throttling_resume_from_checkpoint(aws_env: MotoServer, tmp_path: Path) -> None:
    from botocore.config import Config

    from tests.support.faultproxy import FaultProxy

    stream, table = make_stream(1)
    put(stream, [f"e-{i}" for i in range(6)], noise_every=100)
    with FaultProxy(aws_env.url) as proxy:
        client = boto3.client("kinesis", endpoint_url=proxy.url, config=Config(retries={"max_attempts": 1}))
        # No read-ahead: the faults must meet the call made after the checkpoint, not a page
        # already read ahead before they were set.
        source = KinesisSource(stream, CheckpointStore(table, stream), max_records=3, client=client, read_ahead=False)
        batch = source.receive() or source.receive()
        assert len(batch) == 3
        source.ack(batch)
        with proxy.lock:
            proxy.faults.fail_targets["Kinesis_20131202.GetRecords"] = [400, "ExpiredIteratorException", 1]
        assert source.receive() == []  # the expired iterator is dropped ...
        with proxy.lock:
            proxy.faults.fail_targets["Kinesis_20131202.GetRecords"] = [400, "ProvisionedThroughputExceededException", 2]
        got = source.receive()  # ... and recreated from the checkpoint, through throttling
        # The first batch was e-0, one noise record, e-1: reading resumes right after e-1.
        assert [json.loads(m.body)["eventID"] for m in batch] == ["e-0", "n-e-0", "e-1"]
        assert [json.loads(m.body)["eventID"] for m in got] == ["e-2", "e-3", "e-4"]
        assert [r.answer for r in proxy.requests if r.answer.startswith("failed")] == [
            "failed:ExpiredIteratorException", "failed:ProvisionedThroughputExceededException",
            "failed:ProvisionedThroughputExceededException"]


def test_the_page_read_ahead_is_used_once_and_dropped_on_a_rewind(aws_env: MotoServer, tmp_path: Path) -> None:
    stream, table = make_stream(1)
    put(stream, [f"r-{i}" for i in range(9)], noise_every=100)
    client = boto3.client("kinesis")
    reads: list[str] = []
    client.meta.events.register("before-call.kinesis.GetRecords", lambda **kwargs: reads.append("GetRecords"))
    source = KinesisSource(stream, CheckpointStore(table, stream), max_records=3, client=client)

    def ids(batch: list[SourceMessage]) -> list[str]:
        return [json.loads(m.body)["eventID"] for m in batch]

    stored = ["r-0", "n-r-0"] + [f"r-{i}" for i in range(1, 9)]  # put() adds one noise record
    first = source.receive() or source.receive()
    assert ids(first) == stored[:3]
    source.release(first)  # rewound: the page read ahead (r-2 ...) must not be handed out
    page = source.receive() or source.receive()
    assert ids(page) == stored[:3]
    read = ids(page)
    while len(read) < len(stored):
        source.ack(page)
        page = source.receive()
        read += ids(page)
    assert read == stored
    source.close()
    # One call per page handed out (5: four pages and the rewound one again) and per page read
    # ahead that was not handed out (the one the rewind dropped, the one after the last page).
    assert len(reads) <= 7


@pytest.mark.parametrize("position", ["LATEST", "AT_TIMESTAMP"])
def test_start_positions(aws_env: MotoServer, tmp_path: Path, position: str) -> None:
    stream, table = make_stream(1)
    put(stream, [f"old-{i}" for i in range(5)])
    time.sleep(1.1)
    cut = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    time.sleep(1.1)
    settings = load_settings(environ={"CONNECTOR_KINESIS_STREAM_NAME": stream, "CONNECTOR_KINESIS_CHECKPOINT_TABLE": table,
                                      "CONNECTOR_KINESIS_START_POSITION": position, "CONNECTOR_KINESIS_START_TIMESTAMP": cut})
    source = KinesisSource.from_settings(settings)
    assert source.receive() == []  # positions the iterator (LATEST: after the old records)
    put(stream, [f"new-{i}" for i in range(5)])
    got = []
    for _ in range(5):
        got += source.receive()
    bodies = [json.loads(m.body)["eventID"] for m in got if b"eventName\": \"Delete" in m.body or b"Detach" in m.body]
    assert bodies and all(b.startswith("new-") for b in bodies)


# -- fault scenarios with their accounting (issue 10) -----------------------------------------


def _file_letters(out: Path) -> list[dict[str, str]]:
    path = out / "dlq" / "dead-letters.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _enable_security_hub(*regions: str) -> None:
    for region in regions:
        client = boto3.client("securityhub", region_name=region)
        try:
            client.enable_security_hub()
        except client.exceptions.ResourceConflictException:
            pass  # enabled by an earlier test


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_kill_9_at_random_points_loses_and_duplicates_nothing(aws_env: MotoServer, tmp_path: Path) -> None:
    """`connector run` on a 2-shard stream killed with SIGKILL at random points N times
    (CI or FAULTS_FULL=1: 10), a new wave of records before each start, then one run until every
    finding is in Security Hub: nothing lost, nothing held twice; JSONL and Security Hub
    imports repeat at most what was past the last checkpoint at each kill."""
    import random

    from tests.support.accounting import (
        FULL,
        SH_REGION,
        Accounting,
        forwarded_imports,
        jsonl_event_ids,
        security_hub_ids,
    )
    from tests.support.faultproxy import FaultProxy
    from tests.support.moto import free_port
    from tests.support.service import http_get, service_log, start_service, wait_for

    kills = 10 if FULL else 3
    rng = random.Random(int(os.environ.get("FAULTS_SEED", "10")))
    tag = f"kk{uuid.uuid4().hex[:6]}"
    stream, table = make_stream(2)
    out = tmp_path / "out"
    _enable_security_hub(SH_REGION, aws_env.env()["AWS_REGION"])
    sent: list[str] = []
    mid_delivery = 0  # kills that left the round's records partly delivered
    with FaultProxy(aws_env.url) as proxy:
        env = dict(env_for(aws_env, stream, table, out), CONNECTOR_SINKS="jsonl,securityhub", AWS_ENDPOINT_URL_SECURITYHUB=proxy.url,
                   CONNECTOR_HTTP_PORT=str(free_port()), CONNECTOR_HTTP_HOST="127.0.0.1")
        health = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}/healthz"
        for round_ in range(kills):
            ids = [f"{tag}r{round_:02d}-{i:03d}" for i in range(20)]
            put(stream, ids)
            sent += ids
            proc = start_service(env)
            wait_for(lambda p=proc: p.poll() is not None or http_get(health)[0], timeout=60)
            # A random point of the round's delivery: after k of its records reached JSONL.
            k = rng.randint(1, len(ids) - 5)
            wait_for(lambda ids=ids, k=k: len(set(ids) & set(jsonl_event_ids(out))) >= k, timeout=60, interval=0.05)
            proc.kill()
            proc.wait(timeout=10)
            mid_delivery += 0 < len(set(ids) & set(jsonl_event_ids(out))) < len(ids)
        proc = start_service(env)
        try:
            try:
                wait_for(lambda: set(sent) <= set(security_hub_ids(tag)) and set(sent) <= set(jsonl_event_ids(out)),
                         timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(f"not everything delivered after {kills} kills:\n{service_log(proc)}") from None
        finally:
            _stop(proc)
        letters = _file_letters(out)
        account = Accounting(f"Kinesis (2 shards), kill -9 x{kills} at random points, restart each time", sent)
        account.delivered["jsonl"] = jsonl_event_ids(out)
        account.delivered["securityhub"] = security_hub_ids(tag)
        account.delivered["sh-imports"] = forwarded_imports(proxy, tag)
        account.dead_lettered.update(str(letter.get("reason", ""))[:100] for letter in letters)
        account.lettered_ids = [str(letter.get("record_id", "")) for letter in letters]
    print("\n" + account.table() + f"\nkills that landed mid-delivery: {mid_delivery} of {kills}")
    assert mid_delivery, "no kill landed while the round's records were being delivered"
    assert not letters, account.table()
    for sink in ("jsonl", "securityhub", "sh-imports"):
        assert account.lost(sink) == 0, account.table()
    assert account.duplicated("securityhub") == 0, account.table()
    # Re-read after a kill: what was delivered past the last checkpoint — at most the batch in
    # flight (receives gathered for up to 0.5 s), which is within the round's records; upserted
    # again by id in Security Hub, so never a second finding there.
    bound = kills * 20
    assert account.duplicated("jsonl") <= bound and account.duplicated("sh-imports") <= bound, account.table()


def test_opensearch_down_at_start_and_a_shard_split_lose_nothing(aws_env: MotoServer, opensearch_url: str, tmp_path: Path) -> None:
    """A backlog in a shard with no checkpoint, OpenSearch down (connection refused) when
    `connector run` starts, the shard split while it is down and more records written to the
    children; then OpenSearch comes up. The defect this guards against: the first failed batch
    re-read from "now", skipping the backlog and checkpointing past it. Every finding must end
    in both OpenSearch indexes once, parents' before children's."""
    from tests.support.accounting import Accounting, jsonl_event_ids, opensearch_event_ids
    from tests.support.moto import free_port
    from tests.support.opensearch_faults import OpenSearchFaultProxy
    from tests.support.service import http_get, service_log, start_service, wait_for

    tag = f"kd{uuid.uuid4().hex[:6]}"
    stream, table = make_stream(1)
    kinesis = boto3.client("kinesis")
    backlog = [f"{tag}-parent-{i:03d}" for i in range(30)]
    put(stream, backlog)
    out = tmp_path / "out"
    port = free_port()
    env = dict(env_for(aws_env, stream, table, out), CONNECTOR_SINKS="jsonl,opensearch", CONNECTOR_OPENSEARCH_URL=f"http://127.0.0.1:{port}",
               CONNECTOR_OPENSEARCH_INDEX_PREFIX=tag, CONNECTOR_OPENSEARCH_MAX_ATTEMPTS="2", CONNECTOR_KINESIS_MAX_RECORDS="10",
               CONNECTOR_HTTP_PORT=str(free_port()), CONNECTOR_HTTP_HOST="127.0.0.1")
    ready_url = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}/readyz"
    proc = start_service(env)
    try:
        try:
            down = wait_for(lambda: (got := http_get(ready_url))[0] == 503 and got, timeout=60, interval=0.5)
        except AssertionError:
            raise AssertionError(f"/readyz while OpenSearch is down: {http_get(ready_url)}\n{service_log(proc)}") from None
        shard = kinesis.list_shards(StreamName=stream)["Shards"][0]
        keys = shard["HashKeyRange"]
        kinesis.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"],
                            NewStartingHashKey=str((int(keys["StartingHashKey"]) + int(keys["EndingHashKey"])) // 2))
        children = [f"{tag}-child-{i:03d}" for i in range(20)]
        put(stream, children)
        time.sleep(3)  # still down: batches fail, nothing may be checkpointed
        checkpointed_while_down = {k: (v.sequence_number, v.finished) for k, v in CheckpointStore(table, stream).load().items()}
        with OpenSearchFaultProxy(opensearch_url, port=port):  # OpenSearch is up (forwarded, no faults)
            sent = [*backlog, *children]

            def settled() -> bool:
                try:
                    return (set(sent) <= set(opensearch_event_ids(opensearch_url, f"{tag}-asff-*"))
                            and set(sent) <= set(opensearch_event_ids(opensearch_url, f"{tag}-ocsf-*")))
                except Exception:  # the indexes may not exist yet
                    return False
            try:
                wait_for(settled, timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(f"not everything delivered once OpenSearch was up:\n{service_log(proc)}") from None
    finally:
        _stop(proc)
    letters = _file_letters(out)
    account = Accounting("Kinesis backlog, OpenSearch down at start, shard split while down, then up", sent)
    account.delivered["jsonl"] = jsonl_event_ids(out)
    account.delivered["os-asff"] = opensearch_event_ids(opensearch_url, f"{tag}-asff-*")
    account.delivered["os-ocsf"] = opensearch_event_ids(opensearch_url, f"{tag}-ocsf-*")
    account.dead_lettered.update(str(letter.get("reason", ""))[:100] for letter in letters)
    account.lettered_ids = [str(letter.get("record_id", "")) for letter in letters]
    print("\n" + account.table() + f"\n/readyz while down: {down[0]} {down[1][:200]}\ncheckpoints while down: {checkpointed_while_down}")
    assert "opensearch" in down[1], down
    assert not letters, account.table()
    for sink in ("jsonl", "os-asff", "os-ocsf"):
        assert account.lost(sink) == 0 and account.duplicated(sink) == 0 and not account.unexpected(sink), account.table()
    order = account.delivered["jsonl"]
    assert max(order.index(i) for i in backlog) < min(order.index(i) for i in children), "parents before children"
    assert not any(s or f for s, f in checkpointed_while_down.values()), f"a checkpoint moved while OpenSearch was down: {checkpointed_while_down}"
