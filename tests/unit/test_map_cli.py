"""`connector map`: input shapes, skipped counts, invalid records and the exit status."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from tests.support.records import BOOK, EVENT, EVENTS, make_record

NOISE = {"eventVersion": "1.08", "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventID": "noise-1",
         "awsRegion": "us-east-1", "eventTime": "2026-11-20T10:00:00Z", "recipientAccountId": "111122223333"}


def run_map(tmp_path: Path, payload: bytes, *args: str, name: str = "in.json") -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_bytes(payload)
    return subprocess.run([sys.executable, "-m", "connector", "map", str(path), *args], capture_output=True, text=True)


def records() -> list[dict]:
    return [make_record(e, event_id=f"cli-{i}") for i, e in enumerate(EVENTS)]


def test_log_file_gzip_gives_one_finding_per_target(tmp_path: Path) -> None:
    body = gzip.compress(json.dumps({"Records": [*records(), NOISE]}).encode())
    proc = run_map(tmp_path, body, "--format", "ocsf", name="log.json.gz")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(EVENTS)
    assert {json.loads(line)["class_uid"] for line in lines} == {2004}
    assert "1 other events skipped" in proc.stderr


def test_array_jsonl_bare_and_eventbridge(tmp_path: Path) -> None:
    recs = records()
    cases = {
        "array.json": json.dumps([*recs, NOISE]).encode(),
        "lines.jsonl": "\n".join(json.dumps(r) for r in [*recs, NOISE]).encode(),
        "bare.json": json.dumps(recs[0]).encode(),
        "eventbridge.json": json.dumps({
            "version": "0", "id": "6f1c", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
            "account": "111122223333", "time": "2026-11-20T10:15:30Z", "region": "eu-west-1", "resources": [],
            "detail": recs[1],
        }).encode(),
    }
    expected = {"array.json": 5, "lines.jsonl": 5, "bare.json": 1, "eventbridge.json": 1}
    for name, body in cases.items():
        proc = run_map(tmp_path, body, name=name)
        assert proc.returncode == 0, (name, proc.stderr)
        ids = [json.loads(line)["Id"] for line in proc.stdout.splitlines()]
        assert len(ids) == expected[name], (name, proc.stderr)
        assert all(i.startswith("cloudtrail-findings/aws/eu-west-1/111122223333/cli-") for i in ids)


def test_invalid_record_is_named_others_still_processed_exit_1(tmp_path: Path) -> None:
    recs = records()
    broken = make_record(EVENT, event_id="broken-1", eventTime="not a time")
    lines = [json.dumps(r) for r in recs[:2]] + [json.dumps(broken), "{this is not json", json.dumps(recs[2])]
    proc = run_map(tmp_path, "\n".join(lines).encode(), name="mixed.jsonl")
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 3
    errors = [line for line in proc.stderr.splitlines() if line.startswith("invalid:")]
    assert len(errors) == 2
    assert any("broken-1" in line and "eventTime" in line for line in errors)


def test_stdin(tmp_path: Path) -> None:
    record = records()[-1]
    proc = subprocess.run([sys.executable, "-m", "connector", "map", "-"], input=json.dumps(record),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    expected = BOOK.mappings[record["eventName"]].resources[0].asff_type
    assert json.loads(proc.stdout)["Resources"][0]["Type"] == expected
