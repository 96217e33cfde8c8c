"""The resolution store shared and durable: DynamoDB (moto over HTTP), selected by settings.

Two replicas (two pipelines' stages built from the same settings, each with its own store and
DynamoDB client) share it: a deletion one of them handles is resolved by the restore the other
sees. A restart (new stages, new store) forgets nothing: a restore that came first, before the
restart, still resolves the deletion after it. A deletion and its restore handled at the same
moment by two replicas are never both missed. Open findings come back exactly as rendered.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from connector.build import build_stages
from connector.config import load_settings
from connector.factory import FindingFactory
from connector.model import BlastRadius, Enrichment, RenderedFinding, RouteImpact
from connector.resolve import codec
from connector.resolve.resolver import is_resolved
from connector.resolve.store import DynamoResolutionStore, ResolutionStoreError
from tests.support.moto import MotoServer
from tests.support.moto_serial import serial_moto_server
from tests.support.records import make_record
from tests.support.restores import restore_record

pytestmark = pytest.mark.moto

IGW, VPC = "igw-0123456789abcdef0", "vpc-0123456789abcdef0"


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[MotoServer]:
    """DynamoDB one request at a time: real DynamoDB's per-item isolation (tests/support/moto_serial.py)."""
    with serial_moto_server() as server:
        yield server


@pytest.fixture()
def table(aws_env: MotoServer, dynamodb: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.url)
    name = f"resolutions-{uuid.uuid4().hex[:8]}"
    DynamoResolutionStore(name).create_table_if_missing()
    DynamoResolutionStore(name).create_table_if_missing()  # idempotent
    return name


def replica(table: str) -> FindingFactory:
    """One replica's finding factory, from settings alone (its own store and DynamoDB client)."""
    settings = load_settings(environ={"CONNECTOR_RESOLUTION_ENABLED": "true", "CONNECTOR_RESOLUTION_STORE": "dynamodb",
                                      "CONNECTOR_RESOLUTION_TABLE": table, "CONNECTOR_TRIAGE_RULES_FILE": "none"})
    factory = build_stages(settings).factory
    assert factory.resolver is not None and isinstance(factory.resolver.store, DynamoResolutionStore)
    return factory


def detach(igw: str = IGW, *, event_id: str | None = None, event_time: str = "2026-11-20T10:15:00Z") -> dict[str, Any]:
    return make_record("DetachInternetGateway", event_id=event_id or f"detach-{igw}", eventTime=event_time,
                       requestParameters={"internetGatewayId": igw, "vpcId": VPC})


def attach(igw: str = IGW, *, event_id: str | None = None, event_time: str = "2026-11-20T11:00:00Z") -> dict[str, Any]:
    record = restore_record(detach(igw), "AttachInternetGateway", {"internetGatewayId": igw, "vpcId": VPC},
                            event_time=event_time)
    if event_id:
        record["eventID"] = event_id
    return record


def resolved_ids(items: list[RenderedFinding]) -> set[str]:
    assert all(is_resolved(i) for i in items)
    return {i.finding_id for i in items}


def test_a_deletion_in_one_replica_is_resolved_by_the_restore_in_another(table: str) -> None:
    one, two = replica(table), replica(table)
    original = one.render(detach())
    assert not any(is_resolved(i) for i in original)
    resolved = two.render(attach())
    assert {i.format for i in resolved} == {"asff", "ocsf"}
    assert resolved_ids(resolved) == {original[0].finding_id}
    # The resolved update is the original as replica one rendered it, marked resolved.
    asff = next(i for i in resolved if i.format == "asff").document
    before = next(i for i in original if i.format == "asff").document
    assert asff["Title"] == before["Title"] and asff["Resources"] == before["Resources"]
    assert asff["RecordState"] == "ARCHIVED" and asff["UpdatedAt"] > before["UpdatedAt"]
    assert one.render(attach()) == []  # claimed once: no replica resolves it again
    again = one.render(detach())  # a redelivered deletion, in either replica, stays resolved
    assert resolved_ids(again) == {original[0].finding_id}
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert items and all(int(i["expires_at"]["N"]) > 1_700_000_000 for i in items)
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")


def test_an_early_restore_survives_a_restart_and_resolves_the_later_deletion(table: str) -> None:
    before_restart = replica(table)
    assert before_restart.render(attach()) == []  # the restore first: nothing to resolve yet
    after_restart = replica(table)  # a new process: new store instance, nothing in memory
    born = after_restart.render(detach())
    assert {i.format for i in born} == {"asff", "ocsf"} and resolved_ids(born) == {born[0].finding_id}
    # A restore older than a deletion undid an earlier one: it does not resolve this one.
    assert replica(table).render(attach("igw-0aaaaaaaaaaaaaaaa", event_time="2026-11-20T09:00:00Z")) == []
    assert not any(is_resolved(i) for i in replica(table).render(detach("igw-0aaaaaaaaaaaaaaaa")))


def test_open_findings_wait_across_a_restart_and_later_deletions_stay_open(table: str) -> None:
    first = replica(table)
    early = first.render(detach(event_id="early-deletion", event_time="2026-11-20T10:00:00Z"))
    late = first.render(detach(event_id="late-deletion", event_time="2026-11-20T12:00:00Z"))
    resolved = replica(table).render(attach())  # restored at 11:00, after a restart
    assert resolved_ids(resolved) == {early[0].finding_id}
    later = replica(table).render(attach(event_time="2026-11-20T13:00:00Z", event_id="second-restore"))
    assert resolved_ids(later) == {late[0].finding_id} != {early[0].finding_id}


def test_a_deletion_and_its_restore_at_the_same_moment_in_two_replicas_are_never_both_missed(table: str) -> None:
    gateways = [f"igw-{n:017x}" for n in range(6)]
    results: dict[str, list[RenderedFinding]] = {}
    barrier = threading.Barrier(2)

    def run(name: str, factory: FindingFactory, records: list[dict[str, Any]]) -> None:
        out: list[RenderedFinding] = []
        barrier.wait()
        for record in records:
            out.extend(factory.render(record))
        results[name] = out

    deletions = [detach(g, event_id=f"race-del-{g}") for g in gateways]
    restores = [attach(g, event_id=f"race-res-{g}") for g in gateways]
    threads = [threading.Thread(target=run, args=("del", replica(table), deletions)),
               threading.Thread(target=run, args=("res", replica(table), restores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    deleted_ids = {i.finding_id for i in results["del"]}
    resolved = {i.finding_id for i in results["del"] + results["res"] if is_resolved(i)}
    assert len(deleted_ids) == len(gateways) and resolved == deleted_ids


def test_an_open_finding_comes_back_exactly_as_rendered() -> None:
    rendered = FindingFactory.load(triage_rules="none").render(make_record(
        "DeleteNatGateway", requestParameters={"DeleteNatGatewayRequest": {"NatGatewayId": "nat-0123456789abcdef0"}}))
    enrichment = Enrichment("partial", {"subnetId": "subnet-0aaa"}, BlastRadius(
        (RouteImpact("rtb-0aaa", "vpc-0aaa", ("0.0.0.0/0",), ("subnet-0bbb",), main=True),), ("subnet-0bbb",), 3, "1 route table"),
        ("a lookup timed out",), ("ec2:DescribeNatGateways",))
    enriched = [dataclasses.replace(r, finding=dataclasses.replace(r.finding, enrichment=enrichment)) for r in rendered]
    back = codec.loads(codec.dumps(enriched))
    assert back == enriched
    assert back[0].finding.event.event_time == rendered[0].finding.event.event_time
    assert isinstance(back[0].finding.resources, tuple) and type(back[0].finding.severity) is type(rendered[0].finding.severity)


def test_a_store_that_cannot_be_reached_delivers_the_deletion_unresolved_and_refuses_the_restore(
        aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", aws_env.url)
    factory = replica(f"missing-{uuid.uuid4().hex[:8]}")  # no such table
    deletion = factory.render(detach())
    assert {i.format for i in deletion} == {"asff", "ocsf"} and not any(is_resolved(i) for i in deletion)
    with pytest.raises(ResolutionStoreError) as caught:  # the pipeline dead-letters it (stage resolve)
        factory.render(attach())
    assert caught.value.stage == "resolve" and caught.value.retryable
