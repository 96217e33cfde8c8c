"""Enrichment against the moto server: real resources, a real deletion, the record fed in.

For each of the five events the finding must carry the deleted resource's real values (subnet,
allocation, rule, VPCs, addresses), the route tables that now blackhole with their subnets and
running instances, a runbook whose commands carry those values, and the same facts in both
formats. The two Config lookups (network ACL entry, interface) read a Config answer built from
the resource as EC2 described it before the deletion: moto keeps no Config history of EC2
resources (see tests/support/config_history.py).
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.enrich.engine import Enricher, SessionClients
from connector.factory import FindingFactory
from connector.model import RenderedFinding
from connector.sinks.securityhub.credentials import SessionCache
from tests.support import network
from tests.support.moto import REGION, MotoServer
from tests.support.network import Scenario

pytestmark = pytest.mark.moto


class WithConfig:
    """EC2 (and STS) from the moto server; AWS Config from a stubbed real client."""

    def __init__(self, inner: SessionClients, config: Any) -> None:
        self.inner, self.config = inner, config

    def client(self, service: str, *, account: str, region: str, partition: str) -> Any:
        if service == "config" and self.config is not None:
            return self.config
        return self.inner.client(service, account=account, region=region, partition=partition)


def enricher_for(scenario: Scenario, budget: float = 10.0) -> Enricher:
    config = None
    if scenario.config_answer is not None:
        from tests.support.config_history import stubbed_config

        config, _ = stubbed_config(scenario.config_answer, resource_type=scenario.config_type,
                                   resource_id=scenario.config_id)
    return Enricher(WithConfig(SessionClients(SessionCache()), config), budget_seconds=budget)


_FACTORY: list[FindingFactory] = []


def factory_with(enricher: Enricher | None) -> FindingFactory:
    """The mappings are loaded once; each test gets its own enricher (and so its own cache)."""
    if not _FACTORY:
        _FACTORY.append(FindingFactory.load())
    # Without the context rules: these tests read the enrichment's own severity (a shipped triage
    # rule would raise both NACL cases to CRITICAL and hide the difference).
    return dataclasses.replace(_FACTORY[0], enricher=enricher, triage=None)


def render(scenario: Scenario, enricher: Enricher | None) -> dict[str, RenderedFinding]:
    factory = factory_with(enricher)
    return {r.format: r for r in factory.render(scenario.record)}


@pytest.fixture()
def ec2(aws_env: MotoServer) -> Any:
    return boto3.client("ec2", region_name=REGION)


def enrichment_of(rendered: dict[str, RenderedFinding]) -> tuple[dict[str, Any], dict[str, str]]:
    ocsf = rendered["ocsf"].document["unmapped"]["enrichment"]
    asff = rendered["asff"].document["ProductFields"]
    assert asff["connector/enrichment"].split(":")[0] == ocsf["status"]
    return ocsf, asff


def commands(rendered: dict[str, RenderedFinding]) -> str:
    return "\n".join(c.command for c in rendered["ocsf"].finding.remediation.cli)


def test_nat_gateway(ec2: Any) -> None:
    s = network.nat_gateway(ec2)
    rendered = render(s, enricher_for(s))
    ocsf, asff = enrichment_of(rendered)
    assert ocsf["status"] == "enriched", ocsf["problems"]
    assert ocsf["values"]["subnetId"] == s.ids["nat_subnet"]
    assert ocsf["values"]["allocationId"] == s.ids["allocation"]
    assert asff["connector/enriched/allocationId"] == s.ids["allocation"]
    blast = ocsf["blast_radius"]
    assert [t["uid"] for t in blast["route_tables"]] == [s.ids["table"]]
    assert blast["route_tables"][0]["destinations"] == ["0.0.0.0/0"]
    assert blast["subnets"] == [s.ids["subnet"]] and blast["running_instances"] == 1
    assert asff["connector/blastRadius/routeTables"] == s.ids["table"]
    assert f"--subnet-id {s.ids['nat_subnet']} --allocation-id {s.ids['allocation']}" in commands(rendered)
    assert "SUBNET_ID" not in rendered["ocsf"].document["remediation"]["desc"].split("## Prevent")[0].split("create-nat-gateway")[1]
    assert blast["summary"] in rendered["asff"].document["Description"]
    assert s.ids["table"] in rendered["ocsf"].document["finding_info"]["desc"]


def test_network_acl_entry_deny(ec2: Any) -> None:
    s = network.network_acl_entry(ec2, action="deny")
    rendered = render(s, enricher_for(s))
    ocsf, _ = enrichment_of(rendered)
    assert ocsf["status"] == "enriched", ocsf["problems"]
    values = ocsf["values"]
    assert (values["protocol"], values["ruleAction"], values["cidrBlock"], values["portFrom"], values["portTo"]) == (
        "6", "deny", "203.0.113.0/24", "22", "22")
    assert values["egress"] == "false"
    assert ocsf["blast_radius"]["subnets"] == [s.ids["subnet"]] and ocsf["blast_radius"]["running_instances"] == 1
    assert "traffic it blocked is now allowed" in ocsf["blast_radius"]["summary"]
    assert ("--rule-number 110 --ingress --protocol 6 --cidr-block 203.0.113.0/24 --port-range From=22,To=22 "
            "--rule-action deny") in commands(rendered)
    assert rendered["asff"].document["Severity"]["Label"] == "HIGH"  # raised from the base MEDIUM
    assert "DENY" in rendered["asff"].document["ProductFields"]["connector/severityReason"]
    # The typed Details gain what EC2 and AWS Config said: the ACL's VPC and the removed rule.
    acl = rendered["asff"].document["Resources"][0]["Details"]["AwsEc2NetworkAcl"]
    assert acl["VpcId"].startswith("vpc-") and acl["Entries"] == [{
        "RuleNumber": 110, "Egress": False, "Protocol": "6", "RuleAction": "deny", "CidrBlock": "203.0.113.0/24",
        "PortRange": {"From": 22, "To": 22}}]


def test_a_removed_deny_rule_is_more_severe_than_a_removed_allow_rule(ec2: Any) -> None:
    deny = render(s := network.network_acl_entry(ec2, action="deny", rule=120), enricher_for(s))
    allow = render(s := network.network_acl_entry(ec2, action="allow", rule=130), enricher_for(s))
    assert deny["ocsf"].finding.severity > allow["ocsf"].finding.severity
    assert deny["ocsf"].document["severity_id"] > allow["ocsf"].document["severity_id"]
    assert "connectivity lost" in allow["ocsf"].finding.severity_reason


def test_peering(ec2: Any) -> None:
    s = network.peering(ec2)
    rendered = render(s, enricher_for(s))
    ocsf, _ = enrichment_of(rendered)
    assert ocsf["status"] == "enriched", ocsf["problems"]
    v = ocsf["values"]
    assert (v["requesterVpcId"], v["accepterVpcId"], v["requesterCidr"], v["accepterCidr"]) == (
        s.ids["vpc"], s.ids["peer_vpc"], "10.0.0.0/16", "10.1.0.0/16")
    assert v["accepterAccountId"] == v["requesterAccountId"] and v["accepterRegion"] == REGION
    assert [t["uid"] for t in ocsf["blast_radius"]["route_tables"]] == [s.ids["table"]]
    assert f"--vpc-id {s.ids['vpc']} --peer-vpc-id {s.ids['peer_vpc']}" in commands(rendered)
    assert "--destination-cidr-block 10.1.0.0/16" in commands(rendered)


def test_network_interface(ec2: Any) -> None:
    s = network.network_interface(ec2)
    rendered = render(s, enricher_for(s))
    ocsf, _ = enrichment_of(rendered)
    # moto answers DescribeRouteTables filtered by route.network-interface-id with HTTP 500 (AWS
    # supports the filter): the route-table part of this blast radius is not testable here.
    assert ocsf["status"] in ("enriched", "partial"), ocsf["problems"]
    assert all("DescribeRouteTables" in p for p in ocsf["problems"]), ocsf["problems"]
    v = ocsf["values"]
    assert (v["subnetId"], v["privateIp"], v["securityGroupId"], v["description"]) == (
        s.ids["subnet"], "10.0.1.50", s.ids["group"], "appliance eth1")
    assert (f"--subnet-id {s.ids['subnet']} --private-ip-address 10.0.1.50 --groups {s.ids['group']}"
            in commands(rendered))


def test_internet_gateway(ec2: Any) -> None:
    s = network.internet_gateway(ec2)
    rendered = render(s, enricher_for(s))
    ocsf, _ = enrichment_of(rendered)
    assert ocsf["status"] == "enriched", ocsf["problems"]
    blast = ocsf["blast_radius"]
    assert [t["uid"] for t in blast["route_tables"]] == [s.ids["table"]]
    assert blast["subnets"] == [s.ids["subnet"]] and blast["running_instances"] == 1
    assert "1 public subnet(s)" in rendered["asff"].document["Description"]


def test_enrichment_off_leaves_the_finding_exactly_the_events(ec2: Any) -> None:
    s = network.nat_gateway(ec2)
    plain = render(s, None)
    assert "enrichment" not in plain["ocsf"].document["unmapped"]
    assert "connector/enrichment" not in plain["asff"].document["ProductFields"]
    assert "--subnet-id SUBNET_ID --allocation-id ALLOCATION_ID" in commands(plain)


# -- an endpoint that is down or hangs: delivered on time, unenriched, marked so ---------------

@pytest.fixture()
def silent_endpoint() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung endpoint)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("endpoint", ["slow", "unreachable"])
def test_a_slow_or_unreachable_endpoint_costs_no_finding(ec2: Any, endpoint: str, silent_endpoint: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    scenarios = [build(ec2) for build in (network.nat_gateway, network.peering, network.internet_gateway)]
    # From here on the enrichment's EC2 calls go to an endpoint that hangs or refuses.
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", silent_endpoint if endpoint == "slow" else _closed_port())
    budget = 0.5
    # The clients would wait 30 s for the hung endpoint; the findings must not.
    enricher = Enricher(SessionClients(SessionCache(), timeout=30.0), budget_seconds=budget)
    factory = factory_with(enricher)
    for s in scenarios:
        started = time.monotonic()
        rendered = {r.format: r for r in factory.render(s.record)}
        elapsed = time.monotonic() - started
        assert elapsed < 10, elapsed  # bounded by the budget, not by the clients' 30 s timeout
        ocsf, asff = enrichment_of(rendered)
        assert ocsf["status"] == "unenriched" and ocsf["problems"], ocsf
        assert asff["connector/enrichment"].startswith("unenriched: ")
        # The event's own finding is whole: ids, runbook with the event's values, placeholders.
        assert rendered["asff"].document["Id"] == rendered["ocsf"].document["finding_info"]["uid"]
        assert rendered["ocsf"].finding.remediation.cli
    # After the first outage the endpoint is skipped for a while: the next findings do not each
    # spend their budget on it.
    assert enricher.calls == 1
    assert any("did not answer in the last" in p for p in ocsf["problems"])
    enricher.close()


def test_enriched_findings_pass_the_shared_validators_strictly(ec2: Any, shared_dir: Path, tmp_path: Path) -> None:
    from tests.mappings.test_corpus_findings import _check

    docs: dict[str, list[dict[str, Any]]] = {"asff": [], "ocsf": []}
    for build in network.BUILDERS.values():
        s = build(ec2)
        rendered = render(s, enricher_for(s))
        assert rendered["ocsf"].document["unmapped"]["enrichment"]["status"] in ("enriched", "partial")
        fields = rendered["asff"].document["ProductFields"]
        assert len(fields) <= 50 and "connector/runbook/cli/1" in fields
        for name, item in rendered.items():
            docs[name].append(dict(item.document))
    _check(shared_dir, "check_asff.py", docs["asff"], tmp_path, "--strict", "--require-default-product")
    _check(shared_dir, "check_ocsf.py", docs["ocsf"], tmp_path, "--strict")


def test_the_setting_turns_it_on_for_the_product(ec2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Through the settings and the composition root, as `connector map`, `run` and Lambda build it."""
    import json

    from connector.cli import main

    s = network.internet_gateway(ec2)
    path = tmp_path / "record.json"
    path.write_text(json.dumps(s.record))
    assert main(["map", str(path), "--format", "ocsf"]) == 0
    assert "enrichment" not in json.loads(capsys.readouterr().out)["unmapped"]  # off by default
    monkeypatch.setenv("CONNECTOR_ENRICHMENT_ENABLED", "true")
    assert main(["map", str(path), "--format", "ocsf"]) == 0
    enrichment = json.loads(capsys.readouterr().out)["unmapped"]["enrichment"]
    assert enrichment["status"] == "enriched"
    assert [t["uid"] for t in enrichment["blast_radius"]["route_tables"]] == [s.ids["table"]]
