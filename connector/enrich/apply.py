"""Fold an ``Enrichment`` into a finding: concrete runbook, severity, blast-radius summary.

Pure (no I/O). The enriched values enter the runbook through the same rendering as the event's
(``connector.mapping.engine``): each must match its strict format, else its placeholder stays and
the step says why. The finding's own ``values`` stay the event's (they are reported as request
parameters); the enrichment travels in ``Finding.enrichment`` and the renderers write it out.
"""

from __future__ import annotations

import dataclasses

from connector.mapping.engine import (
    DESCRIPTION_MAX,
    TemplateValues,
    build_remediation_from,
    render_command,
    resources_of,
)
from connector.mapping.loader import CliSpec, EventMapping
from connector.mapping.runbook import render_runbook
from connector.model import Enrichment, Finding, Severity


def enriched_values(finding: Finding, mapping: EventMapping, enrichment: Enrichment) -> TemplateValues:
    """The event's values with the enriched ones added (the event's win on a clash)."""
    values = TemplateValues({**enrichment.values, **finding.values})
    values.optional = mapping.optional_values
    return values


def apply_enrichment(finding: Finding, mapping: EventMapping, enrichment: Enrichment) -> Finding:
    spec = mapping.enrichment
    if spec is None:
        return finding
    values = enriched_values(finding, mapping, enrichment)
    remediation = build_remediation_from(mapping.remediation, mapping.cli, values, mapping.formats)
    # Commands that only make sense with the values known (e.g. the rule exactly as it was).
    extra = tuple(
        render_command(CliSpec(description, command), values, mapping.formats)
        for description, command in spec.cli
        if all(name in values for name in _names(command))
    )
    remediation = dataclasses.replace(remediation, cli=remediation.cli + extra)
    remediation = dataclasses.replace(remediation, runbook=render_runbook(remediation))
    severity, reason = finding.severity, finding.severity_reason
    for rule in spec.severity:
        if all(values.get(name) == expected for name, expected in rule.when.items()):
            if Severity[rule.severity] > severity:
                severity, reason = Severity[rule.severity], f"{rule.reason}; {reason}"
            elif Severity[rule.severity] == severity:
                reason = f"{rule.reason}; {reason}"
            break
    description = finding.description
    blast = enrichment.blast_radius
    if blast is not None and blast.summary:
        room = DESCRIPTION_MAX - len(blast.summary) - 1
        head = description if len(description) <= room else description[: max(0, room - 1)].rstrip() + "…"
        description = f"{head} {blast.summary}"[:DESCRIPTION_MAX]
    # Typed Details gain what the enrichment read (e.g. the ACL's VPC, the removed rule's protocol).
    resources = resources_of(mapping, finding.event, values) if any(r.details for r in mapping.resources) else finding.resources
    return dataclasses.replace(finding, remediation=remediation, severity=severity, severity_reason=reason,
                               description=description, enrichment=enrichment, resources=resources)


def unenriched(finding: Finding, reason: str) -> Finding:
    """The finding marked as delivered without enrichment (and why)."""
    return dataclasses.replace(finding, enrichment=Enrichment(status="unenriched", values={}, problems=(reason,)))


def _names(template: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name}
