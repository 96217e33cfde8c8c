"""What an on-call sees of a running connector (issue 14), through its real interfaces: `connector
run` as a subprocess against the moto server, /metrics over HTTP, stderr as the log stream.

- metrics: records vs messages, event-time → delivered lag per sink, outcomes per sink, the
  SQS backlog gauge, retries counted through a sink outage, no ``*_created`` series;
- logs: one JSON stream with a start-up line and a JSON closing line, no traceback per failed
  OpenSearch request, one warning (and a count) instead of one per member-account finding;
- region: `run` with only ``AWS_REGION`` set (the Kubernetes ConfigMap) works; with no region
  at all it is one clear line; `replay` of a missing bucket is one clear line.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from connector import __version__
from tests.support.moto import MotoServer, free_port
from tests.support.records import EVENTS, make_record
from tests.support.service import (
    http_get,
    jsonl_ids,
    make_queues,
    send_events,
    service_env,
    service_log,
    start_service,
    wait_for,
)


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (labels in any order), or None."""
    for line in metrics.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a log must be one JSON object: returns them (fails on a plain-text line)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line[:300]!r}") from None
    return out


def full_log(proc: subprocess.Popen[str]) -> str:
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_metrics_and_log_stream_of_a_running_service(aws_env: MotoServer, tmp_path: Path) -> None:
    queue, dlq = make_queues(f"ops-{uuid.uuid4().hex[:8]}")
    old = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    noise = {"eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventID": "noise-1", "eventTime": old}
    log_file = {"Records": [make_record(EVENTS[0], event_id="ops-1", eventTime=old), noise,
                            make_record(EVENTS[1], event_id="ops-2", eventTime=old)]}
    boto3.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(log_file))
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_SQS_VISIBILITY_TIMEOUT="10")
    base = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}"
    proc = start_service(env)
    try:
        wait_for(lambda: len(jsonl_ids(tmp_path)) == 2, timeout=90)

        def settled() -> str | None:
            status, text = http_get(f"{base}/metrics")
            return text if status == 200 and sample(text, "connector_messages_acked_total", source="sqs") == 1 else None

        try:
            text = wait_for(settled, timeout=60)
        except AssertionError:
            raise AssertionError(http_get(f"{base}/metrics")[1] + service_log(proc)) from None
    finally:
        code = stop(proc)
    assert code == 0, service_log(proc)
    entries = json_lines(full_log(proc))  # one JSON stream, to the last line
    finished = entries[-1]
    assert finished["message"] == "connector run finished" and finished["acked"] >= 1 and finished["exit_code"] == 0
    received = finished["received"]  # 1, unless a slow machine let the message be received again

    assert "_created" not in text
    # One SQS message carried three CloudTrail records (a log file).
    assert sample(text, "connector_messages_in_total", source="sqs") == received
    assert sample(text, "connector_records_in_total", source="sqs") == 3 * received
    # Lag from eventTime (5 minutes ago) to acceptance, once per finding.
    assert sample(text, "connector_delivery_lag_seconds_count", sink="jsonl") == 2
    lag_sum = sample(text, "connector_delivery_lag_seconds_sum", sink="jsonl") or 0
    assert 2 * 290 < lag_sum < 2 * 600
    assert sample(text, "connector_delivery_lag_seconds_bucket", sink="jsonl", le="60.0") == 0
    assert sample(text, "connector_delivery_lag_seconds_bucket", sink="jsonl", le="600.0") == 2
    assert sample(text, "connector_sink_outcomes_total", sink="jsonl", outcome="ok") == 4  # ASFF + OCSF
    assert sample(text, "connector_sink_outcomes_total", sink="jsonl", outcome="retryable") == 0
    assert sample(text, "connector_sink_up", sink="jsonl") == 1
    queue_name = queue.rsplit("/", 1)[-1]
    assert sample(text, "connector_backlog_messages", source="sqs", queue=queue_name, state="visible") is not None
    assert sample(text, "connector_backlog_messages", source="sqs", queue=queue_name, state="in_flight") is not None
    assert sample(text, "connector_build_info", version=__version__, source="sqs", sinks="jsonl") == 1

    start = entries[0]
    assert "starting" in start["message"]
    assert start["version"] == __version__ and start["source"] == "sqs" and start["sinks"] == ["jsonl"]
    assert start["http_port"] == int(env["CONNECTOR_HTTP_PORT"]) and start["accounts_mode"] == "n/a"


def test_a_sink_outage_shows_in_retries_outcomes_backlog_and_one_line_logs(aws_env: MotoServer, tmp_path: Path) -> None:
    queue, dlq = make_queues(f"outage-{uuid.uuid4().hex[:8]}")
    send_events(queue, "outage", 3)
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_SINKS="opensearch",
                      CONNECTOR_OPENSEARCH_URL=f"http://127.0.0.1:{free_port()}", CONNECTOR_OPENSEARCH_MAX_ATTEMPTS="3")
    base = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}"
    proc = start_service(env)

    def outage_seen() -> str | None:
        status, text = http_get(f"{base}/metrics")
        # The sink is down: the batch is held (not released, so it spends no receive).
        if status != 200 or (sample(text, "connector_held_messages") or 0) < 3:
            return None
        return text

    try:
        text = wait_for(outage_seen, timeout=90)
    finally:
        stop(proc)
    retries = sample(text, "connector_retries_total", component="opensearch") or 0
    assert retries >= 2 * 3 * 2  # every batch: 2 retries of 2 documents (ASFF + OCSF) per event
    assert (sample(text, "connector_sink_outcomes_total", sink="opensearch", outcome="retryable") or 0) >= 6
    assert sample(text, "connector_sink_outcomes_total", sink="opensearch", outcome="ok") == 0
    assert sample(text, "connector_sink_up", sink="opensearch") == 0
    queue_name = queue.rsplit("/", 1)[-1]
    backlog = [sample(text, "connector_backlog_messages", source="sqs", queue=queue_name, state=s)
               for s in ("visible", "in_flight")]
    assert sum(v or 0 for v in backlog) == 3  # nothing is deleted while the sink is down

    entries = json_lines(full_log(proc))
    assert not any("exception" in e for e in entries), [e["message"] for e in entries if "exception" in e]
    assert "Traceback" not in full_log(proc)
    # opensearch-py warns with a traceback on every failed request: one JSON line with the cause,
    # and the same warning once per minute, not once per request.
    library = [e for e in entries if e["logger"].startswith("opensearch")]
    # (the cause is in "error", or in the message when the client's own filter folded it there)
    assert library and all("Connection" in e.get("error", "") + e["message"] for e in library)
    # (A slow machine may cross one minute: a second line, then the closing summary.)
    # (one template per request kind: the template check and the bulk request, ASFF and OCSF)
    assert len(library) <= 6 < retries, [e["message"] for e in library]


def test_run_with_only_aws_region_and_member_account_warnings_aggregated(aws_env: MotoServer, tmp_path: Path) -> None:
    """The Kubernetes ConfigMap sets only AWS_REGION; findings of a member account without an
    assume-role template are dead-lettered, with one warning, not one per finding."""
    queue, dlq = make_queues(f"member-{uuid.uuid4().hex[:8]}")
    send_events(queue, "member", 12, account="999999999999")
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_SINKS="securityhub", CONNECTOR_HTTP_PORT="0")
    env.pop("AWS_DEFAULT_REGION")
    assert env["AWS_REGION"]
    proc = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NoRegionError" not in proc.stderr
    entries = json_lines(proc.stderr)
    start = entries[0]
    assert "starting" in start["message"] and "own account" in start["accounts_mode"]
    assert start["region"] == env["AWS_REGION"]
    letters = [e for e in entries if e["message"].startswith("dead-lettered")]
    assert 1 <= len(letters) <= 3, [e["message"] for e in letters]
    # Every occurrence is accounted for: a line (plus those it says were held back before it), or
    # the closing summary of those still held back.
    assert sum(e.get("repeated", 0) + (0 if e.get("summary") else 1) for e in letters) == 12
    assert "AccountNotWritable" in letters[0]["message"]


def test_run_without_any_region_is_one_clear_line(aws_env: MotoServer, tmp_path: Path) -> None:
    queue, dlq = make_queues(f"noregion-{uuid.uuid4().hex[:8]}")
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_HTTP_PORT="0")
    env.pop("AWS_DEFAULT_REGION")
    env.pop("AWS_REGION")
    proc = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = json_lines(proc.stderr)[-1]
    assert last["level"] == "ERROR" and "AWS_REGION" in last["message"] and "exception" not in last


def test_replay_of_a_missing_bucket_is_one_clear_line(aws_env: MotoServer, tmp_path: Path) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "replay", f"s3://{bucket}/AWSLogs/", "--sinks", "jsonl",
         "--state", str(tmp_path / "state.db")],
        env={**service_env(aws_env, "", "", tmp_path), "CONNECTOR_JSONL_DIRECTORY": str(tmp_path / "out")},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert bucket in proc.stderr or "NoSuchBucket" in proc.stderr, proc.stderr[-2000:]
