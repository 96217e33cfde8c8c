"""Selection: is this one of the events we map?

Most of a real CloudTrail stream is something else (reads, S3 data events, KMS), so the first
test runs on raw bytes, before any JSON parsing: if none of the event names occurs in the bytes,
the record cannot be a target. Only then is ``eventSource``/``eventName`` matched exactly
(``DeleteNetworkAcl`` must not pass for ``DeleteNetworkAclEntry``). The names come from the
loaded mapping files, never from a list in code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any


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
        # One compiled alternation scans the bytes once, whatever the number of names.
        #: The decoder's pre-filter: a body in which it finds nothing cannot be a target.
        self.pattern = re.compile(b"|".join(re.escape(name.encode()) for name in sorted(self.event_names)))

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
