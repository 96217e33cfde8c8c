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
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.events import parse_event
from connector.mapping.engine import _as_text
from connector.mapping.loader import EventMapping
from connector.model import CloudTrailEvent, RenderedFinding
from connector.resolve.spec import RestoreSpec, resolution_key
from connector.resolve.store import MemoryResolutionStore, ResolutionStore, ResolutionStoreError, Restoration

log = logging.getLogger(__name__)

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

    @staticmethod
    def missing_values(mapping: EventMapping, values: Mapping[str, str]) -> list[str]:
        """The match values no restore spec of ``mapping`` could be keyed without."""
        return sorted({n for spec in mapping.restores for n in spec.match if not values.get(n)})

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
    # Each side writes before it reads the other (see connector/resolve/store.py): a deletion and
    # its restore handled at the same moment by two replicas cannot both miss each other.
    def on_finding(self, mapping: EventMapping, rendered: list[RenderedFinding]) -> list[RenderedFinding]:
        """A deletion's findings: resolved at once when its restore came first, else remembered.

        A store that cannot be reached does not hold the finding back: it goes out unresolved
        (logged), as it would with resolution off."""
        if not rendered or not mapping.restores:
            return rendered
        finding = rendered[0].finding
        if finding.outcome != "succeeded":  # nothing was deleted: nothing to restore
            return rendered
        event = finding.event
        # The event's values, plus what the enrichment read of the deleted resource (its subnet...).
        values = {**(finding.enrichment.values if finding.enrichment else {}), **finding.values}
        keys = self.keys_of_finding(mapping, values, event)
        if not keys:  # a match value is unknown: say why the finding cannot resolve itself
            return [unresolvable(r, self.missing_values(mapping, values), enriched=finding.enrichment is not None)
                    for r in rendered]
        at = _iso(event.event_time)
        try:
            for key in keys:
                self.store.add_open(key, at, rendered)
            for key in keys:
                # The earliest restore not older than the deletion (an older one undid an earlier
                # deletion). Kept in the store, so a redelivered deletion comes out resolved again.
                restoration = next((r for r in self.store.restores(key) if r.at >= at), None)
                if restoration is None:
                    continue
                for each in keys:
                    self.store.take_open(each, finding_id=finding.id)
                # Resolved even when a concurrent restore elsewhere claimed it first: the same
                # resolved update twice is harmless, the unresolved original after it is not.
                return [resolve(r, restoration, self.clock()) for r in rendered]
        except ResolutionStoreError as exc:
            log.warning("finding %s delivered unresolved: %s", finding.id, exc)
        return rendered

    def on_restore(self, record: Mapping[str, Any], *, origin: str = "") -> list[RenderedFinding]:
        """A restore event: the resolved updates of the findings it undoes (none when it came first).

        A store error propagates (``ResolutionStoreError``): the restore event is dead-lettered and
        can be redriven, rather than its resolution being lost."""
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
            # Remembered first: the deletion may arrive later (out of order, or in another
            # replica right now), or again (a redelivery or replay), and must come out resolved.
            self.store.add_restore(key, restoration)
            # Deletions after this restore are not undone by it: they stay open.
            opened = self.store.take_open(key, until=restoration.at)
            out.extend(resolve(r, restoration, self.clock()) for r in opened)
        return out


def unresolvable(item: RenderedFinding, missing: list[str], *, enriched: bool) -> RenderedFinding:
    """A copy that says it cannot resolve itself, and why: the restore event names the resource
    by values (the NAT gateway's subnet, the interface's address, the peering's VPCs) that the
    deletion record lacks and only the enrichment reads."""
    why = (f"Cannot resolve itself: the restore event is matched on {', '.join(missing)}, which the "
           "deletion record does not carry; "
           + ("the enrichment did not find them." if enriched else "they come from the enrichment, which is off "
              "(CONNECTOR_ENRICHMENT_ENABLED=true)."))
    document = copy.deepcopy(dict(item.document))
    if item.format == "asff":
        fields = dict(document.get("ProductFields") or {})
        if len(fields) < ASFF_PRODUCT_FIELDS_MAX:
            fields["connector/resolution"] = why[:2048]
        document["ProductFields"] = fields
    else:
        document.setdefault("unmapped", {})["resolution"] = {"status": "unavailable", "reason": why, "missing": missing}
    return dataclasses.replace(item, document=document)


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

