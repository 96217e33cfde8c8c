"""`connector replay` over gzipped log files (local and S3, resumable) and the Lambda handler."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3

from connector.aws_lambda import handle
from connector.build import build_pipeline
from connector.config import load_settings
from connector.deadletters.file import FileDeadLetters
from connector.pipeline import Pipeline
from tests.support.moto import MotoServer
from tests.support.records import EVENT, an_event, make_record

NOISE = [{"eventVersion": "1.08", "eventSource": "s3.amazonaws.com", "eventName": name, "eventID": f"noise-{i}",
          "awsRegion": "us-east-1", "eventTime": "2026-11-20T10:00:00Z", "recipientAccountId": "123456789012"}
         for i, name in enumerate(["GetObject", "PutObject", "DeleteNetworkAcl", "ListBuckets"])]


def write_logs(root: Path) -> dict[str, int]:
    """Three hours of log files, CloudTrail naming, 2 targets + 4 noise records each."""
    counts = {}
    for hour in (8, 9, 10):
        name = root / "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20" / f"123456789012_CloudTrail_us-east-1_20261120T{hour:02d}05Z_{uuid.uuid4().hex[:16]}.json.gz"
        name.parent.mkdir(parents=True, exist_ok=True)
        records = [make_record(an_event(hour + k), event_id=f"h{hour}-{k}", eventTime=f"2026-11-20T{hour:02d}:0{k}:00Z") for k in range(2)]
        name.write_bytes(gzip.compress(json.dumps({"Records": records + NOISE}).encode()))
        counts[str(name)] = 2
    return counts


def replay(tmp_path: Path, location: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(env or os.environ, CONNECTOR_JSONL_DIRECTORY=str(tmp_path / "out"), CONNECTOR_DEAD_LETTER=f"file://{tmp_path}/dlq")
    return subprocess.run(
        [sys.executable, "-m", "connector", "replay", location, "--sinks", "jsonl", "--state", str(tmp_path / "state.json"), *extra],
        capture_output=True, text=True, env=environ, timeout=300,
    )


def ids(tmp_path: Path) -> list[str]:
    path = tmp_path / "out" / "asff.jsonl"
    return [json.loads(line)["Id"].rsplit("/", 1)[-1] for line in path.read_text().splitlines()] if path.exists() else []


def test_replay_counts_and_resumes(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")
    proc = replay(tmp_path, str(tmp_path / "logs"))
    assert proc.returncode == 0, proc.stderr
    assert "3 files read" in proc.stderr and "18 records, 6 findings" in proc.stderr, proc.stderr
    assert sorted(ids(tmp_path)) == sorted(f"h{h}-{k}" for h in (8, 9, 10) for k in range(2))
    again = replay(tmp_path, str(tmp_path / "logs"))
    assert "0 files read (3 finished earlier" in again.stderr, again.stderr
    assert len(ids(tmp_path)) == 6  # nothing delivered twice


def test_replay_window(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")
    proc = replay(tmp_path, str(tmp_path / "logs"), "--since", "2026-11-20T09:00:00Z", "--until", "2026-11-20T09:30:00Z")
    assert proc.returncode == 0, proc.stderr
    assert sorted(ids(tmp_path)) == ["h9-0", "h9-1"]
    assert "1 outside the window" in proc.stderr


def test_replay_from_s3(aws_env: MotoServer, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail-bucket")
    for path in write_logs(tmp_path / "logs"):
        key = path.split("/logs/", 1)[1]
        s3.upload_file(path, "trail-bucket", key)
    proc = replay(tmp_path, "s3://trail-bucket/AWSLogs/", env=dict(os.environ, **aws_env.env()))
    assert proc.returncode == 0, proc.stderr
    assert len(ids(tmp_path)) == 6


def test_replay_of_nothing_is_an_error_not_a_success(aws_env: MotoServer, tmp_path: Path) -> None:
    """An empty or mistyped prefix, or a bucket that does not exist, must not look like a backfill done."""
    env = dict(os.environ, **aws_env.env())
    boto3.client("s3").create_bucket(Bucket="empty-trail-bucket")
    (tmp_path / "empty").mkdir()
    for location in ("s3://empty-trail-bucket/AWSLogs/", "s3://no-such-trail-bucket/AWSLogs/", str(tmp_path / "empty"),
                     str(tmp_path / "missing")):
        proc = replay(tmp_path, location, env=env)
        assert proc.returncode != 0, (location, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert location.split("://")[-1].split("/")[0] in proc.stderr or "no log files" in proc.stderr, proc.stderr


def lambda_pipeline(tmp_path: Path) -> Pipeline:
    settings = load_settings(environ={"CONNECTOR_SINKS": "jsonl", "CONNECTOR_JSONL_DIRECTORY": str(tmp_path / "out"),
                                      "CONNECTOR_DEAD_LETTER": f"file://{tmp_path}/dlq"})
    return build_pipeline(settings, s3=None)


def test_lambda_sqs_batch(tmp_path: Path) -> None:
    pipeline = lambda_pipeline(tmp_path)
    event = {"Records": [
        {"messageId": "m1", "eventSource": "aws:sqs", "body": json.dumps(make_record(EVENT, event_id="l1"))},
        {"messageId": "m2", "eventSource": "aws:sqs", "body": "this is not json at all {{{"},
        {"messageId": "m3", "eventSource": "aws:sqs", "body": json.dumps({"detail-type": "AWS API Call via CloudTrail",
                                                                             "detail": make_record(EVENT, event_id="l3")})},
    ]}
    assert handle(event, pipeline) == {"batchItemFailures": []}  # the garbage went to the dead-letter file
    assert sorted(ids(tmp_path)) == ["l1", "l3"]
    assert len(FileDeadLetters(f"file://{tmp_path}/dlq").read()) == 1


def test_lambda_reports_only_undeliverable_records(tmp_path: Path) -> None:
    pipeline = lambda_pipeline(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "asff.jsonl").mkdir()  # the sink cannot write: delivery fails
    def record(eid):
        return base64.b64encode(json.dumps(make_record(EVENT, event_id=eid)).encode()).decode()
    noise = base64.b64encode(json.dumps(NOISE[0]).encode()).decode()
    event = {"Records": [
        {"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": "100", "data": noise}},
        {"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": "101", "data": record("k1")}},
        {"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": "102", "data": noise}},
    ]}
    result = handle(event, pipeline)
    # Kinesis retries from the lowest failed sequence number: report it and everything after.
    assert result == {"batchItemFailures": [{"itemIdentifier": "101"}, {"itemIdentifier": "102"}]}


def test_lambda_corpus_event_shapes(aws_env: MotoServer, corpus_dir: Path, tmp_path: Path) -> None:
    """Real Lambda event shapes: undecodable bodies and S3 objects that do not exist are
    dead-lettered (not retried forever); nothing is reported as failed."""
    pipeline = lambda_pipeline(tmp_path)
    for name in ("sqs-lambda-event-1.json", "kinesis-lambda-event-1.json", "sqs-batch-partial-garbage-1.json"):
        event = json.loads((corpus_dir / "envelopes" / name).read_text())
        assert handle(event, pipeline) == {"batchItemFailures": []}, name
    reasons = [letter["reason"] for letter in FileDeadLetters(f"file://{tmp_path}/dlq").read()]
    # The corpus notices name buckets that are no configured trail bucket: refused unread
    # (connector.trust); a missing object in a trusted bucket is tests/integration/test_s3_envelopes.py's.
    assert any("not in a configured trail bucket" in r for r in reasons) and any("not JSON" in r for r in reasons)
