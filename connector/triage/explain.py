"""``connector map --explain``: for one record, which mapping and rules matched, why, and the result.

The tool a detection engineer uses while writing rules: every context and suppression rule is
listed with each of its conditions, the value the record holds and whether it held. Nothing is
recorded in the first-seen store while explaining.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.factory import FindingFactory
from connector.triage.engine import RuleTrace
from connector.triage.result import Adjustment, TriageResult


def _rule_lines(trace: RuleTrace, effect: str) -> list[str]:
    mark = "MATCH" if trace.matched else "no   "
    head = f"    [{mark}] {trace.rule_id}" + (f" ({effect})" if effect else "") + f": {trace.reason}"
    lines = [head] + [f"            {line}" for line in trace.conditions]
    if trace.note:
        lines.append(f"            note: {trace.note}")
    return lines


def _result_line(result: TriageResult) -> str:
    moved = f"{result.base.name} → {result.severity.name}" if result.adjustments else f"{result.severity.name} (no context rule matched)"
    rules = ", ".join(a.rule_id for a in result.adjustments)
    text = f"  severity: {moved}" + (f" by {rules}" if rules else "")
    if result.suppression:
        s = result.suppression
        until = f", until {s.until:%Y-%m-%dT%H:%M:%SZ}" if s.until else ""
        text += f"\n  suppressed: yes, by {s.rule_id} (owner {s.owner}{until}): {s.reason}"
    else:
        text += "\n  suppressed: no"
    return text


def explain(factory: FindingFactory, record: Mapping[str, Any], *, origin: str = "") -> str:
    """The explanation of one record as text (raises what ``FindingFactory.render`` raises)."""
    event, mapping, finding = factory.neutral(record, origin=origin)
    lines = [
        f"record {event.event_id}: {event.event_name} by {event.identity.display} in {event.account_id}/{event.region}"
        + (f" ({origin})" if origin else ""),
        f"  mapping: {mapping.id}@{mapping.version} ({mapping.file})",
        f"  mapping severity: {finding.severity.name} ({finding.severity_reason})",
    ]
    triage = factory.triage
    if triage is None:
        lines.append("  triage: off (triage.rules_file is none)")
        lines.append(f"  severity: {finding.severity.name}\n  suppressed: no")
        return "\n".join(lines)
    result, traces = triage.trace(event, finding.severity)
    effects = {r.id: Adjustment(r.id, r.reason, r.steps, r.at_least, r.at_most).effect for r in triage.rules.context}
    lines.append(f"  rules file: {triage.rules.file}")
    lines.append("  context rules:" if triage.rules.context else "  context rules: (none)")
    for trace in traces:
        if trace.kind == "context":
            lines += _rule_lines(trace, effects.get(trace.rule_id, ""))
    lines.append("  suppression rules:" if triage.rules.suppress else "  suppression rules: (none)")
    for trace in traces:
        if trace.kind == "suppress":
            lines += _rule_lines(trace, "")
    lines.append(_result_line(result))
    return "\n".join(lines)

