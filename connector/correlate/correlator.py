"""The correlation stage: after the member findings are delivered, group them into teardowns.

``Correlator.process`` is called by the pipeline with the findings of the messages about to be
acknowledged. It adds them to their windows in the shared store, and for every window at or over
the threshold renders the teardown finding (ASFF and OCSF, validated like any finding) and
delivers it through the pipeline's own delivery phase, so it reaches every sink and obeys the same
failure contract: if it cannot be delivered, the messages of its members in this batch are kept
for redelivery (their findings are idempotent and the window's set already holds them, so the
redelivery re-sends the teardown); a sink's permanent refusal is dead-lettered.

Several replicas update one window concurrently and each delivers the teardown as its store write
answered it; a replica that wrote earlier may deliver a shorter list last. So after delivering, a
replica reads the window again and, if it grew meanwhile, delivers again (bounded rounds). Every
write is followed by its writer's delivery, so the last delivery lists every member.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connector.config import Settings
from connector.correlate.render import render_asff, render_ocsf
from connector.correlate.store import DynamoWindowStore, MemoryWindowStore, WindowStore
from connector.correlate.teardown import MAPPING_ID, KeyKind, Member, Teardown, Window, build_finding, subject_of
from connector.errors import ConfigError, ConnectorError, DeliveryError
from connector.model import FORMATS, DeadLetter, Finding, Identity, RenderedFinding
from connector.validate import validate

log = logging.getLogger(__name__)

Key = tuple[str, str]
#: The pipeline's delivery phase: renderings by (finding id, format) → (retryable keys, refused keys with reasons).
Send = Callable[[dict[Key, RenderedFinding]], tuple[Mapping[Key, str], dict[Key, list[str]]]]
MAX_ROUNDS = 3
DAY = 86_400


@dataclass
class Correlator:
    store: WindowStore
    threshold: int = 5
    window_seconds: int = 600
    key: KeyKind = "principal"
    #: How long a window is kept after it ends, or after it was written if later (late records, redeliveries).
    retention_seconds: int = 2 * DAY
    product_arn_template: str = ""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.window_seconds <= 0 or DAY % self.window_seconds:
            raise ConfigError(f"setting correlation.window_seconds: {self.window_seconds} must divide a day (86400)")
        if self.threshold < 2:
            raise ConfigError("setting correlation.threshold: must be at least 2")

    @classmethod
    def from_settings(cls, settings: Settings, *, store: WindowStore | None = None) -> Correlator | None:
        """None when correlation is off; the store from ``correlation.store``."""
        c = settings.correlation
        if not c.enabled:
            return None
        if store is None:
            store = DynamoWindowStore(c.table) if c.store == "dynamodb" else MemoryWindowStore()
        return cls(store, threshold=c.threshold, window_seconds=c.window_seconds, key=c.key,
                   retention_seconds=c.retention_seconds, product_arn_template=settings.securityhub.product_arn)

    # -- windows ---------------------------------------------------------------------------
    def window_of(self, finding: Finding) -> Window | None:
        if finding.mapping_id == MAPPING_ID or finding.outcome != "succeeded":
            return None
        subject = subject_of(finding, self.key)
        if subject is None:
            return None
        event = finding.event
        epoch = int(event.event_time.timestamp())
        start = epoch - epoch % self.window_seconds
        return Window(self.key, subject, event.partition, event.region, event.account_id, start, self.window_seconds)

    def _teardown(self, window: Window, stored: Iterable[str], identity: Identity, batch: frozenset[str]) -> Teardown | None:
        members = tuple(sorted(m for m in (Member.decode(s) for s in stored) if m is not None))
        if len(members) < self.threshold:
            return None
        return Teardown(window, members, identity, batch)

    def observe(self, findings: Iterable[Finding]) -> list[Teardown]:
        """Add each member to its window (one store write per window); the windows now at the threshold."""
        groups: dict[str, tuple[Window, Identity, dict[str, Member]]] = {}
        for finding in findings:
            window = self.window_of(finding)
            if window is None:
                continue
            ident = finding.event.identity if self.key == "principal" else Identity()
            groups.setdefault(window.key, (window, ident, {}))[2][finding.id] = Member.of(finding)
        out = []
        now = int(self.clock().timestamp())
        for window, ident, members in groups.values():
            # Kept for the retention after its end or after now, whichever is later: a replay of an
            # old trail writes windows that ended long ago.
            expires = max(window.end, now) + self.retention_seconds
            stored = self.store.add(window.key, [m.encode() for m in members.values()], expires_at=expires)
            teardown = self._teardown(window, stored, ident, frozenset(members))
            if teardown is not None:
                out.append(teardown)
        return out

    def refresh(self, teardown: Teardown) -> Teardown | None:
        """The teardown again if its window grew since it was rendered, else None."""
        stored = self.store.members(teardown.window.key)
        newer = self._teardown(teardown.window, stored, teardown.identity, teardown.batch_members)
        if newer is None or set(newer.members) <= set(teardown.members):
            return None
        return newer

    # -- render ----------------------------------------------------------------------------
    def render(self, teardown: Teardown) -> list[RenderedFinding]:
        finding = build_finding(teardown)
        w = teardown.window
        product_arn = (self.product_arn_template.format(partition=w.partition, region=w.region, account=w.account)
                       if self.product_arn_template else None)
        updated = max(self.clock(), datetime.fromtimestamp(teardown.members[-1].event_time_ms / 1000, UTC))
        documents = {
            "asff": render_asff(teardown, finding, product_arn=product_arn, updated_at=updated),
            "ocsf": render_ocsf(teardown, finding, updated_at=updated),
        }
        out = []
        for name in FORMATS:
            validate(name, documents[name], record_id=finding.id)
            out.append(RenderedFinding(finding.id, name, documents[name], finding))
        return out

    # -- the stage -------------------------------------------------------------------------
    def process(self, findings: Iterable[Finding], send: Send, put_letters: Callable[[list[DeadLetter]], None]) -> set[str]:
        """Correlate and deliver; returns the member finding ids whose messages must be redelivered."""
        unique = {f.id: f for f in findings}
        try:
            teardowns = self.observe(unique.values())
        except DeliveryError as exc:
            log.warning("correlation store failed; %d findings kept for redelivery: %s", len(unique), exc)
            return {fid for fid, f in unique.items() if self.window_of(f) is not None}
        retry: set[str] = set()
        letters: list[DeadLetter] = []
        owners: set[str] = set()
        for _ in range(MAX_ROUNDS):
            if not teardowns:
                break
            rendered: dict[Key, RenderedFinding] = {}
            for teardown in teardowns:
                try:
                    rendered.update({(r.finding_id, r.format): r for r in self.render(teardown)})
                except ConnectorError as exc:  # our own finding failed validation: a bug, kept as a letter
                    letters.append(DeadLetter("validate", str(exc), teardown.finding_id,
                                              json.dumps(teardown.window.key).encode(), "correlation", type(exc).__name__))
                    owners |= teardown.batch_members
            failed, refused = send(rendered)
            again = []
            for teardown in teardowns:
                keys = {(teardown.finding_id, fmt) for fmt in FORMATS}
                if keys & failed.keys():
                    retry |= teardown.batch_members
                    continue
                if keys & refused.keys():
                    for key in sorted(keys & refused.keys()):
                        letters.append(DeadLetter("deliver", "; ".join(refused[key]), teardown.finding_id,
                                                  json.dumps(rendered[key].document, default=str).encode(),
                                                  "correlation", "DeliveryRejected"))
                    owners |= teardown.batch_members
                    continue
                if not keys & rendered.keys():
                    continue  # not rendered (its letter is above)
                log.info("teardown finding delivered", extra={"finding_id": teardown.finding_id,
                                                              "members": len(teardown.members)})
                try:
                    newer = self.refresh(teardown)
                except DeliveryError as exc:
                    log.warning("correlation store re-read failed (later writers re-check): %s", exc)
                    continue
                if newer is not None:
                    again.append(newer)
            teardowns = again
        if letters:
            try:
                put_letters(letters)
            except (DeliveryError, OSError) as exc:
                log.error("dead-letter destination failed for teardown findings: %s", exc)
                retry |= owners
        return retry
