"""What triage decided for one finding: typed values the renderers and ``map --explain`` read.

``TriageResult`` travels beside the neutral ``Finding`` (whose ``severity`` is already the final
one) into ``render_asff`` / ``render_ocsf``, which write every adjustment and the suppression
into the finding so an analyst sees why its severity or status is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from connector.model import Severity


@dataclass(frozen=True, slots=True)
class Adjustment:
    """One context rule that matched: its id, its reason and what it did to the severity.

    ``steps`` is signed (+1 raises one level, -1 lowers one); ``at_least`` / ``at_most`` bound
    the final severity whatever the other rules did (``at_least`` wins a conflict).
    """

    rule_id: str
    reason: str
    steps: int = 0
    at_least: Severity | None = None
    at_most: Severity | None = None

    @property
    def effect(self) -> str:
        parts = [f"{'raise' if self.steps > 0 else 'lower'} {abs(self.steps)}"] if self.steps else []
        if self.at_least is not None:
            parts.append(f"at least {self.at_least.name}")
        if self.at_most is not None:
            parts.append(f"at most {self.at_most.name}")
        return ", ".join(parts)

    @property
    def summary(self) -> str:
        return f"{self.rule_id} ({self.effect}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Suppression:
    """The suppression rule a finding matched. The finding is still delivered, marked suppressed."""

    rule_id: str
    reason: str
    owner: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class TriageResult:
    """The mapping's severity, what the context rules made of it, and any suppression."""

    base: Severity
    severity: Severity
    adjustments: tuple[Adjustment, ...] = ()
    suppression: Suppression | None = None

    @property
    def suppressed(self) -> bool:
        return self.suppression is not None

    @property
    def applied(self) -> bool:
        """Whether any rule matched (nothing is written into the finding otherwise)."""
        return bool(self.adjustments) or self.suppression is not None

    @property
    def explanation(self) -> str:
        """One line for ``ProductFields`` and the severity reason: every adjustment in order."""
        return "; ".join(a.summary for a in self.adjustments)

