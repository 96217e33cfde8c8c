"""Issue 12's whole chain, per deletion, on moto and a real OpenSearch node: the resources are
made and one is deleted for real, the CloudTrail record becomes an enriched finding delivered to
Security Hub and both OpenSearch indexes, ``connector remediate --apply --yes`` restores the
resource, and the restore event — built from what moto now holds, not from the plan — resolves
that same finding: RecordState ARCHIVED in Security Hub, OCSF status Resolved and the ASFF
document ARCHIVED in OpenSearch.

moto emits no CloudTrail, so the restore record is written here from the restored resource's
real ids (the new NAT gateway's subnet and allocation, the new peering, the new interface's
subnet and address, the recreated rule as Describe returns it)."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.config import OpenSearchSettings
from connector.factory import FindingFactory
from connector.sinks.opensearch.sink import OpenSearchSink
from connector.sinks.securityhub.credentials import SessionCache
from connector.sinks.securityhub.sink import SecurityHubSink
from tests.integration.test_enrichment import enricher_for
from tests.integration.test_remediate import remediate
from tests.support import network
from tests.support.moto import REGION, MotoServer
from tests.support.restores import restore_record

pytestmark = [pytest.mark.moto, pytest.mark.opensearch]

#: The two that need values only the enriched finding keeps (the record lacks them).
BY_FINDING = {"DeleteNetworkAclEntry", "DeleteNetworkInterface"}


@pytest.fixture()
def ec2(aws_env: MotoServer) -> Any:
    return boto3.client("ec2", region_name=REGION)


def restored(s: network.Scenario, ec2: Any) -> dict[str, Any]:
    """The record of the call that undid the deletion, from the state after ``remediate``."""
    ids = s.ids
    if s.event == "DetachInternetGateway":
        [gw] = ec2.describe_internet_gateways(InternetGatewayIds=[ids["igw"]])["InternetGateways"]
        assert [a["VpcId"] for a in gw["Attachments"]] == [ids["vpc"]], "not re-attached"
        return restore_record(s.record, "AttachInternetGateway", {"internetGatewayId": ids["igw"], "vpcId": ids["vpc"]})
    if s.event == "DeleteNetworkAclEntry":
        [acl] = ec2.describe_network_acls(NetworkAclIds=[ids["acl"]])["NetworkAcls"]
        [entry] = [e for e in acl["Entries"] if e["RuleNumber"] == 110 and not e["Egress"]]
        return restore_record(s.record, "CreateNetworkAclEntry", {
            "networkAclId": ids["acl"], "ruleNumber": entry["RuleNumber"], "egress": entry["Egress"],
            "ruleAction": entry["RuleAction"], "protocol": entry["Protocol"], "cidrBlock": entry["CidrBlock"]})
    if s.event == "DeleteNatGateway":
        gateways = ec2.describe_nat_gateways(Filters=[{"Name": "subnet-id", "Values": [ids["nat_subnet"]]},
                                                      {"Name": "state", "Values": ["available"]}])["NatGateways"]
        [new] = [g for g in gateways if g["NatGatewayId"] != ids["nat"]]
        return restore_record(s.record, "CreateNatGateway", {"CreateNatGatewayRequest": {
            "SubnetId": new["SubnetId"], "AllocationId": new["NatGatewayAddresses"][0]["AllocationId"]}},
            response={"CreateNatGatewayResponse": {"natGateway": {"natGatewayId": new["NatGatewayId"]}}})
    if s.event == "DeleteNetworkInterface":
        [eni] = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [ids["subnet"]]},
                                                         {"Name": "private-ip-address", "Values": ["10.0.1.50"]}])["NetworkInterfaces"]
        return restore_record(s.record, "CreateNetworkInterface", {"subnetId": eni["SubnetId"],
                                                                   "privateIpAddress": eni["PrivateIpAddress"]})
    assert s.event == "DeleteVpcPeeringConnection"
    every = ec2.describe_vpc_peering_connections(Filters=[
        {"Name": "requester-vpc-info.vpc-id", "Values": [ids["vpc"]]},
        {"Name": "accepter-vpc-info.vpc-id", "Values": [ids["peer_vpc"]]}])["VpcPeeringConnections"]
    [new] = [p for p in every if p["Status"]["Code"] == "active"
              # (moto may ignore the VPC filters: match the two VPCs here too)
              and (p["RequesterVpcInfo"]["VpcId"], p["AccepterVpcInfo"]["VpcId"]) == (ids["vpc"], ids["peer_vpc"])]
    return restore_record(s.record, "AcceptVpcPeeringConnection", {"vpcPeeringConnectionId": new["VpcPeeringConnectionId"]},
                          response={"vpcPeeringConnection": {
                              "requesterVpcInfo": {"vpcId": new["RequesterVpcInfo"]["VpcId"]},
                              "accepterVpcInfo": {"vpcId": new["AccepterVpcInfo"]["VpcId"]}}})


@pytest.mark.parametrize("event", list(network.BUILDERS))
def test_remediate_then_the_restore_event_resolves_the_finding_everywhere(
        event: str, ec2: Any, opensearch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opensearchpy import OpenSearch

    s = network.BUILDERS[event](ec2)
    factory = dataclasses.replace(FindingFactory.load(triage_rules="none", resolve=True), enricher=enricher_for(s))
    original = {r.format: r for r in factory.render(s.record)}
    prefix = f"chain{uuid.uuid4().hex[:8]}-idx"
    search = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix), workers=1)
    hub = SecurityHubSink(sessions=SessionCache(), region=REGION)
    assert [r.outcome.value for r in search.send(list(original.values()))] == ["ok", "ok"]
    assert [r.outcome.value for r in hub.send([original["asff"]])] == ["ok"]

    assert remediate(tmp_path, s, "--apply", "--yes", by_finding=event in BY_FINDING, monkeypatch=monkeypatch) == 0

    resolved = factory.render(restored(s, ec2))
    assert {r.finding_id for r in resolved} == {original["asff"].finding_id}, f"{event}: its restore resolved nothing"
    assert [r.outcome.value for r in search.send(resolved)] == ["ok", "ok"]
    assert [r.outcome.value for r in hub.send([r for r in resolved if r.format == "asff"])] == ["ok"]

    hub_api = boto3.client("securityhub", region_name=REGION)
    # (moto ignores GetFindings filters: pick the finding by its id here)
    found = [f for page in hub_api.get_paginator("get_findings").paginate() for f in page["Findings"]
             if f["Id"] == original["asff"].finding_id]
    assert [f["RecordState"] for f in found] == ["ARCHIVED"]
    client = OpenSearch(hosts=[opensearch_url])
    client.indices.refresh(index=f"{prefix}-*")
    hits = client.search(index=f"{prefix}-*", body={"query": {"ids": {"values": [original["ocsf"].finding_id]}}})
    docs = [h["_source"] for h in hits["hits"]["hits"]]
    assert len(docs) == 2, "one document per format, updated in place"
    ocsf = next(d for d in docs if "status_id" in d)
    asff = next(d for d in docs if "RecordState" in d)
    assert (ocsf["status_id"], ocsf["status"], asff["RecordState"]) == (4, "Resolved", "ARCHIVED")
