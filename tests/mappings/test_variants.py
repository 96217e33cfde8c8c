"""What each variant changes in the finding: outcome, severity, actor, resources, remediation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from connector.factory import FindingFactory
from connector.mapping.cases import Case
from connector.model import RenderedFinding, Severity
from tests.support.records import ACCOUNT, BOOK, EVENTS, RESOURCE_IDS, make_record, variants


@pytest.fixture(scope="module")
def factory() -> FindingFactory:
    return FindingFactory.load(clock=lambda: RENDERED_AT)


RENDERED_AT = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
#: CLI verbs that put something back; an attempt's runbook has none.
RESTORING = ("create-", "attach-", "accept-", "replace-", "associate-")


def render(factory: FindingFactory, record: dict) -> dict[str, RenderedFinding]:
    return {r.format: r for r in factory.render(record, origin="test")}


@pytest.mark.parametrize("event", EVENTS)
def test_success_names_the_resource_and_its_recovery(factory: FindingFactory, event: str) -> None:
    out = render(factory, variants(event)["success"])
    finding = out["asff"].finding
    resource_id = RESOURCE_IDS[event]
    assert resource_id in finding.title
    assert any(r.id == resource_id for r in finding.resources)
    assert out["asff"].document["Resources"][0]["Id"].startswith(f"arn:aws:ec2:eu-west-1:{ACCOUNT}:")
    assert resource_id in out["asff"].document["Remediation"]["Recommendation"]["Text"]
    runbook = out["ocsf"].document["remediation"]["desc"]
    assert resource_id in runbook and "eu-west-1" in runbook
    assert "<" + "networkInterfaceId>" not in runbook
    assert finding.outcome == "succeeded"
    assert out["asff"].document["Action"]["ActionType"] == "AWS_API_CALL"
    assert out["asff"].document["Action"]["AwsApiCallAction"]["RemoteIpDetails"]["IpAddressV4"] == "203.0.113.25"


@pytest.mark.parametrize("event", EVENTS)
def test_a_failed_call_says_so_and_is_less_severe(factory: FindingFactory, event: str) -> None:
    cases = variants(event)
    success = render(factory, cases["success"])["asff"].finding
    for name in ("failed", "failed-with-params"):
        out = render(factory, cases[name])
        finding = out["asff"].finding
        assert finding.outcome == "failed"
        assert "fail" in finding.title.lower() or "attempt" in finding.title.lower(), finding.title
        assert finding.description.startswith("Failed attempt, nothing was deleted"), finding.description
        assert finding.severity < success.severity
        assert "nothing was deleted" in finding.severity_reason and "removed" not in finding.severity_reason
        # An attempt's runbook investigates; it restores nothing that was never removed.
        assert all(not c.command.split()[2].startswith(RESTORING) for c in finding.remediation.cli), finding.remediation.cli
        assert "Recover what was removed" not in finding.remediation.runbook
        assert out["ocsf"].document["api"]["response"]["error"].startswith("Client.")
        assert "failed" in out["ocsf"].document["status_detail"].lower()
    # requestParameters null: no resource id is known, the account stands in.
    failed = render(factory, cases["failed"])["asff"].document
    assert failed["Resources"][0]["Id"] == f"AWS::::Account:{ACCOUNT}"


@pytest.mark.parametrize("event", EVENTS)
def test_root_stays_at_least_high_whatever_the_outcome(factory: FindingFactory, event: str) -> None:
    for name in ("failed", "dry-run"):
        record = variants(event)[name]
        record["userIdentity"] = {"type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root",
                                  "accountId": ACCOUNT}
        finding = render(factory, record)["asff"].finding
        assert finding.severity >= Severity.HIGH, (name, finding.severity_reason)
        assert "root" in finding.severity_reason


def test_updated_at_is_when_the_finding_was_made_not_the_event_time() -> None:
    record = make_record(EVENTS[0])
    later = datetime(2030, 1, 1, tzinfo=UTC)
    first = {r.format: r.document for r in FindingFactory.load(clock=lambda: RENDERED_AT).render(record)}
    second = {r.format: r.document for r in FindingFactory.load(clock=lambda: later).render(record)}
    assert first["asff"]["Id"] == second["asff"]["Id"] and first["asff"]["CreatedAt"] == second["asff"]["CreatedAt"]
    assert first["asff"]["UpdatedAt"] == "2026-12-01T09:00:00.000Z" and second["asff"]["UpdatedAt"] == "2030-01-01T00:00:00.000Z"
    assert second["ocsf"]["finding_info"]["modified_time"] > first["ocsf"]["finding_info"]["modified_time"]


@pytest.mark.parametrize("event", EVENTS)
def test_dry_run_is_reported_as_a_permission_probe(factory: FindingFactory, event: str) -> None:
    finding = render(factory, variants(event)["dry-run"])["asff"].finding
    assert finding.outcome == "dry_run"
    assert "dry run" in finding.description.lower()
    assert finding.severity <= Severity.MEDIUM
    assert "nothing was deleted" in finding.severity_reason and "removed" not in finding.severity_reason


@pytest.mark.parametrize("event", EVENTS)
def test_root_is_at_least_as_severe_as_a_user(factory: FindingFactory, event: str) -> None:
    cases = variants(event)
    root = render(factory, cases["root"])
    assert root["asff"].finding.severity >= render(factory, cases["success"])["asff"].finding.severity
    user = root["ocsf"].document["evidences"][0]["actor"]["user"]
    assert user["type_id"] == 2 and user["uid"].endswith(":root")  # uid is the ARN, as in Security Lake


@pytest.mark.parametrize("event", EVENTS)
def test_assumed_role_keeps_issuer_and_session(factory: FindingFactory, event: str) -> None:
    out = render(factory, variants(event)["assumed-role"])
    actor = out["ocsf"].document["evidences"][0]["actor"]
    assert actor["session"]["issuer"] == f"arn:aws:iam::{ACCOUNT}:role/NetworkAdmin"
    assert "NetworkAdmin/deploy-session" in out["asff"].finding.description
    assert out["asff"].document["ProductFields"]["cloudtrail/userIdentity/sessionIssuer"].endswith("role/NetworkAdmin")
    assert "Terraform" in out["asff"].document["ProductFields"]["cloudtrail/userAgent"]


@pytest.mark.parametrize("event", EVENTS)
def test_invoked_by_a_service(factory: FindingFactory, event: str) -> None:
    out = render(factory, variants(event)["invoked-by-cloudformation"])
    action = out["asff"].document["Action"]["AwsApiCallAction"]
    assert action["CallerType"] == "domain" and "RemoteIpDetails" not in action
    evidence = out["ocsf"].document["evidences"][0]
    assert evidence["actor"]["app_name"] == "cloudformation.amazonaws.com"
    assert evidence["src_endpoint"] == {"domain": "cloudformation.amazonaws.com"}


@pytest.mark.parametrize("service", ["autoscaling.amazonaws.com", "clientvpn.amazonaws.com", "eks.amazonaws.com"])
@pytest.mark.parametrize("event", EVENTS)
def test_other_invoking_services(factory: FindingFactory, event: str, service: str) -> None:
    record = make_record(
        event,
        userIdentity={"type": "AWSService", "invokedBy": service},
        sourceIPAddress=service,
        userAgent=service,
    )
    out = render(factory, record)
    assert out["asff"].finding.event.identity.display == service
    assert out["ocsf"].document["evidences"][0]["actor"]["user"]["type_id"] == 4  # Service (OCSF 1.8), as Security Lake types AWS services


@pytest.mark.parametrize("event", EVENTS)
def test_missing_source_ip_and_user_agent(factory: FindingFactory, event: str) -> None:
    cases = variants(event)
    no_ip = render(factory, cases["sdk-no-source-ip"])
    assert "CallerType" not in no_ip["asff"].document["Action"]["AwsApiCallAction"]
    assert "src_endpoint" not in no_ip["ocsf"].document["evidences"][0]
    no_ua = render(factory, cases["no-user-agent"])
    assert "cloudtrail/userAgent" not in no_ua["asff"].document["ProductFields"]


@pytest.mark.parametrize("version", ["1.0", "1.01", "1.02", "1.03", "1.04", "1.05", "1.06", "1.07", "1.08", "1.09", "1.10", "1.11"])
def test_every_event_version(factory: FindingFactory, version: str) -> None:
    for event in EVENTS:
        record = make_record(event, eventVersion=version)
        assert len(factory.render(record)) == 2


@pytest.mark.parametrize("event", EVENTS)
def test_unknown_extra_fields_are_ignored_but_kept_in_raw(factory: FindingFactory, event: str) -> None:
    out = render(factory, variants(event)["unknown-fields"])
    assert '"futureField"' in out["ocsf"].document["raw_data"]
    assert out["asff"].document["Title"] == render(factory, variants(event)["success"])["asff"].document["Title"]


CASES = list(BOOK.cases())


@pytest.mark.parametrize("case", CASES, ids=[f"{c.event_name}-{c.variant}" for c in CASES])
def test_every_case_names_its_resource_in_its_partition(factory: FindingFactory, case: Case) -> None:
    """Each request shape a mapping declares (wrapped, flat, response only...) names the same
    resource, with an ARN in the record's partition and Region."""
    out = render(factory, case.record)
    resource = out["asff"].document["Resources"][0]
    if case.resource_id is None:
        assert resource["Id"] == f"AWS::::Account:{ACCOUNT}"
        return
    partition = case.record["userIdentity"].get("arn", "arn:aws:").split(":")[1]
    assert resource["Id"].startswith(f"arn:{partition}:ec2:{case.record['awsRegion']}:{ACCOUNT}:"), resource["Id"]
    assert resource["Id"].endswith(case.resource_id)
    assert resource["Partition"] == partition and resource["Region"] == case.record["awsRegion"]
    assert case.resource_id in out["ocsf"].document["resources"][0]["uid"]


@pytest.mark.parametrize("event", EVENTS)
def test_same_record_same_finding_and_ids_agree_across_formats(factory: FindingFactory, event: str) -> None:
    record = make_record(event)
    first, second = render(factory, record), render(factory, record)
    assert first["asff"].document == second["asff"].document
    assert first["ocsf"].document == second["ocsf"].document
    assert first["asff"].document["Id"] == first["ocsf"].document["finding_info"]["uid"]


@pytest.mark.parametrize("event", EVENTS)
def test_remediation_text_fits_asff(factory: FindingFactory, event: str) -> None:
    resource_id = RESOURCE_IDS[event]
    long_id = resource_id.split("-")[0] + "-" + "f" * 60
    record = json.loads(json.dumps(make_record(event)).replace(resource_id, long_id))
    doc = render(factory, record)["asff"].document
    assert len(doc["Remediation"]["Recommendation"]["Text"]) <= 512
    assert doc["Remediation"]["Recommendation"]["Url"].startswith("https://docs.aws.amazon.com/")
