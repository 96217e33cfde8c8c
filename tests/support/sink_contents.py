"""Rendered findings for the sink tests, built from synthetic CloudTrail records.

With the mapping files present the findings come from the real factory (mapping → Finding →
ASFF/OCSF renderers → validation). Until ``mappings/`` holds them, a ``Finding`` is built by hand
from the real parsed event and rendered by the same real renderers, so the sinks always see
documents of the shape production sends.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from connector.errors import MappingFileError
from connector.events import parse_event
from connector.factory import FindingFactory
from connector.mapping import finding_id
from connector.model import AffectedResource, Finding, Remediation, RenderedFinding, Severity
from connector.render.asff import render_asff
from connector.render.ocsf import render_ocsf
from tests.support.records import EVENTS, RESOURCE_IDS, make_record


@lru_cache(maxsize=1)
def _factory() -> FindingFactory | None:
    try:
        return FindingFactory.load()
    except MappingFileError:
        return None


def _by_hand(record: dict[str, Any]) -> list[RenderedFinding]:
    event = parse_event(record, origin="test")
    resource = RESOURCE_IDS[event.event_name]
    finding = Finding(
        id=finding_id(event),
        mapping_id=f"cloudtrail-network/{event.event_name}",
        mapping_version="1",
        title=f"{event.event_name} on {resource}",
        description=f"{event.identity.display} called {event.event_name} on {resource}.",
        severity=Severity.MEDIUM,
        severity_reason="test",
        asff_types=("TTPs/Impact",),
        ocsf_types=("Network Deletion",),
        attacks=(),
        resources=(
            AffectedResource(
                asff_type="Other", ocsf_type="AWS::EC2::Resource", id=resource,
                arn=f"arn:{event.partition}:ec2:{event.region}:{event.account_id}:{resource}",
                region=event.region, partition=event.partition,
            ),
        ),
        remediation=Remediation(
            summary="Recreate the deleted resource.",
            url="https://docs.aws.amazon.com/vpc/latest/userguide/",
            recovery=(), console_steps=(), cli=(), boto3="", hardening=(), references=(), runbook="Recreate it.",
        ),
        information=(),
        impact=(),
        values={"resource": resource},
        event=event,
        outcome="succeeded",
    )
    return [
        RenderedFinding(finding.id, "asff", render_asff(finding), finding),
        RenderedFinding(finding.id, "ocsf", render_ocsf(finding), finding),
    ]


def rendered(record: dict[str, Any]) -> list[RenderedFinding]:
    factory = _factory()
    if factory is not None and record.get("eventName") in factory.mappings:
        return factory.render(record, origin="test")
    return _by_hand(record)


def findings(
    count: int,
    *,
    account: str = "123456789012",
    region: str = "us-east-1",
    prefix: str = "ok",
    fmt: str | None = "asff",
) -> list[RenderedFinding]:
    """``count`` distinct findings (eventIDs ``<prefix>-<n>``) for one account and Region."""
    out: list[RenderedFinding] = []
    for n in range(count):
        record = make_record(
            EVENTS[n % len(EVENTS)],
            event_id=f"{prefix}-{n:05d}",
            recipientAccountId=account,
            awsRegion=region,
        )
        out.extend(item for item in rendered(record) if fmt is None or item.format == fmt)
    return out
