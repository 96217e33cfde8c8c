"""Fault suite: `connector run` as a real process against the moto server, a sink taken down, and an
accounting table per scenario — sent, delivered per sink, dead-lettered, lost, duplicated.

The clock is shortened (visibility timeout 4 s, the queue's redrive policy ``maxReceiveCount`` 2,
a 20 s outage, in CI or with FAULTS_FULL=1 40 s): without backpressure every message would be received at
least twice during the outage (a released message returns after 10 s) and the queue's redrive
policy would move it to the DLQ undelivered — the defect this suite guards against, shown by
running the same scenario with ``hold_on_outage`` off.

Also here: kill -9 at random points, Security Hub throttling and FailedFindings, the connector's
DLQ deleted mid-run, S3 503s and a missing object, OpenSearch 429 rejections (the real node behind
tests/support/opensearch_faults.py); Kinesis scenarios are in test_kinesis_source.py. Each prints
its accounting table (tests/support/accounting.py); CI (and FAULTS_FULL=1) runs the full counts.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest

from tests.support.accounting import (
    FULL,
    SH_REGION,
    Accounting,
    forwarded_imports,
    jsonl_event_ids,
    opensearch_event_ids,
    security_hub_ids,
)
from tests.support.faultproxy import FaultProxy, Faults
from tests.support.moto import MotoServer
from tests.support.records import an_event, make_record
from tests.support.service import (
    http_get,
    queue_depth,
    send_events,
    service_env,
    service_log,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.moto

#: The sink outage: long enough for two receives without backpressure (release delay 10 s).
OUTAGE_SECONDS = 40 if FULL else 20


def _queues(name: str, max_receives: int) -> tuple[str, str, str]:
    """A queue with the shipped kind of redrive policy (shortened), its DLQ, and the connector's DLQ."""
    sqs = boto3.client("sqs")
    native = sqs.create_queue(QueueName=f"{name}-native-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=native, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": "4",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)}),
    })["QueueUrl"]
    own = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    return queue, native, own


def _drain_letters(url: str) -> list[dict[str, str]]:
    sqs = boto3.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            return out
        for m in got:
            attrs = {k: v.get("StringValue", "") for k, v in (m.get("MessageAttributes") or {}).items()}
            out.append({"reason": attrs.get("reason", "(no reason: moved by the queue's redrive policy)"), "body": m["Body"]})
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _security_hub_imports(proxy: FaultProxy, tag: str) -> list[str]:
    """Every finding id Security Hub was sent (repeats included), read from the requests."""
    return [i.rsplit("/", 1)[-1] for r in proxy.imports() for i in r.finding_ids if tag in i]


@pytest.mark.parametrize("hold", [True, False], ids=["backpressure", "without-backpressure"])
def test_a_sink_outage_with_the_redrive_policy_drains_nothing_into_the_dlq(
    aws_env: MotoServer, tmp_path: Path, hold: bool
) -> None:
    boto3.client("securityhub", region_name=SH_REGION).enable_security_hub()
    tag = f"out{uuid.uuid4().hex[:6]}"
    queue, native_dlq, own_dlq = _queues(f"{tag}-q", max_receives=2)
    out = tmp_path / "jsonl"
    with FaultProxy(aws_env.url) as proxy:
        env = service_env(aws_env, queue, own_dlq, out, CONNECTOR_SINKS="jsonl,securityhub",
                          AWS_ENDPOINT_URL_SECURITYHUB=proxy.url, CONNECTOR_SQS_VISIBILITY_TIMEOUT="4",
                          CONNECTOR_HOLD_ON_OUTAGE="true" if hold else "false", CONNECTOR_GATHER_SECONDS="0")
        proc = start_service(env)
        try:
            first = send_events(queue, f"{tag}a", 10)
            wait_for(lambda: len(set(jsonl_event_ids(out))) == 10, timeout=90)
            # The JSONL sink goes down: its directory becomes a file (writes and its check fail).
            shutil.rmtree(out)
            out.write_text("not a directory")
            during = send_events(queue, f"{tag}b", 10)
            time.sleep(OUTAGE_SECONDS)
            out.unlink()

            def settled() -> bool:
                if queue_depth(queue):
                    return False
                delivered = set(jsonl_event_ids(out)) if out.is_dir() else set()
                return set(during) <= delivered or bool(queue_depth(native_dlq) + queue_depth(own_dlq))

            try:
                wait_for(settled, timeout=150, interval=1)
            except AssertionError:
                raise AssertionError(f"did not settle; service log:\n{service_log(proc)[-4000:]}") from None
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        letters = _drain_letters(native_dlq) + _drain_letters(own_dlq)
        account = Accounting(f"jsonl down {OUTAGE_SECONDS} s, redrive maxReceiveCount 2, hold_on_outage={hold}", [*first, *during])
        # The JSONL files of the first ten went with the directory: count the outage's ten there.
        account.expected["jsonl"] = during
        account.delivered["jsonl"] = jsonl_event_ids(out) if out.is_dir() else []
        account.delivered["securityhub"] = _security_hub_imports(proxy, tag)
        account.dead_lettered.update(letter["reason"][:100] for letter in letters)
        account.lettered_ids = [json.loads(letter["body"])["eventID"] for letter in letters]
    print("\n" + account.table())
    if hold:
        assert not letters, f"an outage moved messages to a DLQ:\n{account.table()}\n{service_log(proc)[-3000:]}"
        assert sorted(set(account.delivered["jsonl"])) == sorted(during)
        assert account.lost("securityhub") == 0 and account.duplicated("securityhub") == 0, (
            "Security Hub, healthy all along, was sent each finding once (not on every retry)")
        assert account.duplicated("jsonl") == 0
    else:
        # The defect, reproduced: the outage spends the receives and the queue drains the messages.
        assert letters, "expected the redrive policy to move messages when nothing holds them"
        assert all("(no reason" not in r for r in account.dead_lettered), (
            "a message on its last receive is dead-lettered by the connector, with its reason")
        assert account.lost("jsonl") == 0 and account.lost("securityhub") == 0



# -- more scenarios (issue 10 item 7) ------------------------------------------------------


def _letter_id(body: str) -> str:
    """The eventID a dead letter is about (its body is the record, or the message around it)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:60]
    if isinstance(doc, dict):
        for key in ("eventID", "event_id", "Id"):  # a record, or a finding a sink rejected
            if isinstance(doc.get(key), str):
                return str(doc[key]).rsplit("/", 1)[-1]
    return body[:60]


def _reason(letter: dict[str, str]) -> str:
    """A letter's reason for the table: without the message id it starts with, and shortened."""
    reason = re.sub(r"^[a-z]+:[0-9a-f-]+(#\d+)?(>|:\s*)", "", letter["reason"])
    return reason if len(reason) <= 140 else reason[:60] + " ... " + reason[-75:]


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _both_sinks(aws_env: MotoServer, queue: str, dlq: str, out: Path, proxy: FaultProxy, **extra: str) -> dict[str, str]:
    # Enabled where the findings go and in the connector's own region (where /readyz probes it).
    for region in (SH_REGION, aws_env.env()["AWS_REGION"]):
        try:
            boto3.client("securityhub", region_name=region).enable_security_hub()
        except boto3.client("securityhub", region_name=region).exceptions.ResourceConflictException:
            pass  # enabled by an earlier test
    return service_env(aws_env, queue, dlq, out, CONNECTOR_SINKS="jsonl,securityhub", AWS_ENDPOINT_URL_SECURITYHUB=proxy.url,
                       CONNECTOR_SQS_VISIBILITY_TIMEOUT="4", CONNECTOR_GATHER_SECONDS="0", **extra)


def test_kill_9_at_random_points_loses_and_duplicates_nothing(aws_env: MotoServer, tmp_path: Path) -> None:
    """`connector run` killed with SIGKILL at random points N times (CI or FAULTS_FULL=1: 20), a new
    wave of events before each start, then one last run until the queue is empty."""
    kills = 20 if FULL else 3
    rng = random.Random(int(os.environ.get("FAULTS_SEED", "10")))
    tag = f"k9{uuid.uuid4().hex[:6]}"
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"{tag}-q", Attributes={"VisibilityTimeout": "4"})["QueueUrl"]
    own_dlq = sqs.create_queue(QueueName=f"{tag}-dlq")["QueueUrl"]
    out = tmp_path / "jsonl"
    sent: list[str] = []
    with FaultProxy(aws_env.url) as proxy:
        env = _both_sinks(aws_env, queue, own_dlq, out, proxy)
        health = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}/healthz"
        for round_ in range(kills):
            sent += send_events(queue, f"{tag}r{round_:02d}", 10)
            proc = start_service(env)
            # Once it serves HTTP (imports done), a random point: receiving, mid-delivery, deleting.
            wait_for(lambda p=proc: p.poll() is not None or http_get(health)[0], timeout=60)
            time.sleep(rng.uniform(0.0, 2.5))
            proc.kill()
            proc.wait(timeout=10)
        proc = start_service(env)
        try:
            try:
                wait_for(lambda: not queue_depth(queue) and set(sent) <= set(security_hub_ids(tag)), timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(f"not everything delivered after {kills} kills:\n{service_log(proc)}") from None
        finally:
            _stop(proc)
        letters = _drain_letters(own_dlq)
        account = Accounting(f"SQS, kill -9 x{kills} at random points, restart each time", sent)
        account.delivered["jsonl"] = jsonl_event_ids(out)
        account.delivered["securityhub"] = security_hub_ids(tag)
        account.delivered["sh-imports"] = forwarded_imports(proxy, tag)
        account.dead_lettered.update(_reason(letter) for letter in letters)
        account.lettered_ids = [_letter_id(letter["body"]) for letter in letters]
    print("\n" + account.table())
    assert not letters, account.table()
    for sink in ("jsonl", "securityhub"):
        assert account.lost(sink) == 0, account.table()
    assert account.duplicated("securityhub") == 0, account.table()
    # At-least-once: a kill between delivery and DeleteMessage re-delivers at most the batches in
    # flight (4 batches of 10) once per kill; re-imports are upserts of the same id.
    bound = kills * 40
    assert account.duplicated("jsonl") <= bound and account.duplicated("sh-imports") <= bound, account.table()


def test_security_hub_throttling_and_failed_findings(aws_env: MotoServer, tmp_path: Path) -> None:
    """A third of BatchImportFindings calls answered 429; one finding rejected permanently in
    FailedFindings: it is dead-lettered once with its reason, everything else delivered once."""
    tag = f"thr{uuid.uuid4().hex[:6]}"
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"{tag}-q", Attributes={"VisibilityTimeout": "4"})["QueueUrl"]
    own_dlq = sqs.create_queue(QueueName=f"{tag}-dlq")["QueueUrl"]
    out = tmp_path / "jsonl"
    rejected = f"{tag}-0007"
    with FaultProxy(aws_env.url, Faults(throttle_fraction=0.35, reject_marker=rejected, seed=7)) as proxy:
        env = _both_sinks(aws_env, queue, own_dlq, out, proxy)
        sent = send_events(queue, tag, 30)
        proc = start_service(env)
        try:
            def settled() -> bool:
                return (not queue_depth(queue) and set(sent) - {rejected} <= set(security_hub_ids(tag))
                        and bool(queue_depth(own_dlq)))
            try:
                wait_for(settled, timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(f"did not settle:\n{service_log(proc)}") from None
        finally:
            _stop(proc)
        letters = _drain_letters(own_dlq)
        throttled = sum(1 for r in proxy.imports() if r.answer == "throttled")
        account = Accounting(f"Security Hub 35% of imports 429 ({throttled} throttled), {rejected} rejected (InvalidInput)", sent)
        account.expected["securityhub"] = [i for i in sent if i != rejected]
        account.expected["sh-imports"] = account.expected["securityhub"]
        account.delivered["jsonl"] = jsonl_event_ids(out)
        account.delivered["securityhub"] = security_hub_ids(tag)
        account.delivered["sh-imports"] = forwarded_imports(proxy, tag)
        account.dead_lettered.update(_reason(letter) for letter in letters)
        account.lettered_ids = [_letter_id(letter["body"]) for letter in letters]
    print("\n" + account.table())
    assert throttled, "the proxy throttled nothing: the scenario did not happen"
    for sink in ("jsonl", "securityhub", "sh-imports"):
        assert account.lost(sink) == 0 and account.duplicated(sink) == 0, account.table()
    assert rejected not in account.delivered["securityhub"]
    assert account.lettered_ids == [rejected], account.table()
    assert "InvalidInput" in letters[0]["reason"], letters[0]["reason"]


def test_dead_letter_queue_down_holds_poison_until_it_is_back(aws_env: MotoServer, tmp_path: Path) -> None:
    """The connector's DLQ is deleted while poison arrives: the poison is not acknowledged (it
    stays in the queue), good messages are delivered; once the DLQ is recreated, each poison
    message is dead-lettered once with its reason and removed from the queue."""
    tag = f"dlq{uuid.uuid4().hex[:6]}"
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"{tag}-q", Attributes={"VisibilityTimeout": "4"})["QueueUrl"]
    own_dlq = sqs.create_queue(QueueName=f"{tag}-dlq")["QueueUrl"]
    out = tmp_path / "jsonl"
    poison = [f"{tag}-poison-{i} this is not JSON {{" for i in range(3)]
    with FaultProxy(aws_env.url) as proxy:
        env = _both_sinks(aws_env, queue, own_dlq, out, proxy)
        proc = start_service(env)
        try:
            first = send_events(queue, f"{tag}a", 10)
            wait_for(lambda: set(first) <= set(jsonl_event_ids(out)), timeout=90)
            sqs.delete_queue(QueueUrl=own_dlq)
            for body in poison:
                sqs.send_message(QueueUrl=queue, MessageBody=body)
            during = send_events(queue, f"{tag}b", 10)
            wait_for(lambda: set(during) <= set(jsonl_event_ids(out)) and set(during) <= set(security_hub_ids(tag)),
                     timeout=90, interval=1)
            time.sleep(10)  # more than two visibility timeouts: the poison is received again and again
            held_back = queue_depth(queue)
            ready_url = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}/readyz"
            ready_down = http_get(ready_url)
            sqs.create_queue(QueueName=f"{tag}-dlq")
            try:
                wait_for(lambda: not queue_depth(queue) and queue_depth(own_dlq) >= len(poison), timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(f"poison not dead-lettered after the DLQ came back:\n{service_log(proc)}") from None
            try:
                ready_back = wait_for(lambda: (got := http_get(ready_url))[0] == 200 and got, timeout=30)
            except AssertionError:
                raise AssertionError(f"/readyz after the DLQ came back: {http_get(ready_url)}\n{service_log(proc)}") from None
        finally:
            _stop(proc)
        letters = _drain_letters(own_dlq)
        account = Accounting("connector's SQS DLQ deleted mid-run, recreated after 10 s+", [*first, *during])
        account.delivered["jsonl"] = jsonl_event_ids(out)
        account.delivered["securityhub"] = security_hub_ids(tag)
        account.delivered["sh-imports"] = forwarded_imports(proxy, tag)
        account.dead_lettered.update(_reason(letter) for letter in letters)
        account.lettered_ids = [letter["body"] for letter in letters]
    print("\n" + account.table() + f"\npoison held in the queue while the DLQ was down: {held_back} of {len(poison)}")
    assert held_back == len(poison), "poison was acknowledged while its dead letter could not be written"
    assert ready_down[0] == 503 and "dead-letter destination" in ready_down[1], ready_down
    assert ready_back[0] == 200
    assert sorted(account.lettered_ids) == sorted(poison), account.table()
    assert all(letter["reason"] and "(no reason" not in letter["reason"] for letter in letters), account.table()
    for sink in ("jsonl", "securityhub", "sh-imports"):
        assert account.lost(sink) == 0 and account.duplicated(sink) == 0, account.table()


TRAIL_KEY = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/123456789012_CloudTrail_us-east-1_20261120T{:04d}Z_f.json.gz"


def _s3_notice(bucket: str, key: str) -> str:
    return json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]})


def test_s3_missing_objects_and_503s_lose_nothing(aws_env: MotoServer, tmp_path: Path) -> None:
    """S3 notices into a configured trail bucket; S3 (behind a fault proxy) answers every read
    503 SlowDown for a while, far more than the client's own retries, and /readyz must say the
    source's reads fail; one notice names a missing object. Once S3 answers again the log files
    are delivered, the missing one dead-lettered once with its reason, and /readyz is 200."""
    tag = f"s3f{uuid.uuid4().hex[:6]}"
    bucket = f"trail-{tag}"
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName=f"{tag}-q", Attributes={"VisibilityTimeout": "4"})["QueueUrl"]
    own_dlq = sqs.create_queue(QueueName=f"{tag}-dlq")["QueueUrl"]
    sent: list[str] = []
    keys = []
    for n in range(4):
        ids = [f"{tag}-f{n}-{i:02d}" for i in range(5)]
        records = [make_record(an_event(i), event_id=e, recipientAccountId="123456789012") for i, e in enumerate(ids)]
        keys.append(TRAIL_KEY.format(1000 + n))
        s3.put_object(Bucket=bucket, Key=keys[-1], Body=gzip.compress(json.dumps({"Records": records}).encode()))
        sent += ids
    missing = TRAIL_KEY.format(1999)
    out = tmp_path / "jsonl"
    faults = Faults(fail_paths={f"/{bucket}/": [503, "SlowDown", 1_000_000]})
    with FaultProxy(aws_env.url, faults) as proxy, FaultProxy(aws_env.url) as sh_proxy:
        env = _both_sinks(aws_env, queue, own_dlq, out, sh_proxy, AWS_ENDPOINT_URL_S3=proxy.url,
                          CONNECTOR_S3_TRAIL_BUCKETS=bucket)
        ready_url = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}/readyz"
        for key in [*keys[:2], missing, *keys[2:]]:
            sqs.send_message(QueueUrl=queue, MessageBody=_s3_notice(bucket, key))
        proc = start_service(env)
        try:
            try:  # the queue answers, S3 does not: nothing can be delivered
                failing = wait_for(lambda: (got := http_get(ready_url))[0] == 503 and "could not be read" in got[1] and got,
                                   timeout=90, interval=0.5)
            except AssertionError:
                raise AssertionError(f"/readyz while S3 answers 503: {http_get(ready_url)}\n{service_log(proc)}") from None
            with proxy.lock:
                faults.fail_paths[f"/{bucket}/"][2] = 0  # S3 is back
            try:
                wait_for(lambda: not queue_depth(queue) and set(sent) <= set(security_hub_ids(tag)), timeout=120, interval=1)
                ready_back = wait_for(lambda: (got := http_get(ready_url))[0] == 200 and got, timeout=30)
            except AssertionError:
                raise AssertionError(f"did not settle:\n{service_log(proc)}") from None
            time.sleep(2)
        finally:
            _stop(proc)
        with proxy.lock:
            answered_503 = sum(1 for r in proxy.requests if r.answer == "failed:SlowDown")
            reads = sum(1 for r in proxy.requests if r.method == "GET" and r.path.startswith(f"/{bucket}/"))
        letters = _drain_letters(own_dlq)
        account = Accounting(f"S3 503 SlowDown x{answered_503} (of {reads} reads), 1 notice of a missing object", sent)
        account.delivered["jsonl"] = jsonl_event_ids(out)
        account.delivered["securityhub"] = security_hub_ids(tag)
        account.delivered["sh-imports"] = forwarded_imports(sh_proxy, tag)
        account.dead_lettered.update(_reason(letter) for letter in letters)
        account.lettered_ids = [letter["body"] for letter in letters]
    print("\n" + account.table() + f"\n/readyz while S3 answered 503: {failing[0]} {failing[1][:300]}")
    assert answered_503 >= 9, "the fault did not happen (3 notices, each read with the client's retries)"
    assert "source sqs: " in failing[1] and "SlowDown" in failing[1], failing
    assert ready_back[0] == 200
    for sink in ("jsonl", "securityhub", "sh-imports"):
        assert account.lost(sink) == 0 and account.duplicated(sink) == 0, account.table()
    assert len(letters) == 1 and missing in letters[0]["reason"], account.table()
    assert "no such key" in letters[0]["reason"].lower() or "NoSuchKey" in letters[0]["reason"], letters[0]["reason"]


def test_opensearch_429_rejections_lose_and_duplicate_nothing(aws_env: MotoServer, opensearch_url: str, tmp_path: Path) -> None:
    """The real OpenSearch node behind a proxy that answers bulk requests 429
    ``es_rejected_execution_exception`` for a while: first every bulk request (/readyz must say
    the sink refuses), then a share of whole requests and a share of items inside 200 answers,
    then none. Every finding ends in both indexes once; JSONL is not rewritten on the retries."""
    from tests.support.opensearch_faults import BulkFaults, OpenSearchFaultProxy

    tag = f"osr{uuid.uuid4().hex[:6]}"
    prefix = tag
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"{tag}-q", Attributes={"VisibilityTimeout": "4"})["QueueUrl"]
    own_dlq = sqs.create_queue(QueueName=f"{tag}-dlq")["QueueUrl"]
    out = tmp_path / "jsonl"
    faults = BulkFaults(reject_request_fraction=1.0, seed=int(os.environ.get("FAULTS_SEED", "10")))
    with OpenSearchFaultProxy(opensearch_url, faults) as proxy:
        env = service_env(aws_env, queue, own_dlq, out, CONNECTOR_SINKS="jsonl,opensearch", CONNECTOR_OPENSEARCH_URL=proxy.url,
                          CONNECTOR_OPENSEARCH_INDEX_PREFIX=prefix, CONNECTOR_SQS_VISIBILITY_TIMEOUT="4",
                          CONNECTOR_GATHER_SECONDS="0", CONNECTOR_SQS_MAX_MESSAGES="5",
                          # Two attempts per delivery: rejections reach the pipeline (a release and a
                          # redelivery) instead of being absorbed by the sink's own retries.
                          CONNECTOR_OPENSEARCH_MAX_ATTEMPTS="2")
        ready_url = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}/readyz"
        proc = start_service(env)
        try:
            sent = send_events(queue, f"{tag}a", 20)
            try:  # every bulk request rejected: the cluster answers its health check, yet delivers nothing
                refusing = wait_for(lambda: (got := http_get(ready_url))[0] == 503 and "opensearch" in got[1] and got,
                                    timeout=60, interval=0.5)
            except AssertionError:
                raise AssertionError(f"/readyz while every bulk is rejected: {http_get(ready_url)}\n{service_log(proc)}") from None
            with proxy.lock:  # then a share: 30% of requests whole, 30% of the other requests' items
                proxy.faults.reject_request_fraction, proxy.faults.reject_item_fraction = 0.3, 0.3
            sent += send_events(queue, f"{tag}b", 20)
            # "For a while": until both kinds of rejection happened a few times.
            start = len(proxy.bulks)
            wait_for(lambda: len(proxy.bulks) - start >= 10 and min(proxy.rejected()) >= 3, timeout=60, interval=0.5)
            with proxy.lock:
                proxy.faults.reject_request_fraction = proxy.faults.reject_item_fraction = 0.0

            def settled() -> bool:
                try:
                    return (not queue_depth(queue) and set(sent) <= set(opensearch_event_ids(opensearch_url, f"{prefix}-asff-*"))
                            and set(sent) <= set(opensearch_event_ids(opensearch_url, f"{prefix}-ocsf-*")))
                except Exception:  # the indexes may not exist yet
                    return False
            try:
                wait_for(settled, timeout=120, interval=1)
                ready_back = wait_for(lambda: (got := http_get(ready_url))[0] == 200 and got, timeout=30)
            except AssertionError:
                raise AssertionError(f"did not settle:\n{service_log(proc)}") from None
        finally:
            _stop(proc)
        whole, items = proxy.rejected()
        writes = [i for i in proxy.items() if i.written]
        letters = _drain_letters(own_dlq)
        account = Accounting(f"OpenSearch bulk 429 es_rejected_execution_exception: {whole} whole requests, "
                             f"{items} items inside 200 answers", sent)
        account.delivered["jsonl"] = jsonl_event_ids(out)
        account.delivered["os-asff"] = opensearch_event_ids(opensearch_url, f"{prefix}-asff-*")
        account.delivered["os-ocsf"] = opensearch_event_ids(opensearch_url, f"{prefix}-ocsf-*")
        # Writes the node accepted, repeats included (an upsert of the same id each time).
        account.delivered["os-writes-asff"] = [i.id.rsplit("/", 1)[-1] for i in writes if "-asff-" in i.index]
        account.delivered["os-writes-ocsf"] = [i.id.rsplit("/", 1)[-1] for i in writes if "-ocsf-" in i.index]
        account.dead_lettered.update(_reason(letter) for letter in letters)
        account.lettered_ids = [_letter_id(letter["body"]) for letter in letters]
    print("\n" + account.table() + f"\n/readyz while rejecting: {refusing[0]} {refusing[1]}")
    assert whole and items, "the proxy rejected no whole request or no item: the scenario did not happen"
    assert "refusing every document" in refusing[1] and "429" in refusing[1], refusing
    assert ready_back[0] == 200
    assert not letters, account.table()
    for sink in ("jsonl", "os-asff", "os-ocsf"):
        assert account.lost(sink) == 0 and account.duplicated(sink) == 0 and not account.unexpected(sink), account.table()
    # A write accepted but its message released (another item of the same batch rejected) is
    # upserted again on the redelivery: bounded by the findings sent, and never a second document.
    for sink in ("os-writes-asff", "os-writes-ocsf"):
        assert account.lost(sink) == 0 and account.duplicated(sink) <= len(sent), account.table()
