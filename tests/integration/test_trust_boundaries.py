"""Trust boundaries through the real service (`connector run --once` against moto): S3 notices are
followed only into the configured trail buckets and CloudTrail key layout, refused ones are
dead-lettered with the reason and none of the object; hostile region, bucket and partition values
are dead-lettered per record before they reach a client, an id or a path, and their neighbours
are delivered."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3

from tests.support.moto import MotoServer, free_port
from tests.support.records import an_event, make_record
from tests.support.service import (
    http_get,
    jsonl_ids,
    make_queues,
    queue_depth,
    send_events,
    service_env,
    service_log,
    start_service,
    wait_for,
)

SECRET = "SALARY-ROW-7f3a9c-do-not-copy"
TRAIL_KEY = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/123456789012_CloudTrail_us-east-1_20261120T1000Z_abc.json.gz"


def log_file(*event_ids: str) -> bytes:
    records = [make_record(an_event(i), event_id=e, recipientAccountId="123456789012") for i, e in enumerate(event_ids)]
    return gzip.compress(json.dumps({"Records": records}).encode())


def notice(bucket: str, key: str) -> str:
    return json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]})


def run_once(moto: MotoServer, queue: str, out: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = service_env(moto, queue, f"file://{out}/dlq", out, **extra)
    return subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True, text=True, timeout=120)


def letters(out: Path) -> list[dict[str, Any]]:
    path = out / "dlq" / "dead-letters.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_s3_notices_are_followed_only_into_configured_trail_buckets(aws_env: MotoServer, tmp_path: Path) -> None:
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    trail, private = f"trail-{uuid.uuid4().hex[:8]}", f"finance-private-{uuid.uuid4().hex[:8]}"
    for bucket in (trail, private):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=trail, Key=TRAIL_KEY, Body=log_file("good-1", "good-2"))
    s3.put_object(Bucket=trail, Key="custom/feed/part-1.json.gz", Body=log_file("prefixed-1"))
    # In the trail bucket but outside the CloudTrail layout and the configured prefixes:
    s3.put_object(Bucket=trail, Key="uploads/forged.json.gz", Body=log_file("forged-in-trail"))
    # Another bucket: a CSV (it was copied into the letter and its reason) and a forgeable log file.
    s3.put_object(Bucket=private, Key="payroll.csv", Body=f"name,salary\nalice,{SECRET}\n".encode())
    s3.put_object(Bucket=private, Key=TRAIL_KEY, Body=log_file("forged-elsewhere"))
    queue, _ = make_queues(f"trust-{uuid.uuid4().hex[:8]}")
    for bucket, key in [(trail, TRAIL_KEY), (trail, "custom/feed/part-1.json.gz"), (trail, "uploads/forged.json.gz"),
                        (private, "payroll.csv"), (private, TRAIL_KEY), ("../../etc", "passwd")]:
        sqs.send_message(QueueUrl=queue, MessageBody=notice(bucket, key))

    proc = run_once(aws_env, queue, tmp_path, CONNECTOR_S3_TRAIL_BUCKETS=f"{trail},{trail}/custom/feed/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(jsonl_ids(tmp_path)) == ["good-1", "good-2", "prefixed-1"]
    assert queue_depth(queue) == 0
    found = letters(tmp_path)
    reasons = sorted(letter["reason"] for letter in found)
    assert len(reasons) == 4, reasons
    assert sum("not in a configured trail bucket" in r for r in reasons) == 2
    assert sum("neither in the CloudTrail key layout nor under a configured prefix" in r for r in reasons) == 1
    assert sum("is not a valid S3 bucket name" in r for r in reasons) == 1
    dead = (tmp_path / "dlq" / "dead-letters.jsonl").read_text()
    assert SECRET not in dead and "salary" not in dead, "no content of a refused object in any letter"
    assert all(letter["stage"] == "decode" for letter in found)


def test_no_trail_buckets_configured_means_no_s3_object_is_read(aws_env: MotoServer, tmp_path: Path) -> None:
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    bucket = f"trail-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=TRAIL_KEY, Body=log_file("unconfigured-1"))
    queue, _ = make_queues(f"trust-{uuid.uuid4().hex[:8]}")
    sqs.send_message(QueueUrl=queue, MessageBody=notice(bucket, TRAIL_KEY))
    proc = run_once(aws_env, queue, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert jsonl_ids(tmp_path) == []
    [letter] = letters(tmp_path)
    assert "not in a configured trail bucket" in letter["reason"] and "unconfigured-1" not in json.dumps(letter)


def test_hostile_region_and_partition_are_dead_lettered_before_the_security_hub_client(aws_env: MotoServer, tmp_path: Path) -> None:
    sqs = boto3.client("sqs")
    queue, _ = make_queues(f"trust-{uuid.uuid4().hex[:8]}")
    good = [f"region-ok-{i}" for i in range(4)]
    bodies = [make_record(an_event(i), event_id=e, recipientAccountId="123456789012") for i, e in enumerate(good)]
    bodies.append(make_record(an_event(0), event_id="region-bad", awsRegion="../../etc", recipientAccountId="123456789012"))
    bodies.append(make_record(an_event(1), event_id="id/../../x", recipientAccountId="123456789012"))
    spoofed = make_record(an_event(2), event_id="partition-spoof", recipientAccountId="123456789012")
    spoofed["userIdentity"] = dict(spoofed.get("userIdentity") or {}, arn="arn:../../etc:iam::123456789012:user/x")
    bodies.append(spoofed)
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))

    proc = run_once(aws_env, queue, tmp_path, CONNECTOR_SINKS="securityhub,jsonl", CONNECTOR_SECURITYHUB_REGION="us-east-1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert queue_depth(queue) == 0
    region = bodies[0]["awsRegion"]
    pages = boto3.client("securityhub", region_name=region).get_paginator("get_findings").paginate(PaginationConfig={"PageSize": 100})
    stored = [finding for page in pages for finding in page["Findings"]]
    ids = {f["Id"].rsplit("/", 1)[-1]: f for f in stored}
    assert set(good) | {"partition-spoof"} <= set(ids)
    # The spoofed partition is not believed: the finding id and resources use the region's.
    assert f"/aws/{region}/" in ids["partition-spoof"]["Id"] and "../" not in json.dumps(ids["partition-spoof"]["Resources"])
    reasons = sorted(letter["reason"] for letter in letters(tmp_path))
    assert len(reasons) == 2, reasons
    assert any("is not an AWS Region name" in r for r in reasons)
    assert any("has characters an id cannot hold" in r for r in reasons)


def test_no_secret_in_logs_metrics_or_connector_config(aws_env: MotoServer, tmp_path: Path) -> None:
    """AWS keys, the session token, the OpenSearch password and credentials inside its URL never
    appear in the service's logs (through failing deliveries), its /metrics, or `connector config`."""
    secrets = {"AWS_ACCESS_KEY_ID": "AKIAZZZZSECRETKEY777", "AWS_SECRET_ACCESS_KEY": "aws-secret-key-4d1f9e-never-logged",
               "AWS_SESSION_TOKEN": "aws-session-token-8c2b7a-never-logged"}
    password, url_password = "os-password-5e6f-never-logged", "url-password-9a0b-never-logged"
    queue, _ = make_queues(f"secrets-{uuid.uuid4().hex[:8]}")
    send_events(queue, "secret", 3)
    port = free_port()
    env = service_env(aws_env, queue, f"file://{tmp_path}/dlq", tmp_path, **secrets,
                      CONNECTOR_SINKS="opensearch,jsonl", CONNECTOR_OPENSEARCH_AUTH="basic",
                      CONNECTOR_OPENSEARCH_USERNAME="soc", CONNECTOR_OPENSEARCH_PASSWORD=password,
                      CONNECTOR_OPENSEARCH_URL=f"http://soc:{url_password}@127.0.0.1:{free_port()}",
                      CONNECTOR_OPENSEARCH_MAX_ATTEMPTS="2", CONNECTOR_OPENSEARCH_ALLOW_INSECURE="true",
                      CONNECTOR_HTTP_PORT=str(port))
    proc = start_service(env)
    try:
        wait_for(lambda: "kept for redelivery" in service_log(proc) or "released" in service_log(proc), timeout=60)
        status, metrics_text = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "connector_" in metrics_text
        _, ready = http_get(f"http://127.0.0.1:{port}/readyz")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    shown = subprocess.run([sys.executable, "-m", "connector", "config", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    log = Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
    assert "allow_insecure" in log, "the accepted insecure setting is warned about at start-up"
    for where, text in {"logs": log, "metrics": metrics_text, "readyz": ready, "config": shown.stdout + shown.stderr}.items():
        for secret in (*secrets.values(), password, url_password):
            assert secret not in text, f"{secret} in {where}"
    assert json.loads(shown.stdout)["opensearch"]["url"].startswith("http://***@127.0.0.1:")


def test_a_record_with_10000_keys_leaves_the_opensearch_mapping_unchanged(opensearch_url: str) -> None:
    from connector.config import OpenSearchSettings
    from connector.factory import FindingFactory
    from connector.model import Outcome
    from connector.sinks.opensearch.client import make_client
    from connector.sinks.opensearch.setup import install
    from connector.sinks.opensearch.sink import OpenSearchSink, index_name

    prefix = f"wide{uuid.uuid4().hex[:8]}"
    client = make_client(OpenSearchSettings(url=opensearch_url))
    install(client, prefix, ism=False)
    sink = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    factory = FindingFactory.load()
    base = make_record(an_event(0), event_id="narrow-1", eventTime="2026-11-20T10:00:00Z")
    narrow = factory.render(base)
    assert all(r.outcome is Outcome.OK for r in sink.send(narrow))
    indexes = sorted({index_name(prefix, item) for item in narrow})
    before = {i: client.indices.get_mapping(index=i)[i]["mappings"] for i in indexes}
    wide = {f"k{i}": {"v": i, "s": f"x{i}"} for i in range(10_000)}
    record = make_record(an_event(0), event_id="wide-1", eventTime="2026-11-20T10:05:00Z",
                         requestParameters={**base["requestParameters"], **wide}, additionalEventData=wide)
    record.update({f"top{i}": i for i in range(10_000)})
    batch = factory.render(record)
    assert all(r.outcome is Outcome.OK for r in sink.send(batch))
    assert {index_name(prefix, item) for item in batch} == set(indexes)
    after = {i: client.indices.get_mapping(index=i)[i]["mappings"] for i in indexes}
    assert after == before, "10,000 keys in a record added fields to the mapping"
    client.indices.refresh(index=",".join(indexes))
    assert client.count(index=",".join(indexes), q="connector.event_id:wide-1")["count"] == len(batch)
    client.close()
