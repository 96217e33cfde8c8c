"""Open findings and restores, by resolution key: in memory (one process) or in DynamoDB (shared).

The contract both stores keep, which lets two replicas handle a deletion and its restore at the
same moment without either resolution being lost or sent twice:

* ``add_open`` and ``add_restore`` are idempotent writes, made *before* the resolver looks for
  the other side (see ``Resolver``): of two concurrent arrivals at least one sees the other.
* ``take_open`` claims entries: an entry is handed to exactly one caller (DynamoDB: ``DeleteItem``
  conditional on the entry existing, ``ReturnValues ALL_OLD``), so a finding is resolved once.
* ``restores`` reads every restore remembered for a key (a strongly consistent ``Query``);
  restores are kept until they expire, so a redelivered or replayed deletion comes out resolved.

:class:`DynamoResolutionStore`: partition key ``key`` (a SHA-256 of the resolution key, whose
values come from CloudTrail and may be long), sort key ``entry`` (``open#<finding id>`` or
``restore#<time>#<event id>``), ``expires_at`` the TTL attribute (epoch seconds, ``retention``
after the write). An open entry holds the finding's renderings (``connector.resolve.codec``).
Table: ``deploy/cloudformation/state.yaml`` ``ResolutionTable``; IAM: ``iam_actions``.
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html#WorkingWithItems.ConditionalUpdate
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from connector.dynamo import TableSpec, create_table_if_missing
from connector.errors import ConfigError, ConnectorError
from connector.model import RenderedFinding
from connector.resolve import codec

TABLE = TableSpec(hash_key="key", range_key="entry", ttl_attribute="expires_at")
#: DynamoDB's item limit is 400 KB; an open finding larger than this stays open (logged).
MAX_ITEM_BYTES = 350_000


class ResolutionStoreError(ConnectorError):
    """The shared store could not be read or written (retryable: redelivery may succeed)."""

    stage = "resolve"
    retryable = True


@dataclass(frozen=True, slots=True)
class Restoration:
    """Who restored the resource, when, with which event."""

    by: str
    at: str  # ISO 8601 UTC, milliseconds: sorts as time
    event_name: str
    event_id: str


class ResolutionStore(Protocol):
    def add_open(self, key: str, at: str, rendered: list[RenderedFinding]) -> None:
        """Remember a deletion's renderings (one finding, ``at`` its event time) as open."""

    def take_open(self, key: str, *, until: str | None = None, finding_id: str | None = None) -> list[RenderedFinding]:
        """Claim the open findings of ``key`` (deleted at or before ``until``; only ``finding_id``)."""

    def add_restore(self, key: str, restoration: Restoration) -> None: ...

    def restores(self, key: str) -> list[Restoration]: ...


class MemoryResolutionStore:
    """``limit`` keys per kind; the oldest are forgotten first (a finding then stays open)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._open: OrderedDict[str, dict[str, tuple[str, list[RenderedFinding]]]] = OrderedDict()
        self._restores: OrderedDict[str, dict[tuple[str, str], Restoration]] = OrderedDict()
        self._lock = threading.Lock()

    def add_open(self, key: str, at: str, rendered: list[RenderedFinding]) -> None:
        if not rendered:
            return
        with self._lock:
            self._open.setdefault(key, {})[rendered[0].finding_id] = (at, list(rendered))
            self._open.move_to_end(key)
            while len(self._open) > self.limit:
                self._open.popitem(last=False)

    def take_open(self, key: str, *, until: str | None = None, finding_id: str | None = None) -> list[RenderedFinding]:
        with self._lock:
            entries = self._open.get(key, {})
            chosen = [f for f, (at, _) in entries.items()
                      if (finding_id is None or f == finding_id) and (until is None or at <= until)]
            out = [r for f in chosen for r in entries.pop(f)[1]]
            if not entries:
                self._open.pop(key, None)
            return out

    def add_restore(self, key: str, restoration: Restoration) -> None:
        with self._lock:
            self._restores.setdefault(key, {})[(restoration.at, restoration.event_id)] = restoration
            self._restores.move_to_end(key)
            while len(self._restores) > self.limit:
                self._restores.popitem(last=False)

    def restores(self, key: str) -> list[Restoration]:
        with self._lock:
            return [r for _, r in sorted(self._restores.get(key, {}).items())]


def _partition(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class DynamoResolutionStore:
    """Shared by every replica, kept across restarts (see the module docstring)."""

    iam_actions = ("dynamodb:PutItem", "dynamodb:Query", "dynamodb:DeleteItem")

    def __init__(self, table: str, client: Any = None, *, retention_seconds: int = 30 * 86400,
                 clock: Callable[[], float] = time.time) -> None:
        if not table:
            raise ConfigError("setting resolution.table (CONNECTOR_RESOLUTION_TABLE) is required for the dynamodb store")
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.table = table
        self.client = client
        self.retention_seconds = retention_seconds
        self.clock = clock

    def create_table_if_missing(self) -> None:
        """For tests and the demo; production creates the table (with TTL on) in deploy/."""
        create_table_if_missing(self.client, self.table, TABLE)

    def _call(self, operation: str, key: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(TableName=self.table, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise ResolutionStoreError(f"resolution store {operation}: {exc}", record_id=key[:200]) from exc

    def _expires(self) -> dict[str, str]:
        return {"N": str(int(self.clock()) + self.retention_seconds)}

    def _query(self, key: str, prefix: str, projection: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#k = :k AND begins_with(#e, :p)",
            "FilterExpression": "#x > :now",  # expired, not yet removed by TTL
            "ExpressionAttributeNames": {"#k": "key", "#e": "entry", "#x": "expires_at", "#a": "at",
                                         **({"#b": "by"} if "#b" in projection else {})},
            "ExpressionAttributeValues": {":k": {"S": _partition(key)}, ":p": {"S": prefix},
                                          ":now": {"N": str(int(self.clock()))}},
            "ProjectionExpression": projection, "ConsistentRead": True,
        }
        while True:
            answer = self._call("query", key, **kwargs)
            items.extend(answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return items
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def add_open(self, key: str, at: str, rendered: list[RenderedFinding]) -> None:
        if not rendered:
            return
        body = codec.dumps(rendered)
        if len(body) > MAX_ITEM_BYTES:
            raise ResolutionStoreError(f"finding too large to keep open ({len(body)} bytes compressed)",
                                       record_id=rendered[0].finding_id)
        self._call("put_item", key, Item={
            "key": {"S": _partition(key)}, "entry": {"S": f"open#{rendered[0].finding_id}"},
            "at": {"S": at}, "body": {"B": body}, "expires_at": self._expires()})

    def take_open(self, key: str, *, until: str | None = None, finding_id: str | None = None) -> list[RenderedFinding]:
        if finding_id is not None:
            entries = [f"open#{finding_id}"]
        else:
            found = self._query(key, "open#", "#e, #a, #x")
            entries = [i["entry"]["S"] for i in found if until is None or i["at"]["S"] <= until]
        out: list[RenderedFinding] = []
        for entry in entries:
            try:
                answer = self.client.delete_item(
                    TableName=self.table, Key={"key": {"S": _partition(key)}, "entry": {"S": entry}},
                    ConditionExpression="attribute_exists(#e)" + (" AND #a <= :until" if until else ""),
                    ExpressionAttributeNames={"#e": "entry", **({"#a": "at"} if until else {})},
                    **({"ExpressionAttributeValues": {":until": {"S": until}}} if until else {}),
                    ReturnValues="ALL_OLD")
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue  # another replica claimed it (or it is a later deletion)
                raise ResolutionStoreError(f"resolution store delete_item: {exc}", record_id=key[:200]) from exc
            except BotoCoreError as exc:
                raise ResolutionStoreError(f"resolution store delete_item: {exc}", record_id=key[:200]) from exc
            if "body" in answer.get("Attributes", {}):
                out.extend(codec.loads(answer["Attributes"]["body"]["B"]))
        return out

    def add_restore(self, key: str, restoration: Restoration) -> None:
        self._call("put_item", key, Item={
            "key": {"S": _partition(key)}, "entry": {"S": f"restore#{restoration.at}#{restoration.event_id}"},
            "by": {"S": restoration.by}, "at": {"S": restoration.at}, "event_name": {"S": restoration.event_name},
            "event_id": {"S": restoration.event_id}, "expires_at": self._expires()})

    def restores(self, key: str) -> list[Restoration]:
        found = self._query(key, "restore#", "#b, #a, event_name, event_id, #x")
        restorations = [Restoration(i["by"]["S"], i["at"]["S"], i["event_name"]["S"], i["event_id"]["S"]) for i in found]
        return sorted(restorations, key=lambda r: (r.at, r.event_id))
