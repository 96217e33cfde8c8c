"""The Security Hub sink against a real moto server process, through the fault-injecting proxy.

moto stores what BatchImportFindings sends (per account and Region, like the service), so
``GetFindings`` tells whether a finding really arrived. Throttling, 5xx answers and rejected
findings come from ``tests.support.faultproxy`` — moto itself never produces them — and the
proxy's record of the requests it saw is what the rate and batch-size assertions read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client import REGISTRY

from connector.build import build_pipeline
from connector.config import load_settings
from connector.errors import ConfigError, DeliveryError, MappingFileError
from connector.model import Outcome, RenderedFinding
from connector.retry import Backoff
from connector.sinks import sink_class
from connector.sinks.securityhub.credentials import SessionCache
from connector.sinks.securityhub.sink import MAX_FINDING_BYTES, MAX_REQUEST_BYTES, SecurityHubSink
from tests.conftest import require
from tests.support.faultproxy import FaultProxy, Faults, max_in_window
from tests.support.moto import ACCOUNT_ID, MotoServer
from tests.support.sink_contents import findings

pytestmark = pytest.mark.moto

FAST = Backoff(base_seconds=0.01, cap_seconds=0.1, max_attempts=20)
OTHER_ACCOUNT = "444455556666"
ROLE_TEMPLATE = "arn:{partition}:iam::{account}:role/SecurityHubImporter"


@pytest.fixture()
def proxy(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """Every AWS call goes through the proxy (STS too, so it sees which credentials were used)."""
    with FaultProxy(aws_env.url) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


def make_sink(**kwargs: Any) -> SecurityHubSink:
    options: dict[str, Any] = {"sessions": SessionCache(), "region": "us-east-1", "backoff": FAST}
    options.update(kwargs)
    return SecurityHubSink(**options)


def stored_ids(session: boto3.Session, region: str, prefix: str = "") -> set[str]:
    """Every finding id moto holds for the session's account in ``region``."""
    client = session.client("securityhub", region_name=region)
    ids: set[str] = set()
    for page in client.get_paginator("get_findings").paginate(PaginationConfig={"PageSize": 100}):
        ids.update(f["Id"] for f in page["Findings"] if f["Id"].startswith(prefix))
    return ids


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"component": "securityhub"}) or 0.0


def by_outcome(batch: list[RenderedFinding], results: list[Any]) -> dict[Outcome, dict[str, str | None]]:
    assert len(results) == len(batch), "one result per finding"
    assert [r.finding_id for r in results] == [i.finding_id for i in batch]
    out: dict[Outcome, dict[str, str | None]] = {o: {} for o in Outcome}
    for result in results:
        out[result.outcome][result.finding_id] = result.error
    return out


def test_throttling_5xx_and_rejections_lose_nothing_and_hold_the_rate(proxy: FaultProxy) -> None:
    region = "eu-central-1"
    proxy.faults = Faults(
        throttle_fraction=0.5, server_error_fraction=0.1, reject_marker="/bad-", transient_marker="/flaky-", seed=7
    )
    good = findings(40, region=region, prefix="ok")
    bad = findings(6, region=region, prefix="bad")
    flaky = findings(4, region=region, prefix="flaky")
    batch = good[:20] + bad[:3] + flaky + bad[3:] + good[20:]
    rate, burst = 6.0, 3
    sink = make_sink(rate_per_second=rate, burst=burst, max_findings_per_request=5)
    throttles_before, retries_before = metric("connector_throttles_total"), metric("connector_retries_total")

    results = by_outcome(batch, sink.send(batch))

    expected_ok = {f.finding_id for f in good + flaky}
    assert set(results[Outcome.OK]) == expected_ok
    assert results[Outcome.RETRYABLE] == {}
    assert set(results[Outcome.PERMANENT]) == {f.finding_id for f in bad}
    for reason in results[Outcome.PERMANENT].values():
        assert reason is not None and reason.startswith("InvalidInput: ")
    # What moto holds is exactly the valid findings: the rejected ones never arrived.
    assert stored_ids(boto3.Session(), region) == expected_ok

    imports = proxy.imports()
    answers = [r.answer for r in imports]
    assert answers.count("throttled") >= 3 and answers.count("server-error") >= 1
    assert proxy.faults.failed_once == {f.finding_id for f in flaky}
    assert all(r.findings <= 5 for r in imports)
    # The rate the proxy saw: a bucket lets through at most burst + rate * w requests in any
    # window of w seconds. Two requests of slack: the proxy stamps arrival, not sending, and a
    # loaded machine can delay one request until the next one catches up. (Without the limiter
    # this batch puts ~27 requests in one second.)
    slack = 2
    times = [r.at for r in imports]
    assert max_in_window(times, 1.0) <= burst + rate * 1.0 + slack
    assert max_in_window(times, 0.25) <= burst + rate * 0.25 + slack
    duration = times[-1] - times[0]
    assert len(times) / duration <= rate + (burst + slack) / duration
    assert metric("connector_throttles_total") - throttles_before == answers.count("throttled")
    assert metric("connector_retries_total") > retries_before


def test_requests_split_at_100_findings(proxy: FaultProxy) -> None:
    region = "ap-southeast-2"
    batch = findings(250, region=region, prefix="hundred")
    results = by_outcome(batch, make_sink(rate_per_second=0).send(batch))
    assert len(results[Outcome.OK]) == 250
    assert [r.findings for r in proxy.imports()] == [100, 100, 50]
    assert stored_ids(boto3.Session(), region) == set(results[Outcome.OK])


def padded(item: RenderedFinding, size: int) -> RenderedFinding:
    document = dict(item.document)
    fields = dict(document.get("ProductFields", {}))
    fields["test/padding"] = "x" * size
    document["ProductFields"] = fields
    return replace(item, document=document)


def test_requests_split_at_6_mb_and_oversized_findings_are_refused(proxy: FaultProxy) -> None:
    region = "sa-east-1"
    big = [padded(item, 220_000) for item in findings(60, region=region, prefix="big")]
    too_big = padded(findings(1, region=region, prefix="huge")[0], MAX_FINDING_BYTES + 1)
    batch = [*big[:30], too_big, *big[30:]]

    results = by_outcome(batch, make_sink(rate_per_second=0).send(batch))

    assert set(results[Outcome.OK]) == {f.finding_id for f in big}
    assert results[Outcome.PERMANENT][too_big.finding_id].startswith("FindingTooLarge: ")
    imports = proxy.imports()
    assert len(imports) == 3  # 60 * ~222 KB = ~13.3 MB: two full requests and the rest
    assert all(r.body_bytes <= MAX_REQUEST_BYTES for r in imports)
    assert all(r.findings < 100 for r in imports)
    assert sum(r.findings for r in imports) == 60
    assert too_big.finding_id not in {fid for r in imports for fid in r.finding_ids}
    assert stored_ids(boto3.Session(), region) == {f.finding_id for f in big}


def test_second_account_is_imported_with_its_assumed_role(proxy: FaultProxy) -> None:
    region = "eu-west-3"
    own = findings(3, account=ACCOUNT_ID, region=region, prefix="own")
    other = findings(4, account=OTHER_ACCOUNT, region=region, prefix="member")
    sessions = SessionCache(role_arn_template=ROLE_TEMPLATE, external_id="ext-1234")
    sink = make_sink(sessions=sessions, rate_per_second=0)

    results = by_outcome(own + other, sink.send(own + other))
    assert set(results[Outcome.OK]) == {f.finding_id for f in own + other}

    role = sessions.role_session(OTHER_ACCOUNT, region=region)
    assert role.role_arn == f"arn:aws:iam::{OTHER_ACCOUNT}:role/SecurityHubImporter"
    assert role.session.client("sts").get_caller_identity()["Account"] == OTHER_ACCOUNT
    # The member account's Security Hub holds its findings, and only those.
    assert stored_ids(role.session, region) == {f.finding_id for f in other}
    assert stored_ids(boto3.Session(), region) == {f.finding_id for f in own}
    # And the requests carried the assumed credentials, in the finding's Region.
    keys = {r.access_key_id: set(r.finding_ids) for r in proxy.imports()}
    assert keys[role.access_key_id] == {f.finding_id for f in other}
    assert keys["testing"] == {f.finding_id for f in own}
    assert {r.region for r in proxy.imports()} == {region}

    # A second batch reuses the cached session instead of assuming the role again.
    calls = sessions.assume_calls
    more = findings(2, account=OTHER_ACCOUNT, region=region, prefix="member-again")
    assert {r.outcome for r in sink.send(more)} == {Outcome.OK}
    assert sessions.assume_calls == calls


def test_assumed_role_is_refreshed_before_it_expires(proxy: FaultProxy) -> None:
    now = [1_000_000.0]
    sessions = SessionCache(role_arn_template=ROLE_TEMPLATE, duration_seconds=900, refresh_margin=300, clock=lambda: now[0])
    first = sessions.role_session(OTHER_ACCOUNT, region="us-east-1")
    assert sessions.role_session(OTHER_ACCOUNT, region="us-east-1") is first
    client = sessions.client("securityhub", region="us-east-1", account=OTHER_ACCOUNT)
    now[0] = first.expires_at - 299  # inside the refresh margin
    second = sessions.role_session(OTHER_ACCOUNT, region="us-east-1")
    assert second is not first and second.access_key_id != first.access_key_id
    assert sessions.assume_calls == 2
    assert sessions.client("securityhub", region="us-east-1", account=OTHER_ACCOUNT) is not client


def test_other_accounts_without_a_role_template_are_permanent_failures(proxy: FaultProxy) -> None:
    region = "eu-north-1"
    own = findings(2, region=region, prefix="mine")
    other = findings(2, account=OTHER_ACCOUNT, region=region, prefix="theirs")
    local = findings(2, account="777788889999", region=region, prefix="delegated")
    # A partner product imports for any account that enabled it: no role needed.
    partner = [
        replace(item, document=dict(item.document, ProductArn=f"arn:aws:securityhub:{region}::product/example/ndr"))
        for item in findings(2, account=OTHER_ACCOUNT, region=region, prefix="partner")
    ]
    sink = make_sink(rate_per_second=0, local_accounts=("777788889999",))
    batch = own + other + local + partner
    results = by_outcome(batch, sink.send(batch))
    assert set(results[Outcome.OK]) == {f.finding_id for f in own + local + partner}
    for fid in (f.finding_id for f in other):
        assert results[Outcome.PERMANENT][fid].startswith("AccountNotWritable: ")
        assert OTHER_ACCOUNT in results[Outcome.PERMANENT][fid]
    assert all(r.access_key_id == "testing" for r in proxy.imports())


def test_invalid_findings_are_isolated_not_taking_the_request_down(proxy: FaultProxy) -> None:
    region = "ca-central-1"
    batch = findings(10, region=region, prefix="mixed")
    no_title = dict(batch[3].document)
    del no_title["Title"]  # botocore refuses the whole request client-side
    no_resources = dict(batch[7].document, Resources=[])  # moto answers FailedFindings for it
    batch[3] = replace(batch[3], document=no_title)
    batch[7] = replace(batch[7], document=no_resources)

    results = by_outcome(batch, make_sink(rate_per_second=0).send(batch))

    assert set(results[Outcome.PERMANENT]) == {batch[3].finding_id, batch[7].finding_id}
    assert "Title" in results[Outcome.PERMANENT][batch[3].finding_id]
    assert results[Outcome.PERMANENT][batch[7].finding_id].startswith("InvalidInput: ")
    assert len(results[Outcome.OK]) == 8
    assert stored_ids(boto3.Session(), region) == set(results[Outcome.OK])


def test_attempts_run_out_as_retryable_never_as_success(proxy: FaultProxy) -> None:
    region = "us-west-1"
    proxy.faults = Faults(throttle_fraction=1.0, throttle_code="LimitExceededException")
    batch = findings(7, region=region, prefix="never")
    sink = make_sink(rate_per_second=0, backoff=Backoff(base_seconds=0.01, cap_seconds=0.02, max_attempts=3))
    results = by_outcome(batch, sink.send(batch))
    assert set(results[Outcome.RETRYABLE]) == {f.finding_id for f in batch}
    assert all(reason.startswith("LimitExceededException") for reason in results[Outcome.RETRYABLE].values())
    assert len(proxy.imports()) == 3
    assert stored_ids(boto3.Session(), region) == set()


def test_check_reports_a_hub_that_is_not_enabled(proxy: FaultProxy) -> None:
    sink = make_sink(region="af-south-1")
    with pytest.raises(DeliveryError, match="InvalidAccessException"):
        sink.check()
    boto3.client("securityhub", region_name="af-south-1").enable_security_hub()
    sink.check()


def test_from_settings_reads_its_section(aws_env: MotoServer) -> None:
    settings = load_settings(
        environ={
            "CONNECTOR_SINKS": "securityhub",
            "CONNECTOR_SECURITYHUB_RATE_PER_SECOND": "2.5",
            "CONNECTOR_SECURITYHUB_BURST": "4",
            "CONNECTOR_SECURITYHUB_LOCAL_ACCOUNTS": "111111111111,222222222222",
            "CONNECTOR_SECURITYHUB_ASSUME_ROLE_ARN_TEMPLATE": ROLE_TEMPLATE,
        }
    )
    sink = sink_class("securityhub").from_settings(settings)
    assert isinstance(sink, SecurityHubSink)
    assert sink.limiter.rate == 2.5 and sink.limiter.burst == 4
    assert sink.local_accounts == {"111111111111", "222222222222"}
    assert "securityhub:BatchImportFindings" in sink.iam_actions and "sts:AssumeRole" in sink.iam_actions
    broken = load_settings(environ={"CONNECTOR_SECURITYHUB_ASSUME_ROLE_ARN_TEMPLATE": "arn:aws:iam::{acct}:role/x"})
    with pytest.raises(ConfigError, match="assume_role_arn_template"):
        SecurityHubSink.from_settings(broken)


def test_fault_proxy_throttle_is_parsed_by_botocore_as_the_service_sends_it(proxy: FaultProxy) -> None:
    """The injected fault must look to botocore like the real thing, or the test proves nothing."""
    proxy.faults = Faults(throttle_fraction=1.0, throttle_code="TooManyRequestsException")
    client = boto3.client(
        "securityhub", region_name="us-east-1", config=SecurityHubSink(sessions=SessionCache()).client_config
    )
    doc = json.loads(json.dumps(findings(1, prefix="probe")[0].document))
    with pytest.raises(client.exceptions.ClientError) as caught:
        client.batch_import_findings(Findings=[doc])
    assert caught.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_through_the_pipeline_invalid_findings_are_dead_lettered_with_their_error(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    """The acceptance case end to end: 50 % throttled, some rejected → held or dead-lettered, all acked."""
    from connector.config import Settings
    from connector.deadletters.file import FileDeadLetters
    from connector.factory import FindingFactory
    from connector.model import SourceMessage
    from tests.support.records import make_record

    try:
        events = FindingFactory.load().event_names
    except MappingFileError:
        events = ()
    require(bool(events), "no mapping files in mappings/ yet")
    region = "eu-south-1"
    proxy.faults = Faults(throttle_fraction=0.5, reject_marker="/bad-", seed=11)
    records = [
        make_record(events[n % len(events)], event_id=f"{'bad' if n % 7 == 3 else 'good'}-{n:04d}",
                    recipientAccountId=ACCOUNT_ID, awsRegion=region)
        for n in range(30)
    ]
    messages = [SourceMessage(id=f"m{n}", body=json.dumps(r).encode(), source="sqs") for n, r in enumerate(records)]
    dead_letters = FileDeadLetters(f"file://{tmp_path}/dlq")
    sink = make_sink(rate_per_second=8, burst=4, max_findings_per_request=10)
    pipeline = build_pipeline(Settings(sinks=("securityhub",)), sinks=[sink], dead_letters=dead_letters)

    result = pipeline.handle(messages)

    assert {m.id for m in result.done} == {m.id for m in messages} and result.retry == ()
    bad_ids = {r["eventID"] for r in records if r["eventID"].startswith("bad-")}
    letters = dead_letters.read()
    assert {json.loads(letter["body"])["Id"].rsplit("/", 1)[-1] for letter in letters} == bad_ids
    assert all(letter["stage"] == "deliver" and "InvalidInput: " in letter["reason"] for letter in letters)
    held = stored_ids(boto3.Session(), region)
    assert {fid.rsplit("/", 1)[-1] for fid in held} == {r["eventID"] for r in records} - bad_ids
    assert any(r.answer == "throttled" for r in proxy.imports())

    # The same events again (a redelivery): nothing new in Security Hub, every message acked.
    again = build_pipeline(Settings(sinks=("securityhub",)), sinks=[sink], dead_letters=dead_letters)
    assert {m.id for m in again.handle(messages).done} == {m.id for m in messages}
    assert stored_ids(boto3.Session(), region) == held


def test_a_corrected_finding_replaces_the_imported_one(aws_env: MotoServer) -> None:
    """Same deterministic Id, later UpdatedAt, new content: what Security Hub stores afterwards is
    the correction (a fixed runbook, a new severity), not the first version."""
    from datetime import UTC, datetime

    from connector.factory import FindingFactory
    from tests.support.records import EVENT, make_record

    region = "ca-central-1"
    record = make_record(EVENT, event_id="0c0c0c0c-0000-4000-8000-00000000c0de", awsRegion=region,
                         recipientAccountId=ACCOUNT_ID)
    first = [r for r in FindingFactory.load(clock=lambda: datetime(2026, 12, 1, tzinfo=UTC)).render(record)
             if r.format == "asff"]
    sink = make_sink(region=region, rate_per_second=0)
    assert [r.outcome for r in sink.send(first)] == [Outcome.OK]
    corrected_doc = {**first[0].document, "Title": "corrected title", "Severity": {"Label": "CRITICAL", "Original": "CRITICAL"},
                     "UpdatedAt": "2026-12-02T00:00:00.000Z"}
    corrected = [replace(first[0], document=corrected_doc)]
    assert [r.outcome for r in sink.send(corrected)] == [Outcome.OK]
    client = boto3.client("securityhub", region_name=region)
    # Filtered here: the emulator's GetFindings does not apply every filter, and other tests share the Region.
    stored = [f for page in client.get_paginator("get_findings").paginate() for f in page["Findings"]
              if f["Id"] == first[0].finding_id]
    assert len(stored) == 1, "one finding, updated in place"
    assert stored[0]["Title"] == "corrected title" and stored[0]["Severity"]["Label"] == "CRITICAL"
    assert stored[0]["UpdatedAt"].startswith("2026-12-02")
