"""Triage: each context rule raises or lowers with its stated reason (real records and variants),
suppression marks and never drops, rules files fail with ``file: $.path: reason``, first-seen
sightings behave the same in memory and in DynamoDB (moto), and ``map --explain`` tells why."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from prometheus_client import REGISTRY

from connector.errors import MappingFileError
from connector.factory import FindingFactory
from connector.model import Severity
from connector.sinks.opensearch.sink import connector_status
from connector.triage import load_rules, rules_path, shipped_rules
from connector.triage.firstseen import DynamoDBSightings, MemorySightings, SightingStore, create_table
from tests.support.moto import MotoServer
from tests.support.records import ACCOUNT, BOOK, make_record

RENDERED_AT = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
NAT = "DeleteNatGateway"  # base MEDIUM, invoked_by_service LOW
ENI = "DeleteNetworkInterface"  # base MEDIUM
SERVICE_LINKED = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLESLR000001:EKS",
    "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSServiceRoleForAmazonEKS/EKS",
    "accountId": ACCOUNT,
    "sessionContext": {
        "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLESLR000001", "userName": "AWSServiceRoleForAmazonEKS",
                          "arn": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS",
                          "accountId": ACCOUNT},
        "attributes": {"creationDate": "2026-11-20T08:00:00Z", "mfaAuthenticated": "false"},
    },
}
#: Rules that need facts about an organisation, as a site would write them (the shipped file has them as comments).
SITE_RULES: dict[str, Any] = {
    "version": 1,
    "change_windows": {
        "friday-morning": {"timezone": "Europe/Berlin", "days": ["fri"], "start": "10:00", "end": "13:00"},
        "overnight": {"days": ["sat"], "start": "22:00", "end": "02:00"},
    },
    "context": [
        {"id": "deployment-pipeline", "reason": "the deployment role ran Terraform, CDK or Pulumi",
         "match": [{"field": "userIdentity.sessionContext.sessionIssuer.userName", "in": ["NetworkAdmin"]},
                   {"field": "userAgent", "matches": "(Terraform/|aws-cdk/|Pulumi/|pulumi/)"}],
         "lower": 1},
        {"id": "new-principal", "reason": "principal not seen in this account for 30 days",
         "match": [{"first_seen": {"field": "userIdentity.arn", "days": 30}}], "raise": 1},
        {"id": "new-source-ip", "reason": "source address not seen in this account for 7 days",
         "match": [{"field": "sourceIPAddress", "matches": "^[0-9a-fA-F.:]+$"},
                   {"first_seen": {"field": "sourceIPAddress", "days": 7}}], "raise": 1},
        {"id": "outside-change-window", "reason": "outside the declared change windows",
         "match": [{"outside_windows": ["friday-morning", "overnight"]}], "raise": 1},
    ],
}


def write_rules(tmp_path: Path, doc: dict[str, Any], name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def factory_for(rules: str | Path, store: SightingStore | None = None, clock: datetime = RENDERED_AT) -> FindingFactory:
    return FindingFactory.load(clock=lambda: clock, triage_rules=str(rules), sightings=store or MemorySightings())


def documents(factory: FindingFactory, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    out = {r.format: dict(r.document) for r in factory.render(record, origin="test")}
    return out["asff"], out["ocsf"]


def adjustments(asff: dict[str, Any], ocsf: dict[str, Any]) -> dict[str, str]:
    """rule id → reason, read from both formats (and checked to agree)."""
    in_ocsf = {a["rule_id"]: a["reason"] for a in ocsf["unmapped"].get("triage", {}).get("adjustments", [])}
    ids = asff["ProductFields"].get("connector/triage/rules", "")
    assert sorted(filter(None, ids.split(","))) == sorted(in_ocsf)
    for rule_id, reason in in_ocsf.items():
        assert f"{rule_id} (" in asff["ProductFields"]["connector/triage/adjustments"]
        assert reason in asff["ProductFields"]["connector/triage/adjustments"]
    return in_ocsf


def corpus_record(corpus_dir: Path, event: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(next((corpus_dir / "events" / event).glob("*.json")).read_text())
    return record


def with_identity(identity: dict[str, Any], **extra: Any) -> Callable[[Path], dict[str, Any]]:
    return lambda _: make_record(NAT, userIdentity=identity, **extra)


def console_no_mfa_variant(_: Path) -> dict[str, Any]:
    """The shared variant of an IAM user's console session, without MFA, on a NAT gateway."""
    identity = copy.deepcopy(BOOK.identity("iam-user"))
    identity["sessionContext"] = {"attributes": {"creationDate": "2026-11-20T08:00:00Z", "mfaAuthenticated": "false"}}
    return make_record(NAT, userIdentity=identity, userAgent="console.ec2.amazonaws.com", sessionCredentialFromConsole="true")


def console_with_mfa(corpus_dir: Path) -> dict[str, Any]:
    record = corpus_record(corpus_dir, "DeleteVpcPeeringConnection")
    record["userIdentity"]["sessionContext"]["attributes"]["mfaAuthenticated"] = "true"
    return record


# (case, record, shipped rule expected to match or None, base severity, final severity)
SHIPPED_CASES: list[tuple[str, Callable[[Path], dict[str, Any]], str | None, Severity, Severity]] = [
    ("root variant raises", lambda _: BOOK.case(ENI, "root").record, "root-user", Severity.HIGH, Severity.CRITICAL),
    ("root failed stays at least HIGH, raised", lambda _: BOOK.case(ENI, "root-failed").record, "root-user",
     Severity.HIGH, Severity.CRITICAL),
    ("real console session without MFA (corpus)", lambda c: corpus_record(c, "DeleteVpcPeeringConnection"),
     "console-without-mfa", Severity.MEDIUM, Severity.HIGH),
    ("console without MFA variant", console_no_mfa_variant, "console-without-mfa", Severity.MEDIUM, Severity.HIGH),
    ("console with MFA: no rule", console_with_mfa, None, Severity.MEDIUM, Severity.MEDIUM),
    ("cross-account variant", lambda _: BOOK.case(NAT, "cross-account").record, "cross-account-principal",
     Severity.MEDIUM, Severity.HIGH),
    ("cross-account: zero-stripped recipient is the same account", lambda _: make_record(
        NAT, recipientAccountId="11122223333", userIdentity=dict(BOOK.identity("iam-user"), accountId="011122223333")),
     None, Severity.MEDIUM, Severity.MEDIUM),
    ("real CloudFormation stack deletion (corpus)", lambda c: corpus_record(c, "DetachInternetGateway"),
     "cloudformation", Severity.LOW, Severity.INFORMATIONAL),
    ("CloudFormation variant", lambda _: BOOK.case(NAT, "invoked-by-cloudformation").record, "cloudformation",
     Severity.LOW, Severity.INFORMATIONAL),
    ("service-linked role", with_identity(SERVICE_LINKED), "service-linked-role", Severity.MEDIUM, Severity.LOW),
    ("plain IAM user: nothing", lambda _: BOOK.case(NAT, "success").record, None, Severity.MEDIUM, Severity.MEDIUM),
    ("Terraform user agent alone lowers nothing in the shipped file", lambda _: BOOK.case(NAT, "assumed-role").record,
     None, Severity.MEDIUM, Severity.MEDIUM),
]


@pytest.fixture(scope="module")
def shipped() -> FindingFactory:
    return factory_for("")


@pytest.mark.parametrize(("case", "make", "rule", "base", "final"), SHIPPED_CASES, ids=[c[0] for c in SHIPPED_CASES])
def test_shipped_context_rules(shipped: FindingFactory, corpus_dir: Path, case: str, make: Callable[[Path], dict[str, Any]],
                               rule: str | None, base: Severity, final: Severity) -> None:
    asff, ocsf = documents(shipped, make(corpus_dir))
    reasons = {r.id: r.reason for r in shipped.triage.rules.context}  # type: ignore[union-attr]
    found = adjustments(asff, ocsf)
    assert asff["Severity"]["Label"] == final.name and ocsf["severity_id"] == int(final)
    if rule is None:
        assert found == {} and "triage" not in ocsf["unmapped"], found
        assert "connector/triage/baseSeverity" not in asff["ProductFields"]
        return
    assert found == {rule: reasons[rule]}
    assert asff["ProductFields"]["connector/triage/baseSeverity"] == base.name
    assert ocsf["unmapped"]["triage"]["base_severity"] == base.name
    assert ocsf["unmapped"]["triage"]["severity"] == final.name
    assert rule in asff["ProductFields"]["connector/severityReason"]
    assert asff["Workflow"]["Status"] == "NEW" and ocsf["status_id"] == 1


def at(hour: int, minute: int = 0, day: str = "2026-11-20") -> str:
    return f"{day}T{hour:02d}:{minute:02d}:00Z"


# (case, record overrides, rules expected) — 2026-11-20 is a Friday; Berlin is UTC+1 in November.
SITE_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("Terraform by the deployment role, inside the window", {"userIdentity": BOOK.identity("assumed-role"),
     "userAgent": BOOK.common["user_agents"]["terraform"], "eventTime": at(10, 15)}, {"deployment-pipeline"}),
    ("Terraform user agent from another role", {"userIdentity": SERVICE_LINKED, "sourceIPAddress": "eks.amazonaws.com",
     "userAgent": BOOK.common["user_agents"]["terraform"], "eventTime": at(10, 15)}, set()),
    ("outside the Friday window (Berlin 14:30)", {"eventTime": at(13, 30)}, {"outside-change-window"}),
    ("inside the Friday window (Berlin 09:30 is before it)", {"eventTime": at(8, 30)}, {"outside-change-window"}),
    ("inside the overnight window after midnight (Sunday 01:00 UTC)", {"eventTime": at(1, 0, "2026-11-22")}, set()),
    ("inside the overnight window before midnight (Saturday 23:00 UTC)", {"eventTime": at(23, 0, "2026-11-21")}, set()),
]


@pytest.mark.parametrize(("case", "overrides", "rules"), SITE_CASES, ids=[c[0] for c in SITE_CASES])
def test_site_context_rules(tmp_path: Path, case: str, overrides: dict[str, Any], rules: set[str]) -> None:
    path = write_rules(tmp_path, SITE_RULES)
    factory = factory_for(path)
    # Seen once the day before (a different event), so first-seen does not fire here.
    factory.render(make_record(NAT, event_id="seen-before", **dict(overrides, eventTime=at(12, 0, "2026-11-19"))))
    record = make_record(NAT, event_id="e-site", **overrides)
    asff, ocsf = documents(factory, record)
    found = adjustments(asff, ocsf)
    reasons = {r["id"]: r["reason"] for r in SITE_RULES["context"]}
    assert found == {r: reasons[r] for r in rules}
    steps = {"deployment-pipeline": -1, "outside-change-window": 1}
    assert ocsf["severity_id"] == int(Severity.MEDIUM) + sum(steps[r] for r in rules)  # the NAT gateway's base


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> SightingStore:
    if request.param == "memory":
        return MemorySightings()
    server: MotoServer = request.getfixturevalue("aws_env")
    assert server
    client = boto3.client("dynamodb")
    table = f"sightings-{request.node.name.replace('[', '-').replace(']', '')}"[:200]
    create_table(client, table)
    return DynamoDBSightings(table, client, read_cache_seconds=0)


def test_first_seen_principal_and_address(tmp_path: Path, store: SightingStore) -> None:
    factory = factory_for(write_rules(tmp_path, SITE_RULES), store)

    def rules_for(event_id: str, when: str, **extra: Any) -> set[str]:
        record = make_record(NAT, event_id=event_id, eventTime=when, **extra)
        asff, ocsf = documents(factory, record)
        return set(adjustments(asff, ocsf)) - {"outside-change-window"}

    first = rules_for("fs-1", at(11, 0))
    assert first == {"new-principal", "new-source-ip"}
    # The same day counts as the first day (order within a day and redelivery do not matter).
    assert rules_for("fs-2", at(11, 30)) == {"new-principal", "new-source-ip"}
    assert rules_for("fs-1", at(11, 0)) == first
    # Next day: both seen.
    assert rules_for("fs-3", at(11, 0, "2026-11-21")) == set()
    # A new address next day; the principal is known.
    assert rules_for("fs-4", at(12, 0, "2026-11-21"), sourceIPAddress="198.51.100.9") == {"new-source-ip"}
    # 10 days later: the address (7 days) is new again, the principal (30 days) is not.
    assert rules_for("fs-5", at(9, 0, "2026-12-01")) == {"new-source-ip"}
    # An AWS service name is not an address: never "new".
    assert "new-source-ip" not in rules_for("fs-6", at(9, 0, "2026-12-20"), sourceIPAddress="cloudformation.amazonaws.com")
    # Another account: everything is new there.
    assert rules_for("fs-7", at(9, 0, "2026-12-01"), recipientAccountId="444455556666") == {"new-principal", "new-source-ip"}


def test_dynamodb_sightings_are_shared_between_replicas(aws_env: MotoServer) -> None:
    client = boto3.client("dynamodb")
    create_table(client, "sightings-shared")
    one, two = DynamoDBSightings("sightings-shared", client), DynamoDBSightings("sightings-shared", client)
    one.add("k", 100, 30)
    one.add("k", 100, 30)  # once per day and process: the second is not written again
    two.add("k", 101, 30)
    assert set(DynamoDBSightings("sightings-shared", client).days("k")) == {100, 101}
    item = client.get_item(TableName="sightings-shared", Key={"key": {"S": "k"}})["Item"]
    assert int(item["expires_at"]["N"]) == (101 + 31) * 86_400


def test_floors_win_over_lowering_and_steps_are_clamped(tmp_path: Path) -> None:
    doc = {"version": 1, "context": [
        {"id": "floor", "reason": "root floor", "match": [{"field": "userIdentity.type", "equals": "Root"}], "at_least": "HIGH"},
        {"id": "down", "reason": "lower a lot", "match": [{"field": "eventName", "exists": True}], "lower": 4},
        {"id": "cap", "reason": "cap at medium", "match": [{"field": "awsRegion", "prefix": "eu-"}], "at_most": "MEDIUM"},
    ]}
    factory = factory_for(write_rules(tmp_path, doc))
    _, root = documents(factory, BOOK.case(NAT, "root").record)
    assert root["severity_id"] == int(Severity.HIGH)  # CRITICAL - 4 → clamped, capped MEDIUM, floor HIGH wins
    _, user = documents(factory, BOOK.case(NAT, "success").record)
    assert user["severity_id"] == int(Severity.INFORMATIONAL)
    assert [a["rule_id"] for a in user["unmapped"]["triage"]["adjustments"]] == ["down", "cap"]


SUPPRESS = {"version": 1, "suppress": [
    {"id": "lab-cleanup", "owner": "platform@example.com", "reason": "the lab account's janitor deletes NAT gateways nightly",
     "until": "2026-12-31", "match": [{"field": "recipientAccountId", "equals": ACCOUNT}, {"field": "eventName", "equals": NAT}]},
    {"id": "old-exception", "owner": "netops@example.com", "reason": "migration finished long ago",
     "until": "2026-11-01T00:00:00Z", "match": [{"field": "eventName", "exists": True}]},
]}


def test_suppressed_findings_are_marked_not_dropped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="connector.triage")
    factory = factory_for(write_rules(tmp_path, SUPPRESS))
    # The expired rule is reported at start-up and never applied.
    assert any("old-exception" in r.getMessage() and "expired" in r.getMessage() for r in caplog.records)
    before = REGISTRY.get_sample_value("connector_findings_suppressed_total", {"rule": "lab-cleanup"}) or 0.0
    asff, ocsf = documents(factory, make_record(NAT, event_id="sup-1"))
    assert asff["Workflow"]["Status"] == "SUPPRESSED"
    assert asff["ProductFields"]["connector/triage/suppressedBy"] == "lab-cleanup"
    assert "janitor" in asff["ProductFields"]["connector/triage/suppressionReason"]
    assert "platform@example.com" in asff["ProductFields"]["connector/triage/suppressionReason"]
    assert ocsf["status_id"] == 3 and ocsf["status"] == "Suppressed"
    assert ocsf["unmapped"]["triage"]["suppression"] == {
        "rule_id": "lab-cleanup", "reason": SUPPRESS["suppress"][0]["reason"], "owner": "platform@example.com",
        "until": "2027-01-01T00:00:00Z"}
    assert asff["Severity"]["Label"] == "MEDIUM"  # suppression does not touch severity (the base)
    assert REGISTRY.get_sample_value("connector_findings_suppressed_total", {"rule": "lab-cleanup"}) == before + 1
    # Not matching (another event): not suppressed; the expired rule would match everything.
    other, other_ocsf = documents(factory, make_record(ENI, event_id="sup-2"))
    assert other["Workflow"]["Status"] == "NEW" and other_ocsf["status_id"] == 1
    # OpenSearch's connector.status says the same in both index kinds.
    assert connector_status(asff, "asff") == connector_status(ocsf, "ocsf") == "SUPPRESSED"
    assert connector_status(other, "asff") == connector_status(other_ocsf, "ocsf") == "NEW"
    resolved = ({**asff, "RecordState": "ARCHIVED"}, {**ocsf, "status_id": 4})  # what connector/resolve sends
    assert connector_status(resolved[0], "asff") == connector_status(resolved[1], "ocsf") == "RESOLVED"
    # After `until` (the whole of 2026-12-31 included) the lab rule stops applying too.
    late = factory_for(tmp_path / "rules.yaml", clock=datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert documents(late, make_record(NAT, event_id="sup-1"))[0]["Workflow"]["Status"] == "NEW"


def test_triaged_findings_pass_both_validators_strictly(tmp_path: Path, shared_dir: Path, corpus_dir: Path,
                                                        shipped: FindingFactory) -> None:
    doc = copy.deepcopy(SITE_RULES)
    doc["suppress"] = SUPPRESS["suppress"][:1]
    factory = factory_for(write_rules(tmp_path, doc))
    records = [make(corpus_dir) for _, make, *_ in SHIPPED_CASES] + [make_record(NAT, event_id="v-sup")]
    rendered = [r for rec in records for f in (factory, shipped) for r in f.render(rec, origin="test")]
    assert any(r.document.get("status_id") == 3 for r in rendered)
    procs = []
    for tool, fmt in (("check_asff.py", "asff"), ("check_ocsf.py", "ocsf")):
        docs = [r.document for r in rendered if r.format == fmt]
        path = tmp_path / f"{fmt}.jsonl"
        path.write_text("".join(json.dumps(d) + "\n" for d in docs))
        procs.append((len(docs), subprocess.Popen([sys.executable, str(shared_dir / "tools" / tool), "--strict", "-q", str(path)],
                                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for count, proc in procs:  # both validators at once
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-3000:] + err[-2000:]
        assert f"{count} passed, 0 failed" in out


BROKEN: list[tuple[str, dict[str, Any] | str, str]] = [
    ("no version", {"context": []}, "$: 'version' is a required property"),
    ("unknown operator", {"version": 1, "context": [{"id": "a", "reason": "why not", "lower": 1,
                                                     "match": [{"field": "userAgent", "looks_like": "x"}]}]}, "$.context[0].match[0]"),
    ("raise and lower", {"version": 1, "context": [{"id": "a", "reason": "why not", "raise": 1, "lower": 1,
                                                   "match": [{"field": "userAgent", "exists": True}]}]}, "$.context[0]"),
    ("no effect", {"version": 1, "context": [{"id": "a", "reason": "why not",
                                             "match": [{"field": "userAgent", "exists": True}]}]}, "$.context[0]"),
    ("bad regex", {"version": 1, "context": [{"id": "a", "reason": "why not", "raise": 1,
                                             "match": [{"field": "userAgent", "matches": "(unclosed"}]}]},
     "$.context[0].match[0].matches: bad regular expression"),
    ("bad path", {"version": 1, "context": [{"id": "a", "reason": "why not", "raise": 1,
                                            "match": [{"any": [{"field": "a[?", "exists": True}]}]}]},
     "$.context[0].match[0].any[0].field: bad field path"),
    ("unknown window", {"version": 1, "context": [{"id": "a", "reason": "why not", "raise": 1,
                                                  "match": [{"outside_windows": ["nope"]}]}]},
     "$.context[0].match[0].outside_windows[0]: no change window 'nope'"),
    ("bad time zone", {"version": 1, "change_windows": {"w": {"timezone": "Mars/Olympus", "days": ["mon"], "start": "01:00",
                                                              "end": "02:00"}}}, "$.change_windows.w.timezone: unknown time zone"),
    ("duplicate id", {"version": 1, "context": [
        {"id": "a", "reason": "why not", "raise": 1, "match": [{"field": "x", "exists": True}]}],
        "suppress": [{"id": "a", "reason": "why not", "owner": "me", "match": [{"field": "x", "exists": True}]}]},
     "$.suppress[0].id: rule id 'a' is used twice"),
    ("suppression without owner", {"version": 1, "suppress": [{"id": "a", "reason": "why not",
                                                               "match": [{"field": "x", "exists": True}]}]},
     "$.suppress[0]: 'owner' is a required property"),
    ("unquoted date is kept as text and checked", "version: 1\nsuppress:\n  - {id: a, reason: why not, owner: me, "
     "until: 2027-13-45, match: [{field: x, exists: true}]}\n", "$.suppress[0].until"),
    ("not YAML", "version: [1\n", "$: not valid YAML"),
]


@pytest.mark.parametrize(("case", "doc", "message"), BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_rules_files_name_the_file_and_the_path(tmp_path: Path, case: str, doc: dict[str, Any] | str,
                                                        message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    with pytest.raises(MappingFileError) as err:
        load_rules(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value), str(err.value)


def test_unquoted_dates_load_as_dates(tmp_path: Path) -> None:
    path = tmp_path / "dates.yaml"
    path.write_text("version: 1\nsuppress:\n  - {id: a, reason: why not, owner: me, until: 2027-01-31, "
                    "match: [{field: x, exists: true}]}\n")
    rule = load_rules(path).suppress[0]
    assert rule.until == datetime(2027, 2, 1, tzinfo=UTC)
    assert rule.active(datetime(2027, 1, 31, 23, 59, tzinfo=UTC)) and not rule.active(rule.until + timedelta(seconds=1))


def test_the_setting_chooses_the_file() -> None:
    assert rules_path("") == shipped_rules() and shipped_rules().is_file()
    assert rules_path("none") is None and rules_path("NONE") is None
    assert rules_path("/etc/x.yaml") == Path("/etc/x.yaml")
    assert FindingFactory.load(triage_rules="none").triage is None


def test_explain_through_the_command(tmp_path: Path, corpus_dir: Path) -> None:
    doc = copy.deepcopy(SUPPRESS)
    doc["context"] = [{"id": "console-no-mfa", "reason": "console without MFA", "raise": 1, "match": [
        {"field": "userIdentity.sessionContext.attributes.mfaAuthenticated", "equals": "false"}]}]
    doc["suppress"][0]["match"] = [{"field": "requestParameters.vpcPeeringConnectionId", "prefix": "pcx-"}]
    doc["suppress"][0]["until"] = "2099-01-01"
    rules = write_rules(tmp_path, doc)
    record = corpus_dir / "events" / "DeleteVpcPeeringConnection" / "wwalpha-aws-spotlight-1.json"
    cfn = corpus_dir / "events" / "DetachInternetGateway" / "wwalpha-aws-spotlight-1.json"
    command = [sys.executable, "-m", "connector", "map", "--explain"]
    # Both at once: with --rules, and with the shipped file by default.
    mine = subprocess.Popen([*command, "--rules", str(rules), str(record)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    default = subprocess.Popen([*command, str(cfn)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = mine.communicate(timeout=120)
    assert mine.returncode == 0, err
    assert "mapping: ec2-delete-vpc-peering-connection@" in out
    assert "mapping severity: MEDIUM" in out
    assert "[MATCH] console-no-mfa (raise 1): console without MFA" in out
    assert "userIdentity.sessionContext.attributes.mfaAuthenticated is 'false', equals 'false': yes" in out
    assert "[MATCH] lab-cleanup" in out and "requestParameters.vpcPeeringConnectionId is 'pcx-09cc395f56ffead9e'" in out
    assert "[no   ] old-exception" in out and "expired 2026-11-01T00:00:00Z, not applied" in out
    assert "severity: MEDIUM → HIGH by console-no-mfa" in out
    assert "suppressed: yes, by lab-cleanup (owner platform@example.com" in out
    assert "1 records explained" in err
    # The shipped file: the CloudFormation record is lowered and says by which rule.
    out, err = default.communicate(timeout=120)
    assert default.returncode == 0, err
    assert "[MATCH] cloudformation (lower 1)" in out and "severity: LOW → INFORMATIONAL by cloudformation" in out
    assert "suppressed: no" in out


class BrokenStore:
    def days(self, key: str) -> frozenset[int]:
        raise ConnectionError("DynamoDB unreachable")

    def add(self, key: str, day: int, keep_days: int) -> None:
        raise AssertionError("not reached")


def test_a_failing_first_seen_store_costs_no_finding(tmp_path: Path) -> None:
    factory = factory_for(write_rules(tmp_path, SITE_RULES), BrokenStore())
    before = REGISTRY.get_sample_value("connector_triage_store_errors_total") or 0.0
    asff, ocsf = documents(factory, make_record(NAT, event_id="broken-1", eventTime=at(11, 0)))
    assert not {"new-principal", "new-source-ip"} & set(adjustments(asff, ocsf))
    assert REGISTRY.get_sample_value("connector_triage_store_errors_total") == before + 2


#: Every condition kind, with values that exercise the number and boolean comparisons.
EVERY_KIND = {"version": 1, "change_windows": {
    "weekdays": {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"},
    "night": {"timezone": "UTC", "days": ["tue", "thu"], "start": "22:00", "end": "02:00"},
    "freeze": {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21"}},
    "context": [
        {"id": f"r{i}", "reason": "a reason long enough", "match": match, "raise": 1} for i, match in enumerate([
            [{"field": "userIdentity.type", "equals": "Root"}],
            [{"field": "userIdentity.accountId", "equals": 111122223333}, {"field": "readOnly", "equals": False}],
            [{"field": "userIdentity.accountId", "in": ["0111122223333", 999988887777]}],
            [{"field": "userIdentity.sessionContext.sessionIssuer.arn", "matches": ":role/aws-service-role/"}],
            [{"field": "userAgent", "prefix": "aws-cli/"}, {"field": "eventSource", "suffix": ".amazonaws.com"}],
            [{"field": "userAgent", "contains": "Terraform"}, {"field": "userIdentity.invokedBy", "exists": False}],
            [{"field": "userIdentity.accountId", "differs_from": "recipientAccountId"}],
            [{"field": "userIdentity.accountId", "same_as": "recipientAccountId"}, {"field": "requestParameters", "exists": True}],
            [{"any": [{"field": "sessionCredentialFromConsole", "equals": True},
                      {"not": {"field": "userIdentity.sessionContext.attributes.mfaAuthenticated", "equals": "true"}}]}],
            [{"first_seen": {"field": "sourceIPAddress", "days": 2}}, {"outside_windows": ["weekdays", "night"]}],
            [{"within_windows": ["freeze"]}, {"field": "userIdentity.sessionContext.sessionIssuer | userName", "matches": "^A"}],
        ])],
    "suppress": [{"id": "s", "owner": "owner@example.com", "reason": "a reason long enough",
                  "match": [{"field": "eventID", "prefix": "lab-"}, {"field": "userAgent", "contains": "Boto3"}]}]}


def test_compiled_rules_decide_as_the_conditions_do(tmp_path: Path) -> None:
    """The engine's generated rule functions (triage/compiled.py) against the condition objects
    ``map --explain`` uses, on every record variant and mutations of the values compared."""
    from connector.events import parse_event
    from connector.triage import load_triage
    from connector.triage.compiled import compile_rule
    from connector.triage.conditions import all_hold
    from tests.support.records import EVENTS, variants

    triage = load_triage(str(write_rules(tmp_path, EVERY_KIND)))
    assert triage is not None
    mutations: list[dict[str, Any]] = [
        {}, {"userAgent": None}, {"userAgent": "Boto3/1.35 Terraform/1.9"}, {"eventID": "lab-1"}, {"readOnly": False},
        {"recipientAccountId": "999988887777"}, {"sessionCredentialFromConsole": True}, {"userIdentity": "not an object"},
        {"eventTime": "2026-11-24T23:30:00Z"}, {"eventTime": "2026-11-20T12:00:00Z"}, {"requestParameters": {}},
        {"sourceIPAddress": "ec2.amazonaws.com"}, {"eventTime": "2026-12-06T12:00:00Z"},
        {"userIdentity": {"type": "AssumedRole", "accountId": "0111122223333", "sessionContext": {"sessionIssuer": {
            "arn": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ec2.amazonaws.com/AWSServiceRoleForEC2",
            "userName": "AWSServiceRoleForEC2"}, "attributes": {"mfaAuthenticated": "true"}}}}]
    hits: set[str] = set()
    for name in EVENTS:
        for record in variants(name).values():
            for change in mutations:
                event = parse_event({**record, **change})
                facts = triage.facts(event)
                expected = [r.id for r in triage.rules.context if all_hold(r.match, facts)]
                assert [a.rule_id for a in triage._context(facts)] == expected, (name, change)
                for rule in triage.rules.suppress:
                    assert compile_rule(rule.match)(facts) is all_hold(rule.match, facts)
                hits.update(expected)
    assert hits == {r.id for r in triage.rules.context}  # every rule matched somewhere: the test can fail


def test_a_time_past_the_calendar_in_the_windows_zone_is_outside_every_weekly_window(tmp_path: Path) -> None:
    """9999-12-31T23:59:59Z is a valid eventTime; in Berlin it is already year 10000, which no
    datetime holds. It is in no weekly window, and the record ends as the project's own error
    (its OCSF times are past the schema's range), never as an OverflowError out of triage."""
    from zoneinfo import ZoneInfo

    from connector.errors import ValidationFailed
    from connector.triage.windows import ChangeWindow

    end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    berlin = ChangeWindow("w", days=frozenset(range(7)), start=0, end=24 * 60, zone=ZoneInfo("Europe/Berlin"))
    assert not berlin.contains(end)
    assert ChangeWindow("utc", days=frozenset(range(7)), start=0, end=24 * 60).contains(end)
    factory = factory_for(write_rules(tmp_path, SITE_RULES))
    with pytest.raises(ValidationFailed, match="e-end-of-time"):
        factory.render(make_record(NAT, event_id="e-end-of-time", eventTime="9999-12-31T23:59:59Z"))
