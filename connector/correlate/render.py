"""Teardown → ASFF and OCSF: the grouping finding, listing its members.

ASFF: the members are ``RelatedFindings`` (``ProductArn`` + ``Id``; Security Hub takes at most
10, so the earliest 10 are listed there and the rest in ``ProductFields``
``connector/correlation/member/N``). They are also sent in ``FindingProviderFields``: on an
update, Security Hub takes a provider's new ``RelatedFindings`` from there, not from the top
level (https://docs.aws.amazon.com/securityhub/latest/userguide/finding-update-batchimportfindings.html).
No ``Workflow``: the analyst owns it. OCSF: every member in ``finding_info.related_events``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from connector.correlate.teardown import Member, Teardown, event_history_path
from connector.model import Finding
from connector.render.asff import COMPANY_NAME, PRODUCT_NAME, SCHEMA_VERSION, default_product_arn
from connector.render.links import console_url, docs_url
from connector.render.ocsf import (
    CLASS_UID,
    OCSF_VERSION,
    PRODUCT,
    PROFILES,
    SEVERITY_CAPTIONS,
    class_header,
)

MAX_RELATED = 10
MAX_PRODUCT_FIELDS = 50
ACTIVITY_CREATE = 1


def _asff_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _common_fields(teardown: Teardown, finding: Finding) -> dict[str, str]:
    w = teardown.window
    return {
        "connector/mapping": f"{finding.mapping_id}@{finding.mapping_version}",
        "connector/severityReason": finding.severity_reason,
        "connector/correlation/key": w.kind,
        "connector/correlation/subject": w.subject[:2048],
        "connector/correlation/windowStart": _asff_time(w.start * 1000),
        "connector/correlation/windowEnd": _asff_time(w.end * 1000),
        "connector/correlation/memberCount": str(len(teardown.members)),
        "connector/principal": teardown.identity.display if w.kind == "principal" else "",
    }


def render_asff(teardown: Teardown, finding: Finding, *, product_arn: str | None, updated_at: datetime) -> dict[str, Any]:
    w = teardown.window
    members = teardown.members
    arn = product_arn or default_product_arn(w.partition, w.region, w.account)
    related = [{"ProductArn": arn, "Id": m.finding_id} for m in members[:MAX_RELATED]]
    fields = {k: v for k, v in _common_fields(teardown, finding).items() if v}
    for index, member in enumerate(members[MAX_RELATED:], MAX_RELATED + 1):
        if len(fields) >= MAX_PRODUCT_FIELDS:
            break
        fields[f"connector/correlation/member/{index}"] = member.finding_id[:2048]
    severity = {"Label": finding.severity.name, "Original": finding.severity.name}
    resources = [
        {"Type": r.asff_type, "Id": r.arn, "Partition": r.partition, "Region": r.region, "ResourceRole": "Target"}
        for r in finding.resources
    ] or [{"Type": "Other", "Id": w.finding_id, "Partition": w.partition, "Region": w.region}]
    return {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding.id,
        "ProductArn": arn,
        "CompanyName": COMPANY_NAME,
        "ProductName": PRODUCT_NAME,
        "GeneratorId": finding.mapping_id,
        "AwsAccountId": w.account,
        "Types": list(finding.asff_types),
        "CreatedAt": _asff_time(members[0].event_time_ms),
        "UpdatedAt": updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "FirstObservedAt": _asff_time(members[0].event_time_ms),
        "LastObservedAt": _asff_time(members[-1].event_time_ms),
        "Severity": severity,
        "Title": finding.title,
        "Description": finding.description,
        # Links in the window's partition: its documentation site and its console (CloudTrail
        # Event history of the Region, where the runbook sends the analyst).
        "Remediation": {"Recommendation": {"Text": finding.remediation.summary,
                                            "Url": docs_url(finding.remediation.url, w.partition)}},
        "SourceUrl": _event_history_url(teardown),
        "ProductFields": fields,
        "Resources": resources,
        "RelatedFindings": related,
        "FindingProviderFields": {"Severity": dict(severity), "Types": list(finding.asff_types), "RelatedFindings": related},
        "RecordState": "ACTIVE",
    }


def _event_history_url(teardown: Teardown) -> str:
    """CloudTrail Event history in the window's partition console (the Region only when well-formed)."""
    w = teardown.window
    return console_url(w.partition, w.region, event_history_path(w.region))


def _related_event(member: Member) -> dict[str, Any]:
    return {
        "uid": member.finding_id,
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Detection Finding: Create",
        "title": member.event_name,
        "severity_id": member.severity,
        "severity": SEVERITY_CAPTIONS[member.severity],
        "first_seen_time": member.event_time_ms,
        "last_seen_time": member.event_time_ms,
    }


def render_ocsf(teardown: Teardown, finding: Finding, *, updated_at: datetime) -> dict[str, Any]:
    w = teardown.window
    members = teardown.members
    first, last = members[0].event_time_ms, members[-1].event_time_ms
    severity_id = int(finding.severity)
    attacks = [
        {"version": a.version, "tactic": {"uid": a.tactic_uid, "name": a.tactic_name},
         "technique": {"uid": a.technique_uid, "name": a.technique_name}}
        for a in finding.attacks
    ]
    return {
        **class_header(severity_id, first),
        "message": finding.title,
        "is_alert": True,
        "confidence_id": 2,
        "confidence": "Medium",
        "finding_info": {
            "uid": finding.id,
            "title": finding.title,
            "desc": finding.description,
            "types": list(finding.ocsf_types),
            "analytic": {"uid": finding.mapping_id, "name": finding.mapping_id, "type_id": 1, "type": "Rule",
                         "version": finding.mapping_version},
            "attacks": attacks,
            "created_time": first,
            "modified_time": int(updated_at.timestamp() * 1000),
            "first_seen_time": first,
            "last_seen_time": last,
            "data_sources": ["AWS CloudTrail"],
            "related_events": [_related_event(m) for m in members],
        },
        "metadata": {
            "version": OCSF_VERSION,
            "profiles": list(PROFILES),
            "product": dict(PRODUCT),
            "uid": finding.id,
            "event_code": finding.event.event_name,
            "log_provider": "AWS CloudTrail",
            "tenant_uid": w.account,
        },
        "cloud": {
            "provider": "AWS",
            "region": w.region,
            "cloud_partition": w.partition,
            "account": {"uid": w.account, "type_id": 10, "type": "AWS Account"},
        },
        "resources": [
            {"uid": r.arn, "name": r.id, "type": r.ocsf_type, "region": r.region, "cloud_partition": r.partition,
             "role_id": 1, "role": "Target"}
            for r in finding.resources
        ],
        "remediation": {
            "desc": finding.remediation.runbook,
            "references": list(finding.remediation.references),
            "kb_article_list": [{"title": "Remediation", "src_url": docs_url(finding.remediation.url, w.partition)},
                                {"title": "CloudTrail Event history", "src_url": _event_history_url(teardown)}],
        },
        "raw_data": json.dumps(dict(finding.event.raw), sort_keys=True, separators=(",", ":")),
        "unmapped": {
            "severity_reason": finding.severity_reason,
            "correlation": {"key": w.kind, "subject": w.subject, "window_start": w.start * 1000,
                            "window_end": w.end * 1000, "member_count": len(members)},
        },
    }
