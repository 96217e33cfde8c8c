"""Findings that resolve themselves, end to end on moto: a deletion's finding (enriched from
moto's EC2, so the NAT gateway's subnet and the interface's address are real) goes to Security
Hub; the restore event's update archives it there (GetFindings: RecordState ARCHIVED, same Id),
and both resolved renderings pass the shared validators strictly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.factory import FindingFactory
from connector.model import RenderedFinding
from connector.sinks.securityhub.credentials import SessionCache
from connector.sinks.securityhub.sink import SecurityHubSink
from tests.integration.test_enrichment import enricher_for
from tests.support import network
from tests.support.moto import REGION, MotoServer
from tests.support.restores import restore_record


@pytest.fixture()
def ec2(aws_env: MotoServer) -> Any:
    return boto3.client("ec2", region_name=REGION)


def restore_of(s: network.Scenario, ec2: Any) -> dict[str, Any]:
    """The restore record of each scenario, with the values the real restore call would carry."""
    ids = s.ids
    if s.event == "DetachInternetGateway":
        return restore_record(s.record, "AttachInternetGateway", {"internetGatewayId": ids["igw"], "vpcId": ids["vpc"]})
    if s.event == "DeleteNetworkAclEntry":
        return restore_record(s.record, "CreateNetworkAclEntry", {
            "networkAclId": ids["acl"], "ruleNumber": 110, "egress": False, "ruleAction": "deny", "protocol": "6",
            "cidrBlock": "203.0.113.0/24"})
    if s.event == "DeleteNatGateway":
        return restore_record(s.record, "CreateNatGateway", {"CreateNatGatewayRequest": {
            "SubnetId": ids["nat_subnet"], "AllocationId": ids["allocation"]}})
    if s.event == "DeleteNetworkInterface":
        return restore_record(s.record, "CreateNetworkInterface", {"subnetId": ids["subnet"], "privateIpAddress": "10.0.1.50"})
    assert s.event == "DeleteVpcPeeringConnection"
    pcx = ec2.create_vpc_peering_connection(VpcId=ids["vpc"], PeerVpcId=ids["peer_vpc"])["VpcPeeringConnection"]
    accepted = ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx["VpcPeeringConnectionId"])
    info = accepted["VpcPeeringConnection"]
    return restore_record(s.record, "AcceptVpcPeeringConnection", {"vpcPeeringConnectionId": pcx["VpcPeeringConnectionId"]},
                          response={"vpcPeeringConnection": {
                              "requesterVpcInfo": {"vpcId": info["RequesterVpcInfo"]["VpcId"]},
                              "accepterVpcInfo": {"vpcId": info["AccepterVpcInfo"]["VpcId"]}}})


def record_states(ids: list[str]) -> dict[str, str]:
    client = boto3.client("securityhub", region_name=REGION)
    found = client.get_findings(Filters={"Id": [{"Value": i, "Comparison": "EQUALS"} for i in ids]})["Findings"]
    return {f["Id"]: f["RecordState"] for f in found}


def test_each_restore_archives_its_finding_in_security_hub(ec2: Any, shared_dir: Path, tmp_path: Path) -> None:
    from tests.mappings.test_corpus_findings import _check

    sink = SecurityHubSink(sessions=SessionCache(), region=REGION)
    resolved_docs: dict[str, list[dict[str, Any]]] = {"asff": [], "ocsf": []}
    originals: list[str] = []
    for event, build in network.BUILDERS.items():
        s = build(ec2)
        factory = dataclasses.replace(FindingFactory.load(triage_rules="none", resolve=True), enricher=enricher_for(s))
        original = {r.format: r for r in factory.render(s.record)}
        assert original["asff"].document["RecordState"] == "ACTIVE"
        assert [r.outcome.value for r in sink.send([original["asff"]])] == ["ok"]
        resolved: list[RenderedFinding] = factory.render(restore_of(s, ec2))
        assert {r.format for r in resolved} == {"asff", "ocsf"}, f"{event}: its restore resolved nothing"
        assert {r.finding_id for r in resolved} == {original["asff"].finding_id}
        asff = next(r for r in resolved if r.format == "asff")
        assert [r.outcome.value for r in sink.send([asff])] == ["ok"]
        originals.append(asff.finding_id)
        for r in resolved:
            resolved_docs[r.format].append(dict(r.document))
    assert record_states(originals) == dict.fromkeys(originals, "ARCHIVED")
    _check(shared_dir, "check_asff.py", resolved_docs["asff"], tmp_path, "--strict", "--require-default-product")
    _check(shared_dir, "check_ocsf.py", resolved_docs["ocsf"], tmp_path, "--strict")


ANALYST = {"status": "IN_PROGRESS", "assignee": "ana@example.com", "notes": ["checking with the VPC owner"]}
OWNED = {"Workflow": {"Status": "NOTIFIED"}, "Note": {"Text": "checking", "UpdatedBy": "ana",
                                                      "UpdatedAt": "2026-11-21T09:00:00.000Z"}}


@pytest.mark.opensearch
def test_resolution_leaves_the_analysts_fields(ec2: Any, opensearch_url: str) -> None:
    """OpenSearch (a real node): the resolved update is a partial one, the ``analyst`` object stays.
    Security Hub (moto merges a re-import's top-level keys, see test_analyst_state): the resolved
    update carries no ``Workflow``, so the analyst's status and note stay."""
    import uuid

    from opensearchpy import OpenSearch

    from connector.config import OpenSearchSettings
    from connector.sinks.opensearch.sink import OpenSearchSink

    s = network.internet_gateway(ec2)
    factory = FindingFactory.load(triage_rules="none", resolve=True)
    original = {r.format: r for r in factory.render(s.record)}
    prefix = f"rs{uuid.uuid4().hex[:8]}-idx"
    store = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix), workers=1)
    hub = SecurityHubSink(sessions=SessionCache(), region=REGION)
    assert [r.outcome.value for r in store.send(list(original.values()))] == ["ok", "ok"]
    assert [r.outcome.value for r in hub.send([original["asff"]])] == ["ok"]
    client = OpenSearch(hosts=[opensearch_url])
    client.indices.refresh(index=f"{prefix}-*")
    hits = client.search(index=f"{prefix}-*", body={"query": {"ids": {"values": [original["ocsf"].finding_id]}}})
    located = [(h["_index"], h["_id"]) for h in hits["hits"]["hits"]]
    assert len(located) == 2
    for index, doc_id in located:
        client.update(index=index, id=doc_id, body={"doc": {"analyst": ANALYST}})
    shub = boto3.client("securityhub", region_name=REGION)
    stored = shub.get_findings(Filters={"Id": [{"Value": original["asff"].finding_id, "Comparison": "EQUALS"}]})
    assert shub.batch_import_findings(Findings=[{**stored["Findings"][0], **OWNED}])["SuccessCount"] == 1

    resolved = factory.render(restore_of(s, ec2))
    assert [r.outcome.value for r in store.send(resolved)] == ["ok", "ok"]
    assert [r.outcome.value for r in hub.send([r for r in resolved if r.format == "asff"])] == ["ok"]

    client.indices.refresh(index=f"{prefix}-*")
    docs = {index: client.get(index=index, id=doc_id)["_source"] for index, doc_id in located}
    for doc in docs.values():
        assert doc["analyst"] == ANALYST
    ocsf = next(d for d in docs.values() if "status_id" in d)
    assert ocsf["status_id"] == 4 and ocsf["status"] == "Resolved"
    asff = next(d for d in docs.values() if "RecordState" in d)
    assert asff["RecordState"] == "ARCHIVED"
    after = shub.get_findings(Filters={"Id": [{"Value": original["asff"].finding_id, "Comparison": "EQUALS"}]})["Findings"][0]
    assert after["RecordState"] == "ARCHIVED"
    for field, value in OWNED.items():
        assert after[field] == value, field
