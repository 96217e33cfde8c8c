"""Triage: context rules that raise or lower a mapping's severity, and suppressions that never drop.

Rules are data (``deploy/triage-rules.yaml``, schema ``schemas/triage-rules.schema.json``):
``rules.py`` loads and compiles them, ``engine.py`` applies them to an event, ``result.py`` holds
the typed result the renderers write into the finding, ``firstseen.py`` keeps first-seen
sightings (in memory or DynamoDB), ``explain.py`` is ``connector map --explain``.

Which file is in force (``triage.rules_file``): empty means the shipped
``deploy/triage-rules.yaml`` (its rules use only facts AWS sets — identity type, MFA attribute,
account ids, ``invokedBy``, the service-linked role path — so they are safe in any account);
``none`` turns triage off; anything else is a path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from connector.paths import ROOT
from connector.triage.engine import Triage
from connector.triage.firstseen import MemorySightings, SightingStore
from connector.triage.result import Adjustment, Suppression, TriageResult
from connector.triage.rules import RuleSet, load_rules

log = logging.getLogger(__name__)
DEFAULT_RULES = "triage-rules.yaml"
#: ``triage.rules_file`` value that turns triage off.
NO_RULES = "none"


def shipped_rules() -> Path:
    return Path(os.environ.get("CONNECTOR_DEPLOY_DIR") or ROOT / "deploy") / DEFAULT_RULES


def rules_path(setting: str) -> Path | None:
    """The rules file a ``triage.rules_file`` setting names (``None``: triage off)."""
    if setting.strip().lower() == NO_RULES:
        return None
    return Path(setting) if setting else shipped_rules()


def load_triage(setting: str = "", *, store: SightingStore | None = None,
                clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Triage | None:
    """The triage a setting names, loaded and validated; expired suppressions are logged here, at start-up."""
    path = rules_path(setting)
    if path is None:
        return None
    rules = load_rules(path)
    for rule in rules.expired(clock()):
        log.warning("triage suppression rule %s (owner %s) expired %s and no longer applies; remove or renew it in %s",
                    rule.id, rule.owner, f"{rule.until:%Y-%m-%dT%H:%M:%SZ}", rules.file)
    return Triage(rules, store or MemorySightings(), clock)


__all__ = [
    "Adjustment", "MemorySightings", "RuleSet", "SightingStore", "Suppression", "Triage", "TriageResult",
    "load_rules", "load_triage", "rules_path", "shipped_rules",
]
