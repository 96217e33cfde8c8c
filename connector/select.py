"""Selection: is this one of the events we map?

Most of a real CloudTrail stream is something else (reads, S3 data events, KMS), so the first
test runs on raw bytes, before any JSON parsing: if none of the event names occurs in the bytes,
the record cannot be a target. Only then is ``eventSource``/``eventName`` matched exactly
(``DeleteNetworkAcl`` must not pass for ``DeleteNetworkAclEntry``). The names come from the
loaded mapping files, never from a list in code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

ahocorasick_rs: Any
try:  # a SIMD multi-literal search: about 5x faster than ``re``'s alternation over the same bytes
    import ahocorasick_rs
except ImportError:  # pragma: no cover - a dependency; ``re`` is the portable fallback
    ahocorasick_rs = None


class NameScan:
    """Where any of a set of literal byte strings occurs: ``search`` (None when none does) and
    ``positions``. Leftmost-first, non-overlapping, like a ``re`` alternation of the literals.

    Every byte of every log file, CloudWatch Logs payload and message body passes through here
    (bench/: ``python -m bench --only decode``), so the literals are searched by Aho-Corasick
    with a SIMD prefilter (``ahocorasick_rs``) where installed, by ``re`` otherwise.
    """

    def __init__(self, literals: Iterable[bytes]) -> None:
        words = sorted(set(literals))
        if not words or not all(words):
            raise ValueError("a name scan needs non-empty literals")
        #: The same search as a regular expression (for callers that want a ``re.Pattern``).
        self.regex = re.compile(b"|".join(re.escape(word) for word in words))
        self._words = words
        self._scans: dict[bytes, Callable[[Any], list[tuple[int, int, int]]]] = {}
        self._matches: Any = None
        #: ``occurs(data)``: a true value if a literal occurs in ``data``, a false one if none does.
        #: The raw search, for the per-message test that cannot afford a Python frame around it.
        self.occurs: Callable[[Any], object] = self.regex.search
        if ahocorasick_rs is not None:
            automaton = ahocorasick_rs.BytesAhoCorasick(words, matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_FIRST)
            self._matches = self.occurs = automaton.find_matches_as_indexes

    def marker_scan(self, marker: bytes) -> Callable[[Any], list[tuple[int, int, int]]]:
        """A search for ``marker`` alone: ``(0, start, end)`` for each occurrence (a container's
        record heads, counted without a Python object per head beyond the tuple)."""
        scan = self._scans.get(marker)
        if scan is None:
            if ahocorasick_rs is not None:
                scan = ahocorasick_rs.BytesAhoCorasick([marker]).find_matches_as_indexes
            else:
                regex = re.compile(re.escape(marker))
                scan = lambda view: [(0, m.start(), m.end()) for m in regex.finditer(view)]  # noqa: E731
            self._scans[marker] = scan
        return scan

    def search(self, data: Any) -> object | None:
        """A true value if a literal occurs in ``data`` (any bytes-like object), else None."""
        if self._matches is None:
            return self.regex.search(data)
        return True if self._matches(data) else None

    def positions(self, data: Any, start: int = 0) -> list[int]:
        """The start offset of each match in ``data[start:]`` (offsets into ``data``)."""
        if self._matches is None:
            return [m.start() for m in self.regex.finditer(data, start)]
        view = memoryview(data)[start:] if start else data
        return [at + start for _, at, _ in self._matches(view)]


class Selector:
    def __init__(
        self,
        event_names: Iterable[str],
        event_source: str = "ec2.amazonaws.com",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> None:
        self.event_names = frozenset(event_names)
        if not self.event_names:
            raise ValueError("a selector needs at least one event name")
        self.event_source = event_source
        # ISO 8601 UTC strings compare in time order, so the window test needs no parsing.
        self.since = since.strftime("%Y-%m-%dT%H:%M:%SZ") if since else None
        self.until = until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None
        # One scan of the bytes, whatever the number of names.
        #: The decoder's pre-filter: a body in which it finds nothing cannot be a target.
        self.pattern = NameScan(name.encode() for name in self.event_names)

    def matches(self, record: Mapping[str, Any]) -> bool:
        name = record.get("eventName")
        # A name that is not a string (a list, an object) is no event of ours, and unhashable.
        if record.get("eventSource") != self.event_source or not isinstance(name, str) or name not in self.event_names:
            return False
        if self.since or self.until:  # replay windows (connector replay --since/--until)
            when = str(record.get("eventTime") or "")
            if (self.since and when < self.since) or (self.until and when > self.until):
                return False
        return True
