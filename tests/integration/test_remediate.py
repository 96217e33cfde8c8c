"""``connector remediate`` against the moto server: plan, dry run, apply, and the result described.

Each deletion is made for real on moto (tests/support/network.py); the command reads the record
(a file) or the finding (from the JSONL directory, where the values read at detection time are
kept) and restores the resource; the test checks with Describe calls that it is back and that
the blackholed routes point at the replacement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.cli import main
from connector.enrich.engine import Enricher, SessionClients
from connector.sinks.securityhub.credentials import SessionCache
from tests.integration.test_enrichment import WithConfig, factory_with
from tests.support import network
from tests.support.config_history import stubbed_config
from tests.support.moto import REGION, MotoServer
from tests.support.network import Scenario

pytestmark = pytest.mark.moto


@pytest.fixture()
def ec2(aws_env: MotoServer) -> Any:
    return boto3.client("ec2", region_name=REGION)


def remediate(tmp_path: Path, s: Scenario, *extra: str, by_finding: bool = False,
              monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if not by_finding:
        path = tmp_path / "event.json"
        path.write_text(json.dumps(s.record))
        return main(["remediate", str(path), *extra])
    # The finding as the service delivered it to JSONL, enriched at detection time.
    config = None
    if s.config_answer is not None:
        config, _ = stubbed_config(s.config_answer, resource_type=s.config_type, resource_id=s.config_id)
    enricher = Enricher(WithConfig(SessionClients(SessionCache()), config), budget_seconds=10)
    ocsf = next(r for r in factory_with(enricher).render(s.record) if r.format == "ocsf")
    # (partial for the interface: moto cannot filter route tables by interface, see test_enrichment)
    assert ocsf.document["unmapped"]["enrichment"]["status"] in ("enriched", "partial")
    (tmp_path / "ocsf.jsonl").write_text(json.dumps(ocsf.document) + "\n")
    assert monkeypatch is not None
    monkeypatch.setenv("CONNECTOR_JSONL_DIRECTORY", str(tmp_path))
    return main(["remediate", "--finding-id", ocsf.finding_id, *extra])


def routes_to(ec2: Any, table: str, destination: str) -> dict[str, Any]:
    routes = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
    return next(r for r in routes if r.get("DestinationCidrBlock") == destination)


def test_nat_gateway_restored(ec2: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = network.nat_gateway(ec2)
    # (No dry-run-only invocation here: moto ignores DryRun on CreateNatGateway and creates it.)
    assert remediate(tmp_path, s, "--apply", "--yes") == 0
    out = capsys.readouterr().out
    assert "CreateNatGateway" in out and "ReplaceRoute" in out and "Restored." in out
    gateways = ec2.describe_nat_gateways(Filters=[{"Name": "subnet-id", "Values": [s.ids["nat_subnet"]]},
                                                  {"Name": "state", "Values": ["available"]}])["NatGateways"]
    assert len(gateways) >= 1
    new = {g["NatGatewayId"] for g in gateways}
    assert s.ids["nat"] not in new
    assert {a["AllocationId"] for g in gateways for a in g["NatGatewayAddresses"]} == {s.ids["allocation"]}
    assert routes_to(ec2, s.ids["table"], "0.0.0.0/0").get("NatGatewayId") in new


def test_network_acl_rule_restored_from_the_finding(ec2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = network.network_acl_entry(ec2, action="deny", rule=140)
    assert remediate(tmp_path, s, "--apply", "--yes", by_finding=True, monkeypatch=monkeypatch) == 0
    entries = ec2.describe_network_acls(NetworkAclIds=[s.ids["acl"]])["NetworkAcls"][0]["Entries"]
    rule = [e for e in entries if e["RuleNumber"] == 140 and not e["Egress"]]
    assert rule and rule[0]["Protocol"] == "6" and rule[0]["RuleAction"] == "deny"
    assert rule[0]["CidrBlock"] == "203.0.113.0/24" and rule[0]["PortRange"] == {"From": 22, "To": 22}


def test_a_plan_with_an_unknown_value_is_refused(ec2: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # From the event alone (moto has no Config history) the rule's protocol and action are unknown.
    s = network.network_acl_entry(ec2, action="allow", rule=150)
    assert remediate(tmp_path, s, "--apply", "--yes") == 1
    err = capsys.readouterr().err
    assert "refused" in err and "protocol" in err
    entries = ec2.describe_network_acls(NetworkAclIds=[s.ids["acl"]])["NetworkAcls"][0]["Entries"]
    assert not [e for e in entries if e["RuleNumber"] == 150]


def test_peering_restored(ec2: Any, tmp_path: Path) -> None:
    s = network.peering(ec2)
    assert remediate(tmp_path, s, "--apply", "--yes") == 0
    every = ec2.describe_vpc_peering_connections(Filters=[
        {"Name": "requester-vpc-info.vpc-id", "Values": [s.ids["vpc"]]},
        {"Name": "accepter-vpc-info.vpc-id", "Values": [s.ids["peer_vpc"]]},
    ])["VpcPeeringConnections"]
    active = [p for p in every if p["Status"]["Code"] == "active"
              # (moto may ignore the VPC filters: match the two VPCs here too)
              and (p["RequesterVpcInfo"]["VpcId"], p["AccepterVpcInfo"]["VpcId"]) == (s.ids["vpc"], s.ids["peer_vpc"])]
    assert len(active) == 1 and active[0]["VpcPeeringConnectionId"] != s.ids["pcx"]
    assert routes_to(ec2, s.ids["table"], "10.1.0.0/16").get("VpcPeeringConnectionId") == active[0]["VpcPeeringConnectionId"]


def test_network_interface_restored_from_the_finding(ec2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = network.network_interface(ec2)
    assert remediate(tmp_path, s, "--apply", "--yes", by_finding=True, monkeypatch=monkeypatch) == 0
    found = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [s.ids["subnet"]]},
                                                     {"Name": "private-ip-address", "Values": ["10.0.1.50"]}])
    eni = found["NetworkInterfaces"]
    assert eni and eni[0]["NetworkInterfaceId"] != s.ids["eni"]
    assert [g["GroupId"] for g in eni[0]["Groups"]] == [s.ids["group"]] and eni[0]["Description"] == "appliance eth1"


def test_internet_gateway_reattached(ec2: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = network.internet_gateway(ec2)
    assert remediate(tmp_path, s) == 0
    assert "would succeed (DryRunOperation)" in capsys.readouterr().out
    assert not ec2.describe_internet_gateways(InternetGatewayIds=[s.ids["igw"]])["InternetGateways"][0]["Attachments"]
    assert remediate(tmp_path, s, "--apply", "--yes") == 0
    attachments = ec2.describe_internet_gateways(InternetGatewayIds=[s.ids["igw"]])["InternetGateways"][0]["Attachments"]
    assert attachments == [{"State": "available", "VpcId": s.ids["vpc"]}]


def test_apply_asks_first(ec2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = network.internet_gateway(ec2)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert remediate(tmp_path, s, "--apply") == 1
    assert not ec2.describe_internet_gateways(InternetGatewayIds=[s.ids["igw"]])["InternetGateways"][0]["Attachments"]


def test_a_finding_read_back_from_opensearch_is_restored(ec2: Any, opensearch_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The values read at detection time travel with the finding into OpenSearch (unmapped)."""
    import uuid

    from connector.config import OpenSearchSettings
    from connector.model import Outcome
    from connector.sinks.opensearch.client import make_client
    from connector.sinks.opensearch.sink import OpenSearchSink

    s = network.network_acl_entry(ec2, action="deny", rule=160)
    assert s.config_answer is not None
    config, _ = stubbed_config(s.config_answer, resource_type=s.config_type, resource_id=s.config_id)
    rendered = factory_with(Enricher(WithConfig(SessionClients(SessionCache()), config), budget_seconds=10)).render(s.record)
    prefix = f"r{uuid.uuid4().hex[:8]}"
    settings = OpenSearchSettings(url=opensearch_url, index_prefix=prefix)
    assert {r.outcome for r in OpenSearchSink(settings).send(rendered)} == {Outcome.OK}
    make_client(settings).indices.refresh(index=f"{prefix}-*")
    monkeypatch.setenv("CONNECTOR_OPENSEARCH_URL", opensearch_url)
    monkeypatch.setenv("CONNECTOR_OPENSEARCH_INDEX_PREFIX", prefix)
    assert main(["remediate", "--finding-id", rendered[0].finding_id, "--from", "opensearch", "--apply", "--yes"]) == 0
    entries = ec2.describe_network_acls(NetworkAclIds=[s.ids["acl"]])["NetworkAcls"][0]["Entries"]
    assert [(e["Protocol"], e["RuleAction"], e["CidrBlock"]) for e in entries if e["RuleNumber"] == 160] == [
        ("6", "deny", "203.0.113.0/24")]
