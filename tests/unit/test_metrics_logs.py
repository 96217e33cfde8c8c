"""Metrics and logs an on-call can use (issue 14): names and units, records vs messages, lag and
outcomes per sink, retries counted where they happen, alert rules that parse and name real
metrics; JSON logs without library tracebacks, repeated warnings aggregated, one-line CLI errors,
the AWS region from ``AWS_REGION`` or the queue URL / stream ARN."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from connector import aws_region, metrics
from connector.config import JsonlSettings, LimitSettings, OpenSearchSettings, Settings, SqsSettings
from connector.deadletters.file import FileDeadLetters
from connector.envelopes import Decoder
from connector.factory import FindingFactory
from connector.model import SourceMessage
from connector.pipeline import Pipeline
from connector.retry import Backoff, retry_call
from connector.runtime import logs
from connector.select import Selector
from connector.sinks.jsonl import JsonlSink
from connector.sinks.opensearch.sink import OpenSearchSink
from tests.support.moto import free_port
from tests.support.records import EVENTS, make_record

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def make_pipeline(tmp_path: Path, *sinks: Any) -> Pipeline:
    factory = FindingFactory.load()
    selector = Selector(factory.event_names)
    return Pipeline(factory=factory, decoder=Decoder(LimitSettings(), prefilter=selector.pattern), selector=selector,
                    sinks=list(sinks), dead_letters=FileDeadLetters(f"file://{tmp_path}/dlq"))


def jsonl_sink(tmp_path: Path, name: str = "out") -> JsonlSink:
    return JsonlSink.from_settings(Settings(jsonl=JsonlSettings(directory=str(tmp_path / name))))


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- metrics ------------------------------------------------------------------------------------

def test_no_created_series_and_conventional_names() -> None:
    metrics.RETRIES.labels("unit-test").inc()
    metrics.DELIVERY_LAG_SECONDS.labels("unit-test").observe(3)
    text = generate_latest().decode()
    assert "_created" not in text
    names = {m.name for m in REGISTRY.collect() if m.name.startswith("connector_")}
    for family in REGISTRY.collect():
        if not family.name.startswith("connector_"):
            continue
        if family.type == "counter":
            assert any(s.name.endswith("_total") for s in family.samples) or not family.samples, family.name
        assert "millis" not in family.name and "_ms" not in family.name, family.name
    assert {"connector_kinesis_iterator_age_seconds", "connector_backlog_messages", "connector_delivery_lag_seconds",
            "connector_sink_outcomes", "connector_messages_in", "connector_records_in"} <= names


def test_records_in_counts_records_and_messages_in_counts_messages(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    noise = {"eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventID": "noise", "eventTime": iso(now)}
    log_file = {"Records": [make_record(EVENTS[0], event_id="rec-1"), noise, make_record(EVENTS[1], event_id="rec-2")]}
    bare = make_record(EVENTS[2], event_id="rec-3")
    pipeline = make_pipeline(tmp_path, jsonl_sink(tmp_path))
    before_records, before_messages = value("connector_records_in_total", source="unit"), value(
        "connector_messages_in_total", source="unit")
    result = pipeline.handle([SourceMessage(id="a", body=json.dumps(log_file).encode(), source="unit"),
                              SourceMessage(id="b", body=json.dumps(bare).encode(), source="unit")])
    assert len(result.done) == 2
    assert value("connector_messages_in_total", source="unit") - before_messages == 2
    assert value("connector_records_in_total", source="unit") - before_records == 4


def test_delivery_lag_is_event_time_to_acceptance_once_per_finding_and_outcomes_per_sink(tmp_path: Path) -> None:
    sink = jsonl_sink(tmp_path, "lag")
    sink_name = sink.name
    pipeline = make_pipeline(tmp_path, sink)
    count = value("connector_delivery_lag_seconds_count", sink=sink_name)
    total = value("connector_delivery_lag_seconds_sum", sink=sink_name)
    ok = value("connector_sink_outcomes_total", sink=sink_name, outcome="ok")
    old = datetime.now(UTC) - timedelta(minutes=10)
    records = [make_record(e, event_id=f"lag-{i}", eventTime=iso(old)) for i, e in enumerate(EVENTS[:3])]
    result = pipeline.handle([SourceMessage(id="lag", body=json.dumps({"Records": records}).encode(), source="unit")])
    assert result.findings == 3
    # One observation per finding (not per format), ~600 s each.
    assert value("connector_delivery_lag_seconds_count", sink=sink_name) - count == 3
    lag = (value("connector_delivery_lag_seconds_sum", sink=sink_name) - total) / 3
    assert 590 < lag < 900
    assert value("connector_sink_outcomes_total", sink=sink_name, outcome="ok") - ok == 6  # ASFF + OCSF each
    assert value("connector_sink_up", sink=sink_name) == 1


def test_a_sink_outage_counts_retries_outcomes_and_sink_down(tmp_path: Path) -> None:
    """OpenSearch on a closed port (a real client, a refused connection): every attempt after the
    first is a counted retry, even before the index templates could be checked."""
    down = OpenSearchSink(OpenSearchSettings(url=f"http://127.0.0.1:{free_port()}", max_attempts=3, timeout_seconds=2))
    down.backoff = Backoff(base_seconds=0.01, cap_seconds=0.02, max_attempts=3)
    pipeline = make_pipeline(tmp_path, down)
    retries = value("connector_retries_total", component="opensearch")
    retryable = value("connector_sink_outcomes_total", sink="opensearch", outcome="retryable")
    result = pipeline.handle([SourceMessage(id="x", body=json.dumps(make_record(EVENTS[0], event_id="down-1")).encode(),
                                            source="unit")])
    assert result.retry and not result.done
    assert value("connector_retries_total", component="opensearch") - retries == 2 * 2  # 2 retries of 2 documents
    assert value("connector_sink_outcomes_total", sink="opensearch", outcome="retryable") - retryable == 2
    assert value("connector_sink_up", sink="opensearch") == 0


def test_retry_call_counts_each_retry_under_its_component() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    before = value("connector_retries_total", component="unit-flaky")
    assert retry_call(flaky, backoff=Backoff(base_seconds=0.0001, max_attempts=5), retryable=lambda e: True,
                      component="unit-flaky") == "ok"
    assert value("connector_retries_total", component="unit-flaky") - before == 2


def test_kinesis_lag_is_exported_in_seconds() -> None:
    from tests.unit.test_kinesis_checkpoints import MemoryStream, make_source, receive_some

    stream = MemoryStream()
    stream.add_shard("shardId-000000000000")
    stream.put("shardId-000000000000", b"{}", b"{}", b"{}")
    source = make_source(stream, max_records=1)
    assert receive_some(source)
    age = value("connector_kinesis_iterator_age_seconds", stream="s", shard="shardId-000000000000")
    assert age == 5.0  # MillisBehindLatest 5000


# -- alert rules --------------------------------------------------------------------------------

def rule_expressions() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    out = []
    for group in doc["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            out.append((rule["alert"], rule["expr"]))
    return out


def test_alert_rules_cover_the_on_call_cases_and_name_only_real_metrics() -> None:
    exprs = rule_expressions()
    alerts = {name for name, _ in exprs}
    assert {"ConnectorSinkDown", "ConnectorDeliveryLagHigh", "ConnectorDeadLettersGrowing", "ConnectorBacklogHigh",
            "ConnectorKinesisIteratorAgeHigh"} <= alerts
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    known = {f"{family.name}{suffix}" for family in REGISTRY.collect() if family.name.startswith("connector_")
             for suffix in suffixes.get(family.type, ())}
    for name, expr in exprs:
        used = set(re.findall(r"\bconnector_[a-z_]+", expr))
        assert used, name
        assert used <= known, f"{name} uses {sorted(used - known)}, not defined in connector/metrics.py"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", "alerts.test.yaml"], cwd=RULES.parent,
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# -- logs ---------------------------------------------------------------------------------------

def capture(repeat_seconds: float = 60.0, clock: Any = None) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RepeatFilter(repeat_seconds, clock=clock) if clock else logs.RepeatFilter(repeat_seconds))
    handler.addFilter(logs.RedactingFilter())
    return stream, handler


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_library_warning_with_a_traceback_is_one_line_our_unexpected_error_keeps_it() -> None:
    stream, handler = capture()
    library, ours = logging.getLogger("urllib3.connectionpool"), logging.getLogger("connector.unit")
    for logger in (library, ours):
        logger.addHandler(handler)
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError:
            library.warning("POST http://x/_bulk [status:N/A request:0.001s]", exc_info=True)
        try:
            raise KeyError("surprise")
        except KeyError:
            ours.exception("batch failed unexpectedly")
    finally:
        for logger in (library, ours):
            logger.removeHandler(handler)
    first, second = lines(stream)
    assert "exception" not in first and first["error"].startswith("ConnectionRefusedError: ")
    assert "\n" not in first["error"]
    assert "Traceback" in second["exception"] and "KeyError" in second["exception"]


def test_repeated_warnings_are_aggregated_and_counted() -> None:
    now = [1000.0]
    stream, handler = capture(60.0, clock=lambda: now[0])
    logger = logging.getLogger("connector.unit.repeat")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        for i in range(150):
            logger.warning("dead-lettered %s at %s: %s", f"id-{i}", "deliver", "AccountNotWritable: 999999999999")
        logger.warning("a different warning")
        logger.info("info lines are never held back")
        logger.info("info lines are never held back")
        now[0] += 61
        logger.warning("dead-lettered %s at %s: %s", "id-last", "deliver", "AccountNotWritable: 999999999999")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    out = lines(stream)
    dead = [e for e in out if e["message"].startswith("dead-lettered")]
    assert len(dead) == 2
    assert "repeated" not in dead[0]
    assert dead[1]["repeated"] == 149 and "149 more like this" in dead[1]["message"]
    assert sum(e["message"] == "info lines are never held back" for e in out) == 2
    assert any(e["message"] == "a different warning" for e in out)


def test_flush_writes_what_is_still_held(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook)
    try:
        logs.configure("INFO")
        log = logging.getLogger("connector.unit.flush")
        for i in range(5):
            log.warning("sink %s failed a batch of %d: %s", "opensearch", i, "refused")
        logs.flush()
    finally:
        root.handlers[:], _, sys.excepthook, threading.excepthook = saved
        root.setLevel(saved[1])
    out = lines(stream)
    assert len(out) == 2 and out[1]["repeated"] == 4 and "4 more like this" in out[1]["message"]


# -- region -------------------------------------------------------------------------------------

def test_region_from_aws_region_alone_is_exported_for_botocore() -> None:
    env = {"AWS_REGION": "eu-west-3"}
    assert aws_region.resolve(Settings(), env) == "eu-west-3"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-3"
    both = {"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "us-east-2"}
    assert aws_region.resolve(Settings(), both) == "us-east-2" and both["AWS_DEFAULT_REGION"] == "us-east-2"


@pytest.mark.parametrize(("locator", "region"), [
    ("https://sqs.ap-southeast-2.amazonaws.com/111122223333/q", "ap-southeast-2"),
    ("https://eu-central-1.queue.amazonaws.com/111122223333/q", "eu-central-1"),
    ("https://sqs.cn-north-1.amazonaws.com.cn/111122223333/q", "cn-north-1"),
    ("https://sqs.us-gov-west-1.amazonaws.com/111122223333/q", "us-gov-west-1"),
    ("arn:aws:kinesis:eu-north-1:111122223333:stream/trail", "eu-north-1"),
    ("http://127.0.0.1:5000/123456789012/q", None),
    ("arn:aws:kinesis:../etc:111122223333:stream/x", None),
    ("", None),
])
def test_region_of_queue_urls_and_arns(locator: str, region: str | None) -> None:
    assert aws_region.region_of(locator) == region


def test_region_from_the_queue_url_when_the_environment_names_none() -> None:
    env: dict[str, str] = {}
    settings = Settings(sqs=SqsSettings(queue_url="https://sqs.sa-east-1.amazonaws.com/111122223333/q"))
    assert aws_region.resolve(settings, env) == "sa-east-1" and env["AWS_DEFAULT_REGION"] == "sa-east-1"
    assert aws_region.resolve(Settings(), {}) is None


# -- CLI errors through a subprocess ------------------------------------------------------------

def connector(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": "/nonexistent", "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    return subprocess.run([sys.executable, "-m", "connector", *args], env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("target", ["missing", "directory"])
def test_map_on_a_missing_path_or_a_directory_is_one_line(tmp_path: Path, target: str) -> None:
    path = tmp_path / "nope.json" if target == "missing" else tmp_path
    proc = connector("map", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and str(path) in proc.stderr


def test_an_unforeseen_error_keeps_its_traceback_and_an_aws_one_is_a_line() -> None:
    from botocore.exceptions import ClientError, NoRegionError

    from connector import cli

    error = ClientError({"Error": {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist"}},
                        "ListObjectsV2")
    assert cli.describe(error) == ("AWS ListObjectsV2 failed: NoSuchBucket: The specified bucket does not exist", 1)
    message, code = cli.describe(NoRegionError()) or ("", 0)
    assert code == 2 and "AWS_REGION" in message
    assert cli.describe(ZeroDivisionError("x")) is None
