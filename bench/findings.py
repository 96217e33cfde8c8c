"""Map + render + validate of both formats, on target records only (the per-finding cost), and what
triage adds to it: the same records through a factory without rules, with the shipped rules, and
with a full rules file (every condition kind, first-seen in memory, change windows, a suppression)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.corpus import target_record
from bench.timing import seconds
from connector.events import parse_event
from connector.factory import FindingFactory
from connector.model import Severity
from connector.triage import shipped_rules
from tests.support.records import EVENTS, variants

#: Identities and outcomes in the proportions a trail has them, so rules match some of the time.
MIX = ("success", "success", "assumed-role", "invoked-by-cloudformation", "root", "cross-account", "failed",
       "sdk-no-source-ip")
#: With the shipped rules, every condition kind the rules schema has: every field operator,
#: ``any``, ``not``, ``first_seen``, ``outside_windows`` / ``within_windows`` (weekly and one-off).
EXTRA_RULES: dict[str, Any] = {
    "change_windows": {"weekdays": {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"],
                                    "start": "08:00", "end": "18:00"},
                       "freeze": {"from": "2026-12-20T00:00:00Z", "to": "2027-01-04"}},
    "context": [
        {"id": "deployment-pipeline", "reason": "the deployment role ran infrastructure as code",
         "match": [{"field": "userIdentity.sessionContext.sessionIssuer.userName", "in": ["NetworkAdmin", "Deployer"]},
                   {"field": "userAgent", "matches": "(Terraform/|aws-cdk/|Pulumi/|pulumi/)"}], "lower": 1},
        {"id": "new-principal", "reason": "principal not seen for 30 days",
         "match": [{"first_seen": {"field": "userIdentity.arn", "days": 30}}], "raise": 1},
        {"id": "new-source-ip", "reason": "address not seen for 30 days",
         "match": [{"field": "sourceIPAddress", "matches": "^[0-9a-fA-F.:]+$"},
                   {"first_seen": {"field": "sourceIPAddress", "days": 30}}], "raise": 1},
        {"id": "outside-change-window", "reason": "outside the change windows",
         "match": [{"outside_windows": ["weekdays"]}, {"not": {"field": "userIdentity.invokedBy", "exists": True}}],
         "raise": 1},
        {"id": "own-account-sdk-in-window", "reason": "an SDK call from the resource's own account in a window",
         "match": [{"within_windows": ["weekdays", "freeze"]}, {"field": "eventSource", "suffix": ".amazonaws.com"},
                   {"field": "userAgent", "contains": "Boto3"},
                   {"field": "userIdentity.accountId", "same_as": "recipientAccountId"}], "lower": 1},
    ],
    "suppress": [{"id": "lab", "owner": "bench", "reason": "the lab account", "until": "2099-01-01",
                  "match": [{"field": "recipientAccountId", "equals": "999999999999"}]},
                 {"id": "lab-janitor", "owner": "bench", "reason": "the lab janitor's test events",
                  "match": [{"field": "eventID", "prefix": "lab-"}, {"field": "userAgent", "contains": "janitor"}]}],
}


def records_per_s(count: int, rounds: int) -> tuple[float, int]:
    factory = FindingFactory.load()
    records = [target_record(i) for i in range(count)]
    rendered = 0

    def render_all() -> None:
        nonlocal rendered
        rendered = 0
        for record in records:
            rendered += len(factory.render(record))

    times = [seconds(render_all) for _ in range(rounds)]
    return count / statistics.median(times), rendered


def mixed_records(count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        record = variants(EVENTS[i % len(EVENTS)])[MIX[i % len(MIX)]]
        record["eventID"] = f"triage-{i:08d}"
        out.append(record)
    return out


CHUNK = 25


def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def triage_overhead(count: int, rounds: int) -> dict[str, float]:
    """Extra map+render+validate time per finding with triage over without (0.05 = 5 % more).

    The same records through each factory in interleaved rounds; CPU time of this process (the
    machine may be shared), the median of the per-round ratios. ``triage_*_assess_us`` is the
    rule evaluation alone, a cross-check that does not depend on rendering noise. The records are
    ``MIX`` (a third match a shipped rule); the first-seen store has seen the day before and the
    change window covers the event time, so as in a running service most rules evaluate and few match."""
    records = mixed_records(count)
    with tempfile.TemporaryDirectory() as tmp:
        full = yaml.safe_load(shipped_rules().read_text())
        full["change_windows"] = EXTRA_RULES["change_windows"]
        full["context"] = full["context"] + EXTRA_RULES["context"]
        full["suppress"] = EXTRA_RULES["suppress"]
        path = Path(tmp) / "full.yaml"
        path.write_text(yaml.safe_dump(full))
        # "control" is a second factory without rules: its ratio to "none" is the noise floor.
        factories = {"none": FindingFactory.load(triage_rules="none"), "control": FindingFactory.load(triage_rules="none"),
                     "shipped": FindingFactory.load(),
                     "full": FindingFactory.load(triage_rules=str(path))}
    events = [parse_event(r) for r in records]
    # A day of history, so first-seen is evaluated (and mostly not new), as in a running service.
    for factory in factories.values():
        for record in records:
            factory.render({**record, "eventTime": "2026-11-19T10:15:30Z"})
    # Short interleaved slices (CHUNK records per factory, the factories' order rotating), so a
    # burst of load from a neighbour falls on every side of a ratio alike.
    times: dict[str, list[float]] = {name: [] for name in factories}
    names = list(factories)
    for index in range(rounds * max(1, count // CHUNK)):
        start = (index * CHUNK) % count
        chunk = records[start:start + CHUNK]
        for name in names[index % len(names):] + names[:index % len(names)]:
            times[name].append(_cpu(lambda f=factories[name], c=chunk: [f.render(r) for r in c]))  # type: ignore[misc]
    out: dict[str, float] = {
        "triage_none_ms_per_record": round(statistics.median(times["none"]) / CHUNK * 1000, 4)}

    def overhead(name: str) -> float:
        return round(statistics.median(o / b for o, b in zip(times[name], times["none"], strict=True)) - 1, 4)

    out["triage_overhead_noise_floor"] = overhead("control")
    for name in ("shipped", "full"):
        out[f"triage_overhead_{name}"] = overhead(name)
        out[f"triage_{name}_ms_per_record"] = round(statistics.median(times[name]) / CHUNK * 1000, 4)
        triage = factories[name].triage
        assert triage is not None
        assess = min(_cpu(lambda t=triage: [t.assess(e, Severity.HIGH, record=False) for e in events])  # type: ignore[misc]
                     for _ in range(rounds))
        out[f"triage_{name}_assess_us"] = round(assess / count * 1e6, 1)
        out[f"triage_{name}_assess_share"] = round(assess / count * 1000 / out["triage_none_ms_per_record"], 4)
    return out
