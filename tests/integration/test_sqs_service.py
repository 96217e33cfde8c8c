"""SQS source and `connector run` as a real subprocess against moto: delete only after delivery,
poison to the DLQ with its reason, slow delivery not redelivered, a sink that is down causes
redelivery not loss, SIGTERM drains and exits 0, health endpoints, configuration errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import boto3

from connector.build import build_pipeline
from connector.config import load_settings
from connector.model import DeliveryResult, Outcome, RenderedFinding
from connector.runtime.runner import Runner
from connector.sources.sqs import SqsSource
from tests.support.moto import MotoServer
from tests.support.records import EVENT
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


def test_delete_after_delivery_and_poison_to_dlq(aws_env: MotoServer, tmp_path: Path) -> None:
    queue, dlq = make_queues(f"q-{uuid.uuid4().hex[:8]}")
    ids = send_events(queue, "ok", 12)
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=queue, MessageBody=f"not json, mentions {EVENT}")
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"eventSource": "ec2.amazonaws.com", "eventName": EVENT}))
    proc = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=service_env(aws_env, queue, dlq, tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(jsonl_ids(tmp_path)) == sorted(ids)
    assert queue_depth(queue) == 0
    letters = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in letters)
    assert len(reasons) == 2
    assert "not JSON" in reasons[1] or "not JSON" in reasons[0]
    assert any("eventID is missing" in r for r in reasons)


class SlowSink:
    """A sink slower than the visibility timeout (a test double of the sink contract)."""

    name: ClassVar[str] = "slow"
    formats: ClassVar[tuple[str, ...]] = ("asff",)
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.seen: list[str] = []

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        time.sleep(self.seconds)
        self.seen += [i.finding.event.event_id for i in batch]
        return [DeliveryResult(i.finding_id, Outcome.OK) for i in batch]

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_slow_delivery_is_not_redelivered(aws_env: MotoServer, tmp_path: Path) -> None:
    queue, dlq = make_queues(f"slow-{uuid.uuid4().hex[:8]}")
    ids = send_events(queue, "slow", 6)
    settings = load_settings(environ={"CONNECTOR_SQS_QUEUE_URL": queue, "CONNECTOR_DEAD_LETTER": dlq})
    sink = SlowSink(seconds=5)
    source = SqsSource(queue, pollers=1, wait_seconds=1, visibility_timeout=2)
    runner = Runner(source, build_pipeline(settings, sinks=[sink]), once=True, heartbeat_seconds=0.5, max_in_flight=1)
    assert runner.run() == 0
    source.close()
    assert sorted(sink.seen) == sorted(ids)  # each delivered once: no visibility expiry, no redelivery
    assert runner.received == len(ids)
    assert queue_depth(queue) == 0


def test_a_message_received_again_while_in_hand_is_not_handed_out_twice(aws_env: MotoServer) -> None:
    """Seen in CI under load: a heartbeat stalled, the visibility ran out mid-delivery and the
    message was received again and imported twice. The second copy is now dropped, and the
    acknowledgement of the first uses the newer receipt, so the message is deleted."""
    queue, _ = make_queues(f"again-{uuid.uuid4().hex[:8]}")
    [sent] = send_events(queue, "again", 1)
    source = SqsSource(queue, pollers=1, wait_seconds=1, visibility_timeout=1)
    try:
        first: list = []
        wait_for(lambda: bool(first.extend(source.receive()) or first), timeout=20)
        assert [m.id for m in first] and len(first) == 1
        # No keep_alive: the visibility runs out and the poller receives the message again.
        wait_for(lambda: source.received_again > 0, timeout=20)
        assert source.receive() == [] and source.receive() == [], "the second copy was handed out"
        source.ack(first)
    finally:
        source.close()
    time.sleep(2)  # past the visibility timeout of any receive: a message not deleted is back
    depth = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    assert sum(int(v) for v in depth["Attributes"].values()) == 0, f"{sent} not deleted by the newer receipt"


def test_a_sink_that_is_down_causes_redelivery_not_loss(aws_env: MotoServer, tmp_path: Path) -> None:
    queue, dlq = make_queues(f"down-{uuid.uuid4().hex[:8]}")
    ids = send_events(queue, "down", 5)
    out = tmp_path / "out"
    out.write_text("a file where the sink wants a directory")
    env = service_env(aws_env, queue, dlq, out, CONNECTOR_SQS_VISIBILITY_TIMEOUT="2")
    first = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1
    assert queue_depth(queue) == 5  # nothing deleted
    out.unlink()
    time.sleep(11)  # released messages come back after the release delay
    second = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert sorted(jsonl_ids(out)) == sorted(ids)
    assert queue_depth(queue) == 0


def test_sigterm_drains_acks_and_exits_zero(aws_env: MotoServer, opensearch_url: str, tmp_path: Path) -> None:
    from tests.integration.test_end_to_end import os_count

    queue, dlq = make_queues(f"term-{uuid.uuid4().hex[:8]}")
    ids = send_events(queue, "term", 300)
    prefix = f"term{uuid.uuid4().hex[:6]}"
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_SQS_MAX_MESSAGES="2", CONNECTOR_MAX_IN_FLIGHT="1",
                      CONNECTOR_SINKS="jsonl,securityhub,opensearch", CONNECTOR_OPENSEARCH_URL=opensearch_url,
                      CONNECTOR_OPENSEARCH_INDEX_PREFIX=prefix)
    boto3.client("securityhub").enable_security_hub()
    proc = start_service(env)
    try:
        wait_for(lambda: len(jsonl_ids(tmp_path)) >= 10, timeout=120)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, service_log(proc)
    assert elapsed < 20  # within CONNECTOR_GRACE_SECONDS
    delivered = set(jsonl_ids(tmp_path))
    remaining = queue_depth(queue)
    assert 0 < len(delivered) < len(ids)
    # Everything acknowledged (deleted) was delivered: what left the queue is in the sink.
    assert len(ids) - remaining <= len(delivered)
    assert len(ids) - remaining <= os_count(opensearch_url, f"{prefix}-asff")
    # And nothing is lost: a later run delivers the rest.
    time.sleep(1)
    rest = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=dict(env, CONNECTOR_SQS_MAX_MESSAGES="10", CONNECTOR_SQS_VISIBILITY_TIMEOUT="5"),
                          capture_output=True, text=True, timeout=300)
    assert rest.returncode == 0, rest.stderr[-2000:]
    assert set(jsonl_ids(tmp_path)) == set(ids)
    assert os_count(opensearch_url, f"{prefix}-asff") == os_count(opensearch_url, f"{prefix}-ocsf") == len(ids)


def test_health_ready_and_metrics_over_http(aws_env: MotoServer, tmp_path: Path) -> None:
    queue, dlq = make_queues(f"http-{uuid.uuid4().hex[:8]}")
    send_events(queue, "http", 3)
    env = service_env(aws_env, queue, dlq, tmp_path)
    base = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}"
    proc = start_service(env)
    try:
        wait_for(lambda: http_get(f"{base}/healthz")[0] == 200, timeout=60)
        wait_for(lambda: len(jsonl_ids(tmp_path)) == 3, timeout=60)
        status, body = http_get(f"{base}/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        status, metrics = http_get(f"{base}/metrics")
        assert status == 200
        assert 'connector_findings_delivered_total{format="asff",sink="jsonl"} 3.0' in metrics
        assert "connector_batch_seconds_bucket" in metrics and "connector_records_in_total" in metrics
        assert http_get(f"{base}/nope")[0] == 404
        # The dead-letter queue disappears: nothing bad could be acknowledged now, so not ready.
        boto3.client("sqs").delete_queue(QueueUrl=dlq)
        wait_for(lambda: http_get(f"{base}/readyz")[0] == 503, timeout=30, interval=1)
        assert "dead-letter" in json.loads(http_get(f"{base}/readyz")[1])["reason"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_readyz_fails_while_a_sink_is_down(aws_env: MotoServer, tmp_path: Path) -> None:
    from tests.support.moto import free_port

    queue, dlq = make_queues(f"ready-{uuid.uuid4().hex[:8]}")
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_SINKS="jsonl,opensearch",
                      CONNECTOR_OPENSEARCH_URL=f"http://127.0.0.1:{free_port()}")
    base = f"http://127.0.0.1:{env['CONNECTOR_HTTP_PORT']}"
    proc = start_service(env)
    try:
        wait_for(lambda: http_get(f"{base}/healthz")[0] == 200, timeout=60)
        status, body = http_get(f"{base}/readyz")
        assert status == 503 and "opensearch" in json.loads(body)["reason"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_configuration_errors_name_the_setting_and_secrets_are_masked(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "connector", "run"], env={"PATH": "/usr/bin:/bin", "CONNECTOR_SOURCE": "bogus"},
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "setting source" in bad.stderr
    typo = subprocess.run([sys.executable, "-m", "connector", "run"], env={"PATH": "/usr/bin:/bin", "CONNECTOR_SQS_POLLERS": "many"},
                          capture_output=True, text=True)
    assert typo.returncode == 2 and "CONNECTOR_SQS_POLLERS" in typo.stderr
    config = tmp_path / "c.yaml"
    config.write_text("sinks: [opensearch]\nopensearch:\n  url: https://search.example\n  auth: basic\n  username: soc\n  password: hunter2-very-secret\n")
    shown = subprocess.run([sys.executable, "-m", "connector", "config", "--config", str(config), "--json"],
                           env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["opensearch"]["password"] == "***" and data["opensearch"]["username"] == "soc"
    assert "hunter2" not in shown.stdout
    unknown = tmp_path / "u.yaml"
    unknown.write_text("sqs:\n  queue_ulr: x\n")
    wrong = subprocess.run([sys.executable, "-m", "connector", "config", "--config", str(unknown)], env={"PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and "sqs" in wrong.stderr and "queue_ulr" in wrong.stderr


def test_logs_are_json_and_never_hold_credentials() -> None:
    import io
    import logging

    from connector.runtime.logs import JsonFormatter, RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(["hunter2-very-secret"]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.warning("auth failed for password=hunter2-very-secret key AKIAABCDEFGHIJKLMNOP", extra={"record_id": "r-1"})
    line = json.loads(stream.getvalue())
    assert "hunter2" not in stream.getvalue() and "ABCDEFGHIJKLMNOP" not in stream.getvalue()
    assert line["record_id"] == "r-1" and line["level"] == "WARNING"



def test_run_once_on_a_missing_queue_fails_within_a_bounded_time(aws_env: MotoServer, tmp_path: Path) -> None:
    """Before: it logged every ~8 s forever (the pollers swallowed the error) and exited 0 when killed."""
    queue, dlq = make_queues(f"gone-{uuid.uuid4().hex[:8]}")
    boto3.client("sqs").delete_queue(QueueUrl=queue)
    env = service_env(aws_env, queue, dlq, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode != 0
    assert "NonExistentQueue" in proc.stderr or "does not exist" in proc.stderr, proc.stderr[-2000:]
