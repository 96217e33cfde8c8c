"""Mark a finding resolved when the event that undoes its deletion arrives (in either order).

Security Hub: the provider-owned ``RecordState`` becomes ``ARCHIVED`` (BatchImportFindings of
the same ``Id``, a later ``UpdatedAt``), with ``ProductFields`` ``connector/resolvedBy`` and
``connector/resolvedAt``. ``Workflow`` is not sent: it belongs to the customer
(BatchUpdateFindings), and an analyst's status must not be overwritten by the provider.
OCSF: ``status_id`` 4 Resolved, an Update activity, and ``status_detail`` naming who restored
it and when. The OpenSearch sink writes partial updates, so the ``analyst`` object stays.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.events import parse_event
from connector.mapping.engine import _as_text
from connector.mapping.loader import EventMapping
from connector.model import CloudTrailEvent, RenderedFinding
from connector.resolve.spec import RestoreSpec, resolution_key
from connector.resolve.store import MemoryResolutionStore, ResolutionStore, Restoration

STATUS_RESOLVED = 4
ACTIVITY_UPDATE = 2
ASFF_PRODUCT_FIELDS_MAX = 50
_MS = timedelta(milliseconds=1)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Resolver:
    """Built from the loaded mappings; ``restore_events``: what the selector must also let in."""

    def __init__(self, mappings: Mapping[str, EventMapping], store: ResolutionStore | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store: ResolutionStore = store or MemoryResolutionStore()
        self.clock = clock
        #: restore event name → [(deletion mapping, spec)]
        self.by_restore: dict[str, list[tuple[EventMapping, RestoreSpec]]] = {}
        for mapping in mappings.values():
            for spec in mapping.restores:
                self.by_restore.setdefault(spec.event_name, []).append((mapping, spec))

    @property
    def restore_events(self) -> frozenset[str]:
        return frozenset(self.by_restore)

    # -- keys ------------------------------------------------------------------------------
    def keys_of_finding(self, mapping: EventMapping, values: Mapping[str, str], event: CloudTrailEvent) -> list[str]:
        keys = []
        for spec in mapping.restores:
            key = resolution_key(mapping.event_name, event.account_id, event.region,
                                 {name: values.get(name) for name in spec.match})
            if key is not None and key not in keys:
                keys.append(key)
        return keys

    def keys_of_restore(self, event: CloudTrailEvent) -> list[str]:
        keys = []
        for mapping, spec in self.by_restore.get(event.event_name, ()):
            if spec.event_source != event.event_source:
                continue
            values: dict[str, str | None] = {}
            for name, expressions in spec.match.items():
                values[name] = next((t for e in expressions if (t := _as_text(e.search(event.raw))) is not None), None)
            key = resolution_key(mapping.event_name, event.account_id, event.region, values)
            if key is not None:
                keys.append(key)
        return keys

    # -- the two arrivals -------------------------------------------------------------------
    def on_finding(self, mapping: EventMapping, rendered: list[RenderedFinding]) -> list[RenderedFinding]:
        """A deletion's findings: resolved at once when its restore came first, else remembered."""
        if not rendered or not mapping.restores:
            return rendered
        finding = rendered[0].finding
        if finding.outcome != "succeeded":  # nothing was deleted: nothing to restore
            return rendered
        event = finding.event
        # The event's values, plus what the enrichment read of the deleted resource (its subnet...).
        values = {**(finding.enrichment.values if finding.enrichment else {}), **finding.values}
        for key in self.keys_of_finding(mapping, values, event):
            restoration = self.store.take_restore(key)
            # A restore older than the deletion undid an earlier one: not this finding's.
            if restoration is not None and _parse_iso(restoration.at) >= event.event_time:
                self.store.add_restore(key, restoration)  # a redelivered deletion stays resolved
                return [resolve(r, restoration, self.clock()) for r in rendered]
        for key in self.keys_of_finding(mapping, values, event):
            self.store.add_open(key, rendered)
        return rendered

    def on_restore(self, record: Mapping[str, Any], *, origin: str = "") -> list[RenderedFinding]:
        """A restore event: the resolved updates of the findings it undoes (none when it came first)."""
        event = parse_event(record, origin=origin)
        if event.error_code:  # a failed or dry-run create restored nothing
            return []
        restoration = Restoration(
            by=event.identity.arn or event.identity.display,
            at=_iso(event.event_time),
            event_name=event.event_name,
            event_id=event.event_id,
        )
        out: list[RenderedFinding] = []
        for key in self.keys_of_restore(event):
            opened = self.store.take_open(key)
            later = [r for r in opened if r.finding.event.event_time > event.event_time]
            resolved = [r for r in opened if r.finding.event.event_time <= event.event_time]
            if later:  # deleted again after this restore: still open
                self.store.add_open(key, later)
            out.extend(resolve(r, restoration, self.clock()) for r in resolved)
            # Remembered either way: the deletion may arrive later (out of order), or again (a
            # redelivery or replay after the repeat cache forgot it), and must come out resolved.
            self.store.add_restore(key, restoration)
        return out


def is_resolved(item: RenderedFinding) -> bool:
    """A resolved update (ASFF ``RecordState`` ARCHIVED, OCSF ``status_id`` 4)."""
    document = item.document
    return document.get("RecordState") == "ARCHIVED" or document.get("status_id") == STATUS_RESOLVED


def resolve(item: RenderedFinding, restoration: Restoration, now: datetime | None = None) -> RenderedFinding:
    """A copy of the rendered finding marked resolved (same id, a later update time)."""
    document = copy.deepcopy(dict(item.document))
    restored = _parse_iso(restoration.at)
    detail = (f"Resolved: {restoration.event_name} ({restoration.event_id}) by {restoration.by} "
              f"at {restoration.at} restored what was deleted")
    if item.format == "asff":
        previous = _parse_iso(str(document.get("UpdatedAt") or restoration.at))
        updated = max(now or datetime.now(UTC), restored, previous + _MS)
        document["UpdatedAt"] = _iso(updated)
        document["RecordState"] = "ARCHIVED"
        document.pop("Workflow", None)  # customer-owned: never overwritten by the provider
        fields = dict(document.get("ProductFields") or {})
        extra = {"connector/resolvedBy": restoration.by[:2048], "connector/resolvedAt": restoration.at,
                 "connector/resolvedByEvent": f"{restoration.event_name}/{restoration.event_id}"[:2048]}
        room = ASFF_PRODUCT_FIELDS_MAX - len(extra)
        document["ProductFields"] = {**dict(list(fields.items())[:room]), **extra}
    else:
        info = document.setdefault("finding_info", {})
        previous_ms = int(info.get("modified_time") or 0)
        updated_ms = max(int((now or datetime.now(UTC)).timestamp() * 1000), int(restored.timestamp() * 1000),
                         previous_ms + 1)
        info["modified_time"] = updated_ms
        document.update({
            "status_id": STATUS_RESOLVED, "status": "Resolved", "status_detail": detail[:1024],
            "activity_id": ACTIVITY_UPDATE, "activity_name": "Update",
            "type_uid": int(document.get("class_uid", 2004)) * 100 + ACTIVITY_UPDATE,
            "type_name": f"{document.get('class_name', 'Detection Finding')}: Update",
        })
        document.setdefault("unmapped", {})["resolution"] = dataclasses.asdict(restoration)
    return dataclasses.replace(item, document=document)

