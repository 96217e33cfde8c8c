"""Teardown windows: which deletions belong together, and the neutral finding that groups them.

A member is a *succeeded* deletion (a failed or dry-run call removed nothing). Its window is keyed
by the principal (``userIdentity.arn``, else the principal id or the invoking service) or by the
VPC (``vpcId`` of the request, for the events that name one), within one partition, account and
Region, and by the tumbling window of its *event* time: ``[floor(t / W) * W, + W)``. Tumbling
windows make the teardown finding's id a pure function of (key, window) — the same on every
replica, after a restart and in a replay — at the price that a burst straddling a boundary is
counted in two windows. ``W`` divides a day, so a window never spans two days (OpenSearch
indexes are daily by event time, and an update must land in the index of the version before).

Values from the record (the principal, the VPC id) reach the id and the store key only as a
SHA-256 digest; the id's other parts are those of the member findings' own ids.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from connector.aws_region import REGION
from connector.mapping.engine import PRODUCT_NAME
from connector.model import (
    AffectedResource,
    Attack,
    CliCommand,
    CloudTrailEvent,
    Finding,
    Identity,
    Remediation,
    Severity,
)
from connector.render.links import console_url, docs_url

KeyKind = Literal["principal", "vpc"]
MAPPING_ID = "network-teardown"
MAPPING_VERSION = "1"
EVENT_NAME = "NetworkTeardown"
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
ACCESS_KEY = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,124}$")
ASFF_TYPES = ("Effects/Denial of Service/Network Teardown", "Unusual Behaviors/User/Burst of Network Deletions")
OCSF_TYPES = ("Network Teardown", "Correlated Network Deletions")
#: ATT&CK v18, as the member mappings: the teardown stops services (not T1485 Data Destruction:
#: network plumbing holds no data and can be recreated).
ATTACKS = (Attack("v18", "TA0040", "Impact", "T1489", "Service Stop"),)
LOOKUP_URL = "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/view-cloudtrail-events-cli.html"


@dataclass(frozen=True, slots=True, order=True)
class Member:
    """One member finding as the window keeps it: enough to list and describe it without the event."""

    event_time_ms: int
    finding_id: str
    event_name: str
    severity: int
    resource_arn: str
    asff_type: str
    ocsf_type: str

    def encode(self) -> str:
        """Deterministic, so a redelivered member is the same string and the set stays a set."""
        return json.dumps([self.event_time_ms, self.finding_id, self.event_name, self.severity,
                           self.resource_arn, self.asff_type, self.ocsf_type], separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Member | None:
        try:
            t, fid, name, severity, arn, asff_type, ocsf_type = json.loads(text)
        except (ValueError, TypeError):
            return None
        if not (isinstance(t, int) and isinstance(severity, int) and 1 <= severity <= 5 and all(
                isinstance(v, str) for v in (fid, name, arn, asff_type, ocsf_type))):
            return None
        return cls(t, fid, name, severity, arn, asff_type, ocsf_type)

    @classmethod
    def of(cls, finding: Finding) -> Member:
        target = next((r for r in finding.resources if r.role == "target"), None)
        return cls(
            int(finding.event.event_time.timestamp() * 1000), finding.id, finding.event.event_name,
            int(finding.severity), target.arn if target else "", target.asff_type if target else "",
            target.ocsf_type if target else "",
        )


@dataclass(frozen=True, slots=True)
class Window:
    kind: KeyKind
    subject: str
    partition: str
    region: str
    account: str
    start: int
    seconds: int

    @property
    def digest(self) -> str:
        text = "\0".join((self.kind, self.subject, self.partition, self.region, self.account))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def key(self) -> str:
        """The store key: no record value in clear."""
        return f"teardown#{self.digest}#{self.start}"

    @property
    def finding_id(self) -> str:
        return f"{PRODUCT_NAME}/{self.partition}/{self.region}/{self.account}/teardown-{self.kind}-{self.digest[:24]}-{self.start}"

    @property
    def end(self) -> int:
        return self.start + self.seconds


def subject_of(finding: Finding, kind: KeyKind) -> str | None:
    """What the window is keyed by, or None when the finding has none (it is then no member)."""
    if kind == "vpc":
        vpc = finding.values.get("vpcId")
        return vpc if vpc and VPC_ID.match(vpc) else None
    ident = finding.event.identity
    return ident.arn or ident.principal_id or ident.invoked_by or None


@dataclass(frozen=True, slots=True)
class Teardown:
    """A window at or over the threshold: its members as the store answered them."""

    window: Window
    members: tuple[Member, ...]
    #: The acting principal (for a principal window; empty for a VPC window).
    identity: Identity
    #: The ids of this batch's findings in it: their messages wait for the teardown's delivery.
    batch_members: frozenset[str]

    @property
    def finding_id(self) -> str:
        return self.window.finding_id


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _severity(members: tuple[Member, ...]) -> Severity:
    """One step above the worst member, at least HIGH."""
    worst = max(m.severity for m in members)
    return Severity(max(int(Severity.HIGH), min(int(Severity.CRITICAL), worst + 1)))


def event_history_path(region: str) -> str:
    """The console path of CloudTrail Event history; the Region enters only when well-formed."""
    return f"cloudtrailv2/home?region={region}#/events" if REGION.match(region) else "cloudtrailv2/home#/events"


def _remediation(teardown: Teardown, who: str) -> Remediation:
    w = teardown.window
    region = w.region if REGION.match(w.region) else "REGION"
    start, end = _iso(w.start * 1000), _iso(w.end * 1000)
    key = teardown.identity.access_key_id
    attribute = (f"AttributeKey=AccessKeyId,AttributeValue={shlex.quote(key)}" if key and ACCESS_KEY.match(key)
                 else "AttributeKey=EventSource,AttributeValue=ec2.amazonaws.com")
    lookup = CliCommand(
        "Every call in the window by the same credentials (or every EC2 call when the key is unknown)",
        f"aws cloudtrail lookup-events --region {region} --start-time {start} --end-time {end} --lookup-attributes {attribute}",
    )
    summary = (f"Review the {len(teardown.members)} related findings together: confirm with the owner of {who} whether "
               "this was a planned decommission; if not, revoke the principal's sessions and keys, then restore each "
               "resource with its own finding's runbook.")[:512]
    recovery = (
        "Open each related finding and follow its restore steps; restore routes and gateways before peering and ACL entries.",
        f"If nobody planned it, disable or revoke the credentials of {who} (for a role: revoke active sessions).",
    )
    console = ("In Security Hub, open the related findings listed on this finding.",
               f"In CloudTrail Event history ({region}, {console_url(w.partition, w.region, event_history_path(w.region))}), "
               f"filter on the principal between {start} and {end}.")
    hardening = ("Require change approval for network deletions (SCP or permission boundary denying ec2:Delete* outside a pipeline role).",)
    runbook = "\n".join([summary, "", "Recovery:", *recovery, "", "Console:", *console, "", "CLI:",
                         f"{lookup.description}: {lookup.command}", "", "Hardening:", *hardening])
    # The documentation in the window's partition (docs.amazonaws.cn for aws-cn), as for every finding.
    url = docs_url(LOOKUP_URL, w.partition)
    return Remediation(summary, url, recovery, console, (lookup,), "", hardening, (url,), runbook)


def build_finding(teardown: Teardown) -> Finding:
    """The teardown as a neutral ``Finding``: its ``event`` stands for the window (event time = the
    earliest member's), so every sink files and routes it like the findings it groups."""
    w = teardown.window
    members = teardown.members
    ident = teardown.identity
    who = ident.display if w.kind == "principal" else w.subject
    counts = ", ".join(f"{n} {name}" for name, n in sorted(Counter(m.event_name for m in members).items()))
    minutes = max(1, w.seconds // 60)
    where = f"by {who}" if w.kind == "principal" else f"in {w.subject}"
    title = f"Network teardown: {len(members)} network deletions {where} within {minutes} minutes"[:256]
    description = (
        f"{len(members)} network deletions {where} in account {w.account}, {w.region}, between "
        f"{_iso(members[0].event_time_ms)} and {_iso(members[-1].event_time_ms)} ({counts}). Each deletion is its own "
        "finding, listed as a related finding; together they look like a teardown of network connectivity rather "
        "than routine change."
    )[:1024]
    first = datetime.fromtimestamp(members[0].event_time_ms / 1000, UTC)
    raw: dict[str, Any] = {"correlation": {
        "kind": w.kind, "subject": w.subject, "window_start": _iso(w.start * 1000), "window_end": _iso(w.end * 1000),
        "members": [m.finding_id for m in members],
    }}
    event = CloudTrailEvent(
        event_id=f"teardown-{w.kind}-{w.digest[:24]}-{w.start}", event_name=EVENT_NAME, event_source="ec2.amazonaws.com",
        event_time=first, event_version=None, account_id=w.account, region=w.region, partition=w.partition,
        identity=ident, source_ip=None, user_agent=None, request_id=None, error_code=None, error_message=None,
        raw=raw, origin="correlation",
    )
    seen: dict[str, AffectedResource] = {}
    for m in members:
        if m.resource_arn and m.resource_arn not in seen and len(seen) < 32:
            seen[m.resource_arn] = AffectedResource(m.asff_type or "Other", m.ocsf_type or "Other",
                                                    m.resource_arn.rsplit("/", 1)[-1], m.resource_arn,
                                                    w.region, w.partition)
    severity = _severity(members)
    return Finding(
        id=w.finding_id, mapping_id=MAPPING_ID, mapping_version=MAPPING_VERSION, title=title, description=description,
        severity=severity,
        severity_reason=f"{len(members)} deletions in one {minutes}-minute window (one step above the worst member, at least HIGH)",
        asff_types=ASFF_TYPES, ocsf_types=OCSF_TYPES, attacks=ATTACKS, resources=tuple(seen.values()),
        remediation=_remediation(teardown, who),
        information=(f"Correlated by {w.kind}: {len(members)} of the five network deletion events in one window.",),
        impact=("Several network paths removed together can isolate a workload or cut it off from its security tooling.",),
        values={}, event=event, outcome="succeeded", related=tuple(m.finding_id for m in members),
    )
