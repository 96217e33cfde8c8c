"""Apply a rule set to one event: the mapping's severity in, a ``TriageResult`` out.

Context rules move the severity: the signed steps of every matching rule are added to the
mapping's severity (clamped to INFORMATIONAL..CRITICAL), then the tightest ``at_most`` and the
highest ``at_least`` of the matching rules bound it (``at_least`` wins a conflict, so a floor such
as "root is never below HIGH" cannot be undone by a lowering rule). The first active suppression
rule that matches marks the finding suppressed; it is still delivered everywhere.

Pure apart from the first-seen store: the same record gives the same result, except that a
first-seen condition depends on what the store holds of earlier days. If the store fails, the
value counts as seen (no raise), the failure is logged and counted, and the finding goes on: a
triage problem never costs a finding.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from connector import metrics
from connector.model import CloudTrailEvent, Severity
from connector.triage.compiled import compile_rule, compile_rules
from connector.triage.conditions import Facts, all_hold, as_text, compile_path
from connector.triage.firstseen import DAY_SECONDS, MemorySightings, SightingStore, sighting_key
from connector.triage.result import Adjustment, Suppression, TriageResult
from connector.triage.rules import ContextRule, RuleSet, SuppressionRule

log = logging.getLogger(__name__)


def _clamp(value: int) -> Severity:
    return Severity(min(max(value, int(Severity.INFORMATIONAL)), int(Severity.CRITICAL)))


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """For ``map --explain``: one rule, whether it matched, and each condition with its value."""

    kind: str
    rule_id: str
    reason: str
    matched: bool
    conditions: tuple[str, ...]
    note: str = ""


class Triage:
    """A compiled rule set with its first-seen store; shared by every worker thread."""

    def __init__(self, rules: RuleSet, store: SightingStore | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.rules = rules
        self.store: SightingStore = store if store is not None else MemorySightings()
        self.clock = clock
        self._memory = self.store if type(self.store) is MemorySightings else None
        # Compiled once: per first-seen field its getter and the (key, days) facts it answers; per
        # rule one closure over its conditions and the Adjustment / Suppression it contributes.
        paths = dict.fromkeys(path for path, _ in rules.first_seen)
        self._first_seen = tuple(
            (path, compile_path(path), tuple(((path, d), d) for p, d in rules.first_seen if p == path)) for path in paths)
        self._keep_days = max((days for _, days in rules.first_seen), default=0)
        self._context = compile_rules([(r.match, Adjustment(r.id, r.reason, r.steps, r.at_least, r.at_most))
                                       for r in rules.context])
        self._untouched = {severity: TriageResult(severity, severity) for severity in Severity}
        self._suppress = tuple((r, compile_rule(r.match), Suppression(r.id, r.reason, r.owner, r.until)) for r in rules.suppress)

    # -- facts ---------------------------------------------------------------------------------
    def facts(self, event: CloudTrailEvent, *, record: bool = True) -> Facts:
        facts = Facts(event.raw, event.event_time)
        if not self._first_seen:
            return facts
        day = int(event.event_time.timestamp()) // DAY_SECONDS
        for path, getter, asked in self._first_seen:
            value = as_text(getter(event.raw))
            facts.first_seen_values[path] = value
            if value is None:  # nothing to be new: no fact, and nothing recorded
                for key, _ in asked:
                    facts.first_seen[key] = False
                continue
            sighting = sighting_key(event.account_id, path, value)
            latest: float | None
            try:
                if self._memory is not None:
                    latest = self._memory.latest_before(sighting, day, self._keep_days, record=record)
                else:
                    latest = max((d for d in self.store.days(sighting) if d < day), default=None)
                    if record:
                        self.store.add(sighting, day, self._keep_days)
            except Exception as exc:  # a store outage must not cost the finding: "not new", logged
                metrics.TRIAGE_STORE_ERRORS.inc()
                log.warning("first-seen store failed for %s (%s): %s; treated as seen", event.event_id, path, exc)
                latest = day - 1
            # New for N days: no sighting in [day - N, day), i.e. the latest earlier one is older.
            if latest is None:
                latest = -math.inf
            for key, days in asked:
                facts.first_seen[key] = latest < day - days
        return facts

    # -- the decision --------------------------------------------------------------------------
    def assess(self, event: CloudTrailEvent, base: Severity, *, record: bool = True) -> TriageResult:
        facts = self.facts(event, record=record)
        adjustments = self._context(facts)
        suppression = None
        if self._suppress:
            now = self.clock()
            for rule, holds, marked in self._suppress:
                if rule.active(now) and holds(facts):
                    suppression = marked
                    break
        if not adjustments and suppression is None:
            return self._untouched[base]  # most findings: one shared result per severity
        return TriageResult(base, self._combine(base, adjustments), tuple(adjustments), suppression)

    @staticmethod
    def _combine(base: Severity, matched: Sequence[Adjustment]) -> Severity:
        if not matched:
            return base
        value = int(_clamp(int(base) + sum(rule.steps for rule in matched)))
        ceilings = [int(r.at_most) for r in matched if r.at_most is not None]
        floors = [int(r.at_least) for r in matched if r.at_least is not None]
        if ceilings:
            value = min(value, min(ceilings))
        if floors:
            value = max(value, max(floors))
        return Severity(value)

    def trace(self, event: CloudTrailEvent, base: Severity) -> tuple[TriageResult, tuple[RuleTrace, ...]]:
        """The result and, for every rule, why it did or did not match (records no sighting)."""
        facts = self.facts(event, record=False)
        result = self.assess(event, base, record=False)
        now = self.clock()
        traces: list[RuleTrace] = []
        rule: ContextRule | SuppressionRule
        for rule in self.rules.context:
            traces.append(RuleTrace("context", rule.id, rule.reason, all_hold(rule.match, facts),
                                    tuple(c.describe(facts) for c in rule.match)))
        for rule in self.rules.suppress:
            note = "" if rule.active(now) else f"expired {rule.until:%Y-%m-%dT%H:%M:%SZ}, not applied"
            hit = all_hold(rule.match, facts)
            traces.append(RuleTrace("suppress", rule.id, rule.reason, hit and rule.active(now),
                                    tuple(c.describe(facts) for c in rule.match), note))
        return result, tuple(traces)
