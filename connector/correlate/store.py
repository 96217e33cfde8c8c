"""Window state for correlation, shared by every replica: a small interface, two stores.

A window is a set of member strings under one key. ``add`` puts members in and answers the whole
set as it stands after the write, atomically: two consumers adding to the same window at the same
moment both see a set that holds their own members, and the one that writes last sees everyone's.
Adding is idempotent (a redelivered member is already in the set), which is what at-least-once
delivery needs.

* :class:`DynamoWindowStore` — production: one item per window. Members are only ever written by
  ``UpdateItem`` ``ADD members :m`` on a string set, conditional on the window existing and being
  below ``max_members`` (an item stays under DynamoDB's 400 KB; a full window answers what it
  holds). A window that does not exist yet is created *empty* by a ``PutItem`` conditional on
  ``attribute_not_exists``, so of two consumers creating it at once one creates it and the other's
  write is refused; then both ``ADD``. DynamoDB applies writes to one item one at a time, so no
  member is lost. A window that exists (the common case) costs one request. ``expires_at`` is the
  table's TTL attribute (epoch seconds), written once at creation.
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html#Expressions.UpdateExpressions.ADD
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html
* :class:`MemoryWindowStore` — the demo and single-process use: a dict behind a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from connector.dynamo import TableSpec, create_table_if_missing
from connector.errors import ConfigError, DeliveryError

#: Members kept per window: a teardown of a thousand resources is already unambiguous.
MAX_MEMBERS = 1000
#: One item per window (deploy/cloudformation/state.yaml ``CorrelationTable``).
TABLE = TableSpec(hash_key="window", ttl_attribute="expires_at")


class WindowStore(Protocol):
    """Where correlation windows live (see the module docstring for the contract)."""

    def add(self, key: str, members: Iterable[str], *, expires_at: int) -> frozenset[str]:
        """Add ``members`` to the window ``key`` (created if missing); return every member now in it."""

    def members(self, key: str) -> frozenset[str]:
        """The window's members as they stand (a strongly consistent read); empty if none."""


class MemoryWindowStore:
    """One process's windows; expired ones are forgotten when touched or when the store grows."""

    def __init__(self, *, max_members: int = MAX_MEMBERS, clock: Callable[[], float] = time.time) -> None:
        self.max_members = max_members
        self.clock = clock
        self._windows: dict[str, tuple[int, set[str]]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> set[str] | None:
        entry = self._windows.get(key)
        if entry is not None and entry[0] <= self.clock():
            del self._windows[key]
            return None
        return entry[1] if entry else None

    def add(self, key: str, members: Iterable[str], *, expires_at: int) -> frozenset[str]:
        with self._lock:
            current = self._live(key)
            if current is None:
                if len(self._windows) > 10_000:
                    now = self.clock()
                    self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
                current = set()
                self._windows[key] = (expires_at, current)
            for member in members:
                if len(current) >= self.max_members:
                    break
                current.add(member)
            return frozenset(current)

    def members(self, key: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._live(key) or ())


class DynamoWindowStore:
    """Windows as DynamoDB items: key ``window`` (S), ``members`` (SS), ``expires_at`` (N, TTL)."""

    iam_actions = ("dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem")

    def __init__(self, table: str, client: Any = None, *, max_members: int = MAX_MEMBERS) -> None:
        if not table:
            raise ConfigError("setting correlation.table (CONNECTOR_CORRELATION_TABLE) is required for the dynamodb store")
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.table = table
        self.client = client
        self.max_members = max_members

    def create_table_if_missing(self) -> None:
        """For tests and the demo; production creates the table (with TTL on) in deploy/."""
        create_table_if_missing(self.client, self.table, TABLE)

    def add(self, key: str, members: Iterable[str], *, expires_at: int) -> frozenset[str]:
        new = sorted(set(members))
        if not new:
            return self.members(key)
        for _ in range(3):
            try:
                return self._add(key, new)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise DeliveryError(f"correlation window {key}: {exc}", retryable=True) from exc
            except BotoCoreError as exc:
                raise DeliveryError(f"correlation window {key}: {exc}", retryable=True) from exc
            # The window is full, or not created yet (or created a moment ago, still empty, by
            # another consumer): which one is a strongly consistent read away.
            current = self._get(key)
            if current is None:
                self._create(key, expires_at)
            elif len(current) >= self.max_members:
                return current
        raise DeliveryError(f"correlation window {key}: not written after 3 attempts", retryable=True)

    def _add(self, key: str, new: list[str]) -> frozenset[str]:
        """``ADD`` to an existing window below its cap (else ConditionalCheckFailedException)."""
        answer = self.client.update_item(
            TableName=self.table,
            Key={"window": {"S": key}},
            UpdateExpression="ADD members :m",
            ConditionExpression="attribute_exists(#w) AND (attribute_not_exists(members) OR size(members) < :max)",
            ExpressionAttributeNames={"#w": "window"},
            ExpressionAttributeValues={":m": {"SS": new}, ":max": {"N": str(self.max_members)}},
            ReturnValues="ALL_NEW",
        )
        return frozenset(answer.get("Attributes", {}).get("members", {}).get("SS", ()))

    def _create(self, key: str, expires_at: int) -> None:
        """Create the window, empty, only if nobody has: members are only ever added by ``ADD``,
        so two consumers creating it at once cannot erase each other's members."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item={"window": {"S": key}, "expires_at": {"N": str(int(expires_at))}},
                ConditionExpression="attribute_not_exists(#w)",
                ExpressionAttributeNames={"#w": "window"},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise DeliveryError(f"correlation window {key}: {exc}", retryable=True) from exc
        except BotoCoreError as exc:
            raise DeliveryError(f"correlation window {key}: {exc}", retryable=True) from exc

    def _get(self, key: str) -> frozenset[str] | None:
        try:
            answer = self.client.get_item(TableName=self.table, Key={"window": {"S": key}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise DeliveryError(f"correlation window {key}: {exc}", retryable=True) from exc
        if "Item" not in answer:
            return None
        return frozenset(answer["Item"].get("members", {}).get("SS", ()))

    def members(self, key: str) -> frozenset[str]:
        return self._get(key) or frozenset()
