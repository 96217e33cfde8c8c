"""Apply a mapping to an event: extract values, fill templates, build the neutral ``Finding``.

Nothing here knows any particular event: what differs between events is in the mapping files.
Everything derives from the record (ids from ``eventID``, times from ``eventTime``), so mapping
the same record twice gives the same finding — the basis of idempotent delivery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from connector.mapping.loader import EventMapping
from connector.mapping.runbook import render_runbook
from connector.model import AffectedResource, CallOutcome, CliCommand, CloudTrailEvent, Finding, Remediation, Severity

TITLE_MAX = 256
DESCRIPTION_MAX = 1024
RECOMMENDATION_MAX = 512
PRODUCT_NAME = "cloudtrail-findings"


class TemplateValues(dict[str, str]):
    """Template namespace: an absent value renders as ``<name>`` so a gap is visible, never blank."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


class ProseValues(TemplateValues):
    """For titles and descriptions: an absent id reads as "(unknown)" rather than a placeholder."""

    def __missing__(self, key: str) -> str:
        return "(unknown)"


def fill(template: str, values: Mapping[str, str]) -> str:
    """``str.format_map`` (C, and it honours ``__missing__``) over the extracted values only."""
    return template.format_map(values)


def _as_text(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def finding_id(event: CloudTrailEvent) -> str:
    """Deterministic: the same record always yields the same id in every format and sink."""
    return f"{PRODUCT_NAME}/{event.partition}/{event.region}/{event.account_id}/{event.event_id}"


def outcome_of(event: CloudTrailEvent) -> CallOutcome:
    if event.dry_run:
        return "dry_run"
    if event.failed:
        return "failed"
    return "succeeded"


def extract(mapping: EventMapping, event: CloudTrailEvent) -> TemplateValues:
    """The mapping's fields (first non-null JMESPath wins) plus the values common to all events."""
    values = TemplateValues()
    for name, expressions in mapping.fields.items():
        for expression in expressions:
            text = _as_text(expression.search(event.raw))
            if text is not None:
                values[name] = text
                break
    ident = event.identity
    common = {
        "region": event.region,
        "account": event.account_id,
        "partition": event.partition,
        "eventID": event.event_id,
        "eventTime": event.event_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventName": event.event_name,
        "principal": ident.display,
        "principalArn": ident.arn or ident.invoked_by or ident.principal_id or "unknown",
        "sourceIP": event.source_ip or "unknown",
        "userAgent": event.user_agent or "unknown",
        "errorCode": event.error_code or "",
        "errorMessage": event.error_message or "",
        "outcome": outcome_of(event).replace("_", " "),
    }
    values.update(common)
    return values


def choose_severity(mapping: EventMapping, event: CloudTrailEvent) -> tuple[Severity, str]:
    """Base severity, changed by the first rule of the mapping that applies (documented order)."""
    rules = mapping.severity
    ident = event.identity
    by_service = ident.type == "AWSService" or (ident.invoked_by or "").endswith(".amazonaws.com")
    conditions = (
        ("dry_run", event.dry_run, "dry run: the caller holds the permission, nothing was deleted"),
        ("failed", event.failed, f"the call failed ({event.error_code}), nothing was deleted"),
        ("root", ident.type == "Root", "the root user made the call"),
        ("invoked_by_service", by_service, f"made by an AWS service on a principal's behalf ({ident.invoked_by or ident.type})"),
    )
    for rule, applies, reason in conditions:
        if applies and rule in rules:
            return Severity[rules[rule]], f"{reason}; {mapping.severity_rationale}"
    return Severity[rules["base"]], mapping.severity_rationale


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _resources(mapping: EventMapping, event: CloudTrailEvent, values: TemplateValues) -> tuple[AffectedResource, ...]:
    out = []
    for spec in mapping.resources:
        resource_id = fill(spec.id, values)
        if "<" in resource_id:  # its id field is absent from this record (e.g. a failed call)
            continue
        out.append(
            AffectedResource(
                asff_type=spec.asff_type,
                ocsf_type=spec.ocsf_type,
                id=resource_id,
                arn=fill(spec.arn, values),
                region=event.region,
                partition=event.partition,
                details_other={k: fill(v, values) for k, v in spec.details_other.items() if "<" not in fill(v, values)},
                role=spec.role,
            )
        )
    if not out:
        # ASFF needs at least one resource; without request parameters the account is what we know.
        out.append(
            AffectedResource(
                asff_type="Other",
                ocsf_type="AWS::::Account",
                id=f"AWS::::Account:{event.account_id}",
                arn=f"AWS::::Account:{event.account_id}",
                region=event.region,
                partition=event.partition,
                details_other={"Reason": "the record names no resource (requestParameters absent)"},
                role="target",
            )
        )
    return tuple(out)


def _outcome_sentence(event: CloudTrailEvent) -> str:
    if event.dry_run:
        return " This was a dry run (Client.DryRunOperation): the caller holds the permission, and nothing was changed."
    if event.failed:
        detail = f": {event.error_message.rstrip('.')}" if event.error_message else ""
        return f" The attempt FAILED with {event.error_code}{detail}; nothing was deleted, but someone tried."
    return ""


def build_remediation(mapping: EventMapping, values: TemplateValues) -> Remediation:
    spec = mapping.remediation
    summary = _clip(fill(spec["summary"], ProseValues(values)), RECOMMENDATION_MAX)
    recovery = tuple(fill(step, values) for step in spec["recovery"])
    console = tuple(fill(step, values) for step in spec["console_steps"])
    cli = tuple(CliCommand(fill(c.description, values), fill(c.command, values)) for c in mapping.cli)
    boto3_snippet = fill(spec["boto3"], values)
    hardening = tuple(fill(step, values) for step in spec["hardening"])
    references = tuple(spec["references"])
    remediation = Remediation(
        summary=summary,
        url=spec["url"],
        recovery=recovery,
        console_steps=console,
        cli=cli,
        boto3=boto3_snippet,
        hardening=hardening,
        references=references,
        runbook="",
    )
    return dataclasses.replace(remediation, runbook=render_runbook(remediation))


def build_finding(event: CloudTrailEvent, mapping: EventMapping) -> Finding:
    """The neutral finding for one event; pure (no clock, no randomness, no I/O)."""
    values = extract(mapping, event)
    severity, reason = choose_severity(mapping, event)
    if event.dry_run and mapping.dry_run_title:
        title_template = mapping.dry_run_title
    elif event.failed and mapping.failed_title:
        title_template = mapping.failed_title
    else:
        title_template = mapping.title
    prose = ProseValues(values)
    description = fill(mapping.description, prose) + _outcome_sentence(event)
    return Finding(
        id=finding_id(event),
        mapping_id=mapping.id,
        mapping_version=mapping.version,
        title=_clip(fill(title_template, prose), TITLE_MAX),
        description=_clip(description, DESCRIPTION_MAX),
        severity=severity,
        severity_reason=reason,
        asff_types=mapping.asff_types,
        ocsf_types=mapping.ocsf_types,
        attacks=mapping.attacks,
        resources=_resources(mapping, event, values),
        remediation=build_remediation(mapping, values),
        information=mapping.information,
        impact=mapping.impact,
        values=dict(values),
        event=event,
        outcome=outcome_of(event),
    )
