"""Findings that resolve themselves: each mapping's ``restores:`` (data, request-field equalities)
matches the event that undoes it; the original finding's id comes back ARCHIVED (ASFF) and
Resolved (OCSF); a restore that arrives first is remembered; another resource's restore, an
older restore or a failed one resolves nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.factory import FindingFactory
from connector.model import Enrichment, RenderedFinding
from connector.resolve.resolver import is_resolved
from connector.select import Selector
from tests.support.records import BOOK, make_record
from tests.support.restores import restore_record

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
IGW, VPC, OTHER_VPC, ACL = "igw-0123456789abcdef0", "vpc-0123456789abcdef0", "vpc-0fedcba9876543210", "acl-0123456789abcdef0"


@pytest.fixture()
def factory() -> FindingFactory:
    return FindingFactory.load(clock=lambda: NOW, triage_rules="none", resolve=True)


def by_format(items: list[RenderedFinding]) -> dict[str, RenderedFinding]:
    return {i.format: i for i in items}


def detach() -> dict[str, Any]:
    return make_record("DetachInternetGateway", requestParameters={"internetGatewayId": IGW, "vpcId": VPC})


def attach(vpc: str = VPC, **kw: Any) -> dict[str, Any]:
    return restore_record(detach(), "AttachInternetGateway", {"internetGatewayId": IGW, "vpcId": vpc}, **kw)


def assert_resolved(items: list[RenderedFinding], original_id: str, by: str = "arn:aws:iam::123456789012:user/restorer") -> None:
    docs = by_format(items)
    assert set(docs) == {"asff", "ocsf"}
    asff, ocsf = docs["asff"].document, docs["ocsf"].document
    assert asff["Id"] == original_id and ocsf["finding_info"]["uid"] == original_id
    assert asff["RecordState"] == "ARCHIVED" and "Workflow" not in asff  # Workflow is the customer's
    assert asff["ProductFields"]["connector/resolvedBy"] == by
    assert asff["ProductFields"]["connector/resolvedAt"] == "2026-11-20T11:00:00.000Z"
    assert ocsf["status_id"] == 4 and ocsf["status"] == "Resolved" and ocsf["activity_id"] == 2
    assert by in ocsf["status_detail"] and "2026-11-20T11:00:00" in ocsf["status_detail"]
    assert all(is_resolved(i) for i in items)


def test_every_mapping_declares_its_restore_events_and_the_selector_lets_them_in(factory: FindingFactory) -> None:
    declared = {name: [r.event_name for r in m.restores] for name, m in factory.mappings.items()}
    assert declared == {name: [r["event"] for r in m.raw["restores"]] for name, m in BOOK.mappings.items()}
    assert all(declared.values())
    selector = Selector(factory.event_names)
    assert selector.matches(attach()) and selector.matches(detach())
    off = FindingFactory.load(triage_rules="none")
    assert not Selector(off.event_names).matches(attach())  # off: restore events are not selected


def test_restore_resolves_the_original_finding(factory: FindingFactory) -> None:
    original = by_format(factory.render(detach()))
    assert original["asff"].document["RecordState"] == "ACTIVE"
    resolved = factory.render(attach())
    assert_resolved(resolved, original["asff"].finding_id)
    asff = by_format(resolved)["asff"].document
    assert asff["UpdatedAt"] > original["asff"].document["UpdatedAt"]
    # Everything else is the original's: the deletion's title, resources and event.
    assert asff["Title"] == original["asff"].document["Title"]
    assert factory.render(attach()) == []  # once resolved, it is no longer open
    again = factory.render(detach())  # the deletion redelivered or replayed: still resolved
    assert_resolved(again, original["asff"].finding_id)


def test_a_restore_of_another_resource_resolves_nothing(factory: FindingFactory) -> None:
    factory.render(detach())
    assert factory.render(attach(vpc=OTHER_VPC)) == []
    failed = attach()
    failed["errorCode"] = "Client.UnauthorizedOperation"
    assert factory.render(failed) == []
    assert factory.render(attach()) != []  # still open for the right one


def test_restore_before_deletion_arrives_first_and_the_finding_is_born_resolved(factory: FindingFactory) -> None:
    assert factory.render(attach()) == []  # nothing to resolve yet: remembered
    born = factory.render(detach())
    assert_resolved(born, born[0].finding_id)


def test_a_restore_older_than_the_deletion_does_not_resolve_it(factory: FindingFactory) -> None:
    assert factory.render(attach(event_time="2026-11-20T09:00:00Z")) == []  # before the 10:15 deletion
    assert not any(is_resolved(i) for i in factory.render(detach()))


@pytest.mark.parametrize(("egress", "number", "resolves"), [(False, 110, True), (True, 110, False), (False, 120, False)])
def test_network_acl_entry_matches_acl_number_and_direction(factory: FindingFactory, egress: bool, number: int,
                                                            resolves: bool) -> None:
    deletion = make_record("DeleteNetworkAclEntry",
                           requestParameters={"networkAclId": ACL, "ruleNumber": 110, "egress": False})
    factory.render(deletion)
    create = restore_record(deletion, "CreateNetworkAclEntry", {
        "networkAclId": ACL, "ruleNumber": number, "egress": egress, "ruleAction": "deny", "protocol": "6",
        "cidrBlock": "203.0.113.0/24"})
    assert bool(factory.render(create)) is resolves


def test_keys_from_enrichment_values_match_the_restore_request(factory: FindingFactory) -> None:
    """NAT gateway, interface and peering match on values the enrichment supplies (the deleted
    resource's subnet, address, VPCs); here they are set as the enrichment would set them."""
    resolver = factory.resolver
    assert resolver is not None
    cases = {
        "DeleteNetworkInterface": ({"subnetId": "subnet-0aaa", "privateIp": "10.0.1.50"}, "CreateNetworkInterface",
                                   {"subnetId": "subnet-0aaa", "privateIpAddress": "10.0.1.50"}, None),
        "DeleteNatGateway": ({"subnetId": "subnet-0bbb"}, "CreateNatGateway",
                             {"CreateNatGatewayRequest": {"SubnetId": "subnet-0bbb", "AllocationId": "eipalloc-1"}}, None),
        "DeleteVpcPeeringConnection": ({"requesterVpcId": VPC, "accepterVpcId": OTHER_VPC}, "AcceptVpcPeeringConnection",
                                       {"vpcPeeringConnectionId": "pcx-0new"},
                                       {"vpcPeeringConnection": {"requesterVpcInfo": {"vpcId": VPC},
                                                                 "accepterVpcInfo": {"vpcId": OTHER_VPC}}}),
    }
    for event, (values, restore_event, request, response) in cases.items():
        deletion = make_record(event)
        rendered = factory.render(deletion)
        finding = rendered[0].finding
        assert resolver.keys_of_finding(factory.mappings[event], finding.values, finding.event) == [], \
            f"{event}: unenriched, its key is unknown: nothing may match"
        enrichment = Enrichment(status="enriched", values=values)
        enriched = [dataclasses.replace(r, finding=dataclasses.replace(r.finding, enrichment=enrichment)) for r in rendered]
        resolver.on_finding(factory.mappings[event], enriched)
        wrong = {**request, "subnetId": "subnet-0other"} if "subnetId" in request else request
        if wrong is not request:
            assert factory.render(restore_record(deletion, restore_event, wrong, response=response)) == []
        assert_resolved(factory.render(restore_record(deletion, restore_event, request, response=response)),
                        rendered[0].finding_id)


def test_the_pipeline_delivers_the_resolved_update_despite_its_repeat_cache(tmp_path: Any) -> None:
    """The resolved update has the original's id: the dedupe cache must not take it for a repeat,
    whether it comes in a later batch or in the same one as its deletion."""
    from connector.config import LimitSettings
    from connector.deadletters.file import FileDeadLetters
    from connector.envelopes import Decoder
    from connector.pipeline import Pipeline
    from tests.unit.test_pipeline import RecordingSink, message

    def pipeline(sink: RecordingSink) -> Pipeline:
        factory = FindingFactory.load(triage_rules="none", resolve=True)
        selector = Selector(factory.event_names)
        return Pipeline(factory=factory, decoder=Decoder(LimitSettings(), prefilter=selector.pattern),
                        selector=selector, sinks=[sink], dead_letters=FileDeadLetters(f"file://{tmp_path}/dlq"))

    later = RecordingSink()
    p = pipeline(later)
    p.handle([message(1, detach())])
    (key,) = {k for k in later.held if k[1] == "asff"}
    assert later.held[key]["RecordState"] == "ACTIVE"
    p.handle([message(2, attach())])
    assert later.held[key]["RecordState"] == "ARCHIVED"
    assert later.held[(key[0], "ocsf")]["status_id"] == 4
    p.handle([message(3, detach())])  # a redelivery of the deletion: the resolved one stands
    assert later.held[key]["RecordState"] == "ARCHIVED"

    same = RecordingSink()
    pipeline(same).handle([message(1, detach(), attach())])
    assert same.held[key]["RecordState"] == "ARCHIVED" and same.held[(key[0], "ocsf")]["status_id"] == 4


@pytest.mark.parametrize(("name", "deletion", "values"), [
    ("AcceptVpcPeeringConnection", "DeleteVpcPeeringConnection", ("requesterVpcId", "accepterVpcId")),
    ("CreateNetworkInterface", "DeleteNetworkInterface", ("subnetId", "privateIp")),
    ("AttachInternetGateway", "DetachInternetGateway", ("internetGatewayId", "vpcId")),
])
def test_real_restore_records_yield_their_key(factory: FindingFactory, corpus_dir: Any, name: str, deletion: str,
                                              values: tuple[str, ...]) -> None:
    """Public records of the restore events (the corpus's negatives) carry every match value."""
    import json

    from connector.events import parse_event

    path = corpus_dir / "negatives" / f"{name}-wwalpha-aws-spotlight-1.json"
    doc = json.loads(path.read_text())
    record = doc["Records"][0] if "Records" in doc else doc
    resolver = factory.resolver
    assert resolver is not None
    keys = resolver.keys_of_restore(parse_event(record))
    assert len(keys) == 1 and json.loads(keys[0])[0] == deletion
    assert [k for k, _ in json.loads(keys[0])[3]] == sorted(values)


@pytest.mark.parametrize(("mutate", "where", "reason"), [
    (lambda d: d["restores"][0]["match"].update(subnetID=["requestParameters.subnetId"]),
     "$.restores[0].match.subnetID", "not a value of this mapping's finding"),
    (lambda d: d["restores"][0]["match"]["subnetId"].append("requestParameters.[[["),
     "$.restores[0].match.subnetId[4]", "JMESPath"),
    (lambda d: d["restores"][0].update(event="create nat"), "$.restores[0].event", "does not match"),
    (lambda d: d["restores"][0].update(match={}), "$.restores[0].match", "empty"),
])
def test_a_broken_restores_section_names_file_path_and_reason(tmp_path: Any, mutate: Any, where: str,
                                                             reason: str) -> None:
    from connector.errors import MappingFileError
    from connector.mapping import load_mappings
    from tests.unit.test_mapping_files import broken_copy

    with pytest.raises(MappingFileError) as info:
        load_mappings(broken_copy(tmp_path, mutate))
    assert info.value.path == where and reason in info.value.reason, str(info.value)


def test_without_enrichment_a_finding_keyed_on_enrichment_values_says_it_cannot_resolve_itself(
        factory: FindingFactory) -> None:
    """The NAT gateway's deletion record names only the gateway; its restore (CreateNatGateway)
    names the subnet, which only the enrichment reads. With enrichment off the finding says so."""
    nat = by_format(factory.render(make_record(
        "DeleteNatGateway", requestParameters={"DeleteNatGatewayRequest": {"NatGatewayId": "nat-0123456789abcdef0"}})))
    note = nat["asff"].document["ProductFields"]["connector/resolution"]
    assert "subnetId" in note and "enrichment, which is off" in note
    assert nat["ocsf"].document["unmapped"]["resolution"]["status"] == "unavailable"
    assert nat["ocsf"].document["unmapped"]["resolution"]["missing"] == ["subnetId"]
    assert not any(is_resolved(i) for i in nat.values())
    create = restore_record(make_record("DeleteNatGateway"), "CreateNatGateway",
                            {"CreateNatGatewayRequest": {"SubnetId": "subnet-0bbb", "AllocationId": "eipalloc-1"}})
    assert factory.render(create) == []
    # Keyed on the event's own values: no such note.
    assert "connector/resolution" not in by_format(factory.render(detach()))["asff"].document["ProductFields"]
