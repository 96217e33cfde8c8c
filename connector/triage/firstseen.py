"""Where first-seen sightings are kept: a small store interface, in memory or in DynamoDB.

A sighting is (key, day): the key names the account, the field and its value
(``111122223333#sourceIPAddress#203.0.113.25``), the day is the event's UTC day as a day number.
A value is *new* when no sighting falls on any of the N days before the event's day. Days, not
instants, make the answer independent of delivery order within a day and of redelivery: an
event never counts as its own earlier sighting, and every call of a principal's first day is
"first seen". Judged on the events the connector receives (the mapped deletions), so "new" means
"has not made one of these calls here for N days".

DynamoDB: one item per key, the days in a number set (``ADD`` is atomic and idempotent, so
replicas can record concurrently), ``expires_at`` for the table's TTL. Table: partition key
``key`` (S), TTL attribute ``expires_at``. IAM: ``IAM_ACTIONS``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from typing import Any, Protocol

from cachetools import TTLCache

from connector.dynamo import TableSpec, create_table_if_missing

IAM_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
DAY_SECONDS = 86_400
#: Attacker-influenced values become keys: bound them.
MAX_KEY = 1024


def sighting_key(account: str, field: str, value: str) -> str:
    return f"{account}#{field}#{value}"[:MAX_KEY]


class SightingStore(Protocol):
    """Days on which a key was seen; ``add`` must be safe to call concurrently and repeatedly."""

    def days(self, key: str) -> Collection[int]: ...

    def add(self, key: str, day: int, keep_days: int) -> None: ...


class MemorySightings:
    """Per process, bounded (least recently used keys are forgotten); for the demo, ``map`` and
    single-process use. Not shared between replicas and lost on restart."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._days: OrderedDict[str, set[int]] = OrderedDict()
        self._lock = threading.Lock()

    def days(self, key: str) -> Collection[int]:
        with self._lock:
            found = self._days.get(key)
            return frozenset(found) if found else frozenset()

    def latest_before(self, key: str, day: int, keep_days: int, *, record: bool) -> int | None:
        """The latest sighting before ``day`` (``None``: none), then ``add`` when ``record``: what
        the engine asks of every store, in one lock and without copying the days."""
        with self._lock:
            found = self._days.get(key)
            latest = max((d for d in found if d < day), default=None) if found else None
        if record:
            self.add(key, day, keep_days)
        return latest

    def add(self, key: str, day: int, keep_days: int) -> None:
        with self._lock:
            days = self._days.get(key)
            if days is None:
                days = self._days[key] = set()
            else:
                self._days.move_to_end(key)
                if day in days:
                    return
            days.add(day)
            for old in [d for d in days if d < day - keep_days]:
                days.discard(old)
            while len(self._days) > self.max_keys:
                self._days.popitem(last=False)


class DynamoDBSightings:
    """Shared by every replica and kept across restarts.

    Each process remembers which (key, day) it has already written, so a burst by one principal
    costs one write per key and day, and caches reads for ``read_cache_seconds``.
    """

    def __init__(self, table: str, client: Any, *, read_cache_seconds: float = 60.0, cache_size: int = 50_000) -> None:
        self.table = table
        self.client = client
        self._written: TTLCache[tuple[str, int], bool] = TTLCache(maxsize=cache_size, ttl=DAY_SECONDS)
        self._read: TTLCache[str, frozenset[int]] = TTLCache(maxsize=cache_size, ttl=read_cache_seconds)
        self._lock = threading.Lock()

    def days(self, key: str) -> Collection[int]:
        with self._lock:
            cached = self._read.get(key)
        if cached is not None:
            return cached
        item = self.client.get_item(TableName=self.table, Key={"key": {"S": key}}, ProjectionExpression="#d",
                                    ExpressionAttributeNames={"#d": "days"}).get("Item") or {}
        days = frozenset(int(n) for n in item.get("days", {}).get("NS", ()))
        with self._lock:
            self._read[key] = days
        return days

    def add(self, key: str, day: int, keep_days: int) -> None:
        with self._lock:
            if (key, day) in self._written:
                return
        expires = (day + keep_days + 1) * DAY_SECONDS
        self.client.update_item(
            TableName=self.table, Key={"key": {"S": key}},
            UpdateExpression="ADD #d :day SET #e = :expires",
            ExpressionAttributeNames={"#d": "days", "#e": "expires_at"},
            ExpressionAttributeValues={":day": {"NS": [str(day)]}, ":expires": {"N": str(expires)}},
        )
        with self._lock:
            self._written[(key, day)] = True
            self._read.pop(key, None)


#: The sightings table: one item per key, expiring through ``expires_at``.
TABLE = TableSpec("key", ttl_attribute="expires_at")


def create_table(client: Any, table: str) -> None:
    """The sightings table (on demand, TTL on ``expires_at``); for tests and first set-up."""
    create_table_if_missing(client, table, TABLE)
