"""Open findings and early restores, by resolution key (in memory, bounded).

The shape follows the correlation store (connector/correlate/store.py): a protocol with one
in-process implementation; a shared (DynamoDB) one would make resolution work across workers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from connector.model import RenderedFinding


@dataclass(frozen=True, slots=True)
class Restoration:
    """Who restored the resource, when, with which event."""

    by: str
    at: str  # ISO 8601 UTC
    event_name: str
    event_id: str


class ResolutionStore(Protocol):
    def add_open(self, key: str, rendered: list[RenderedFinding]) -> None: ...
    def take_open(self, key: str) -> list[RenderedFinding]: ...
    def add_restore(self, key: str, restoration: Restoration) -> None: ...
    def take_restore(self, key: str) -> Restoration | None: ...


class MemoryResolutionStore:
    """``limit`` keys per kind; the oldest are forgotten first (a finding then stays open)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._open: OrderedDict[str, dict[tuple[str, str], RenderedFinding]] = OrderedDict()
        self._restores: OrderedDict[str, Restoration] = OrderedDict()

    def add_open(self, key: str, rendered: list[RenderedFinding]) -> None:
        entry = self._open.setdefault(key, {})
        entry.update({(r.finding_id, r.format): r for r in rendered})
        self._open.move_to_end(key)
        while len(self._open) > self.limit:
            self._open.popitem(last=False)

    def take_open(self, key: str) -> list[RenderedFinding]:
        return list(self._open.pop(key, {}).values())

    def add_restore(self, key: str, restoration: Restoration) -> None:
        self._restores[key] = restoration
        self._restores.move_to_end(key)
        while len(self._restores) > self.limit:
            self._restores.popitem(last=False)

    def take_restore(self, key: str) -> Restoration | None:
        return self._restores.pop(key, None)
