"""Amazon Security Lake sink: OCSF Detection Findings as Parquet objects of a custom source.

Layout (what Security Lake's crawler partitions by; see
https://docs.aws.amazon.com/security-lake/latest/userguide/custom-sources.html)::

    s3://<lake bucket>/ext/<source>/[<version>/]region=<region>/accountId=<account>/eventDay=<yyyymmdd>/<digest>.parquet

``securitylake.location`` is the custom source's ``provider.location`` as CreateCustomLogSource
returns it (``deploy/securitylake/`` makes the roles and shows the call). ``region`` and
``accountId`` are the finding's ``cloud.region`` and ``cloud.account.uid`` — CloudTrail's
``awsRegion`` and ``recipientAccountId``, values an attacker can influence — and ``eventDay``
is the UTC day of its ``time``. Each is checked (an AWS Region name, 12 ASCII digits, a plausible
epoch-millisecond time) before it forms a key; a finding that fails is answered PERMANENT with
the reason, so the pipeline dead-letters it, and nothing is written outside the layout.

Objects: one per partition per flush, rows sorted by ``time`` then finding id (Security Lake
asks for time order), zstd-compressed, 1 MiB data pages, one OCSF class per object (this sink
takes only the ``ocsf`` rendering). The column schema is fixed: see
``connector/sinks/securitylake_schema.py`` for why and how.

Batching and the delivery guarantee: group commit. ``send`` adds its findings to the open
batch and *waits* until that batch is written; it answers OK only for findings that are in S3,
so a source message is acknowledged only after its findings are durable (at least once). The
batch is written when it holds ``max_findings`` findings or ``max_bytes`` of JSON, when its
oldest finding has waited ``max_age_seconds``, when every pipeline worker that could add to it
is waiting on it (nothing more can arrive: ``max_in_flight``, or 1 for an ordered source such as
Kinesis), and on ``close`` (shutdown). A write that fails after the SDK's retries answers
RETRYABLE, and the source redelivers. Keep ``max_age_seconds`` below ``grace_seconds`` so a
shutdown does not give up on a waiting batch; Security Lake recommends objects no more often
than every 5 minutes per partition, so at low volume raise both (SQS visibility is kept alive
by the runner's heartbeat while a batch waits).

Idempotent names: ``<digest>`` is a SHA-256 of the object's sorted finding ids (finding ids are
deterministic, see README "Findings"), so a batch delivered again writes the same key with the
same bytes and overwrites instead of duplicating. A finding redelivered into a batch of a
different composition lands in another object: readers dedupe by ``finding_info.uid`` as for
every at-least-once sink.

IAM: with ``role_arn`` set the connector's role needs ``sts:AssumeRole`` on the provider role
(with ``external_id``), which Security Lake grants ``s3:PutObject`` under the source's prefix;
without it the process's own credentials need ``s3:PutObject`` there.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from connector.aws_region import REGION_PATTERN
from connector.config import SecurityLakeSettings, Settings
from connector.errors import ConfigError, DeliveryError

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as exc:  # an optional dependency: say how to get it instead of a traceback
    raise ConfigError(
        "the securitylake sink needs pyarrow: pip install 'cloudtrail-findings-connector[securitylake]'"
    ) from exc

from connector.model import DeliveryResult, FindingFormat, Outcome, RenderedFinding
from connector.sinks.base import register
from connector.sinks.securitylake_schema import SCHEMA, SchemaMismatch, check_document, row_from_document

log = logging.getLogger(__name__)

#: ``s3://bucket/ext/<source>[/<version>]/`` (CreateCustomLogSource: source name ≤ 64 of
#: ``[\w:.-]``, version ≤ 32 of ``[A-Za-z0-9._-]``); ASCII classes only (``\d`` matches any digit).
LOCATION = re.compile(
    r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<prefix>ext/(?P<source>[A-Za-z0-9_.:-]{1,64})"
    r"(?:/[A-Za-z0-9_.-]{1,32})?)/?"
)
#: AWS Region names: us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1, us-iso-east-1, eusc-de-east-1 ...
REGION = re.compile(REGION_PATTERN)
ACCOUNT = re.compile(r"[0-9]{12}")
#: Epoch milliseconds between 2000 and 2100: anything else is not a CloudTrail event time.
TIME_RANGE = (946_684_800_000, 4_102_444_800_000)
CONTENT_TYPE = "application/vnd.apache.parquet"
PAGE_BYTES = 1024 * 1024
_SEVERITY = {Outcome.OK: 0, Outcome.PERMANENT: 1, Outcome.RETRYABLE: 2}


class Rejected(ValueError):
    """A finding that cannot be written to the layout (bad partition value or schema)."""


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    region: str
    account: str
    day: str

    def prefix(self, root: str) -> str:
        return f"{root}/region={self.region}/accountId={self.account}/eventDay={self.day}/"


def partition_of(document: Mapping[str, Any]) -> Partition:
    """The partition of an OCSF finding, each value checked before it can form a key."""
    cloud = document.get("cloud")
    cloud = cloud if isinstance(cloud, Mapping) else {}
    account_obj = cloud.get("account")
    region = cloud.get("region")
    account = account_obj.get("uid") if isinstance(account_obj, Mapping) else None
    when = document.get("time")
    if not isinstance(region, str) or not REGION.fullmatch(region):
        raise Rejected(f"securitylake: cloud.region {region!r:.80} is not an AWS Region name; not written")
    if not isinstance(account, str) or not ACCOUNT.fullmatch(account):
        raise Rejected(f"securitylake: cloud.account.uid {account!r:.40} is not a 12-digit account id; not written")
    if not isinstance(when, int) or isinstance(when, bool) or not TIME_RANGE[0] <= when < TIME_RANGE[1]:
        raise Rejected(f"securitylake: time {when!r:.40} is not epoch milliseconds of 2000-2099; not written")
    day = datetime.fromtimestamp(when / 1000, UTC).strftime("%Y%m%d")
    return Partition(region, account, day)


def object_key(root: str, partition: Partition, finding_ids: Sequence[str]) -> str:
    """The idempotent key: the same set of findings always gets the same name."""
    digest = hashlib.sha256(json.dumps(sorted(finding_ids)).encode()).hexdigest()[:32]
    return f"{partition.prefix(root)}{digest}.parquet"


def parquet_bytes(documents: Sequence[Mapping[str, Any]]) -> bytes:
    """Documents (already checked against the schema) → one Parquet object."""
    table = pa.Table.from_pylist([row_from_document(d) for d in documents], schema=SCHEMA)
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", data_page_size=PAGE_BYTES, write_statistics=True)
    return out.getvalue()


@dataclass(slots=True)
class _Row:
    finding_id: str
    partition: Partition
    document: Mapping[str, Any]
    size: int


@dataclass(eq=False, slots=True)
class _Batch:
    opened: float
    rows: dict[str, _Row] = field(default_factory=dict)
    tickets: list[_Ticket] = field(default_factory=list)
    size: int = 0
    taken: bool = False


@dataclass(eq=False, slots=True)
class _Ticket:
    """One ``send``'s share of a batch; ``done`` once the batch is written (or failed)."""

    ids: tuple[str, ...]
    batch: _Batch
    results: dict[str, tuple[Outcome, str | None]] = field(default_factory=dict)
    done: bool = False


@register("securitylake")
class SecurityLakeSink:
    name: ClassVar[str] = "securitylake"
    formats: ClassVar[tuple[FindingFormat, ...]] = ("ocsf",)
    iam_actions: ClassVar[tuple[str, ...]] = ("sts:AssumeRole", "s3:PutObject")

    def __init__(
        self,
        location: str,
        *,
        client: Any = None,
        client_factory: Callable[[], Any] | None = None,
        max_findings: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_seconds: float = 20.0,
        callers: int = 4,
    ) -> None:
        match = LOCATION.fullmatch(location)
        if match is None:
            raise ConfigError(
                f"setting securitylake.location: {location!r} is not s3://<bucket>/ext/<source>/[<version>/]"
            )
        if any(set(part) <= {"."} for part in match["prefix"].split("/")):
            raise ConfigError(f"setting securitylake.location: {location!r} has a path segment of only dots")
        self.location = location
        self.bucket = match["bucket"]
        self.root = match["prefix"]
        self._client = client
        self._client_factory = client_factory
        self.max_findings = max_findings
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.callers = max(1, callers)
        self._cond = threading.Condition()
        self._batch: _Batch | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SecurityLakeSink:
        from connector.sources import source_class

        sl = settings.securitylake
        if not sl.location:
            raise ConfigError("setting securitylake.location is required by the securitylake sink")
        ordered = bool(getattr(source_class(settings.source), "ordered", False))
        return cls(
            sl.location, client_factory=_ClientFactory(sl),
            max_findings=sl.max_findings, max_bytes=sl.max_bytes, max_age_seconds=sl.max_age_seconds,
            callers=1 if ordered else settings.max_in_flight,
        )

    # -- client ---------------------------------------------------------------------------
    def client(self) -> Any:
        """The S3 client (with the provider role's credentials when one is configured)."""
        if self._client_factory is not None:
            return self._client_factory()
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    # -- send -----------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Findings in the open batch (waiting to be written)."""
        with self._cond:
            return len(self._batch.rows) if self._batch is not None else 0

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        outcome: dict[str, tuple[Outcome, str | None]] = {}

        def note(finding_id: str, result: tuple[Outcome, str | None]) -> None:
            current = outcome.get(finding_id)
            if current is None or _SEVERITY[result[0]] > _SEVERITY[current[0]]:
                outcome[finding_id] = result

        rows: list[_Row] = []
        for item in batch:
            try:
                rows.append(self._row(item))
            except Rejected as exc:
                note(item.finding_id, (Outcome.PERMANENT, str(exc)))
        if rows:
            ticket = self._enqueue(rows)
            if ticket is None:
                for row in rows:
                    note(row.finding_id, (Outcome.RETRYABLE, "securitylake: the sink is closed"))
            else:
                self._wait(ticket)
                for row in rows:
                    note(row.finding_id, ticket.results.get(row.finding_id, (Outcome.RETRYABLE, "securitylake: no result")))
        return [DeliveryResult(item.finding_id, *outcome[item.finding_id]) for item in batch]

    @staticmethod
    def _row(item: RenderedFinding) -> _Row:
        if item.format != "ocsf":
            raise Rejected(f"securitylake: takes OCSF findings, not {item.format!r}")
        partition = partition_of(item.document)
        try:
            check_document(item.document)
        except SchemaMismatch as exc:
            raise Rejected(f"securitylake: {exc}") from None
        size = len(orjson.dumps(item.document, default=str))
        return _Row(item.finding_id, partition, item.document, size)

    def _enqueue(self, rows: list[_Row]) -> _Ticket | None:
        with self._cond:
            if self._closed:
                return None
            batch = self._batch
            if batch is None:
                batch = self._batch = _Batch(opened=time.monotonic())
            for row in rows:
                previous = batch.rows.get(row.finding_id)
                batch.size += row.size - (previous.size if previous else 0)
                batch.rows[row.finding_id] = row  # the same finding twice: the last rendering wins
            ticket = _Ticket(tuple(row.finding_id for row in rows), batch)
            batch.tickets.append(ticket)
            full = len(batch.rows) >= self.max_findings or batch.size >= self.max_bytes
            if full:
                self._take(batch)
        if full:
            self._flush(batch)
        return ticket

    def _take(self, batch: _Batch) -> None:
        """Close ``batch`` to new findings (called under the lock); its taker writes it."""
        batch.taken = True
        if self._batch is batch:
            self._batch = None

    def _wait(self, ticket: _Ticket) -> None:
        """Until the ticket's batch is written; this caller writes it when its time has come."""
        batch = ticket.batch
        with self._cond:
            while True:
                if ticket.done:
                    return
                if batch.taken:
                    self._cond.wait()  # another caller is writing it
                    continue
                remaining = batch.opened + self.max_age_seconds - time.monotonic()
                if remaining <= 0 or len(batch.tickets) >= self.callers:
                    self._take(batch)
                    break
                self._cond.wait(remaining)
        self._flush(batch)

    # -- flush ----------------------------------------------------------------------------
    def _flush(self, batch: _Batch) -> None:
        """Write a taken batch, one object per partition (and per size limit); answer its tickets."""
        results: dict[str, tuple[Outcome, str | None]] = {}
        try:
            for rows in self._objects(batch):
                result = self._put(rows)
                for row in rows:
                    results[row.finding_id] = result
        except Exception as exc:  # never leave a waiting sender hanging
            log.exception("securitylake: writing a batch failed")
            for finding_id in batch.rows:
                results.setdefault(finding_id, (Outcome.RETRYABLE, f"securitylake: {type(exc).__name__}: {exc}"))
        finally:
            with self._cond:
                for ticket in batch.tickets:
                    ticket.results = {i: results.get(i, (Outcome.RETRYABLE, "securitylake: not written")) for i in ticket.ids}
                    ticket.done = True
                self._cond.notify_all()

    def _objects(self, batch: _Batch) -> list[list[_Row]]:
        """Rows grouped by partition, in time order, cut at ``max_findings`` rows / ``max_bytes``.

        Deterministic for a given set of findings, so a repeated batch gets the same keys.
        """
        by_partition: dict[Partition, list[_Row]] = {}
        for row in batch.rows.values():
            by_partition.setdefault(row.partition, []).append(row)
        out: list[list[_Row]] = []
        for partition in sorted(by_partition):
            rows = sorted(by_partition[partition], key=lambda r: (r.document["time"], r.finding_id))
            chunk: list[_Row] = []
            size = 0
            for row in rows:
                if chunk and (len(chunk) >= self.max_findings or size + row.size > self.max_bytes):
                    out.append(chunk)
                    chunk, size = [], 0
                chunk.append(row)
                size += row.size
            if chunk:
                out.append(chunk)
        return out

    def _put(self, rows: list[_Row]) -> tuple[Outcome, str | None]:
        key = object_key(self.root, rows[0].partition, [row.finding_id for row in rows])
        try:
            body = parquet_bytes([row.document for row in rows])
        except (pa.ArrowException, ValueError, TypeError) as exc:  # checked rows should always convert
            return Outcome.PERMANENT, f"securitylake: cannot write Parquet: {exc}"
        try:
            self.client().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=CONTENT_TYPE)
        except (ClientError, BotoCoreError, DeliveryError) as exc:
            log.warning("securitylake: s3://%s/%s not written (%d findings): %s", self.bucket, key, len(rows), exc)
            return Outcome.RETRYABLE, f"securitylake s3://{self.bucket}/{key}: {exc}"
        log.info("securitylake: wrote s3://%s/%s", self.bucket, key, extra={"findings": len(rows), "bytes": len(body)})
        return Outcome.OK, None

    # -- lifecycle ------------------------------------------------------------------------
    def check(self) -> None:
        """The client can be made: the provider role is assumed when one is configured.

        No bucket call: the provider role may write under its prefix and do nothing else.
        """
        try:
            self.client()
        except (ClientError, BotoCoreError) as exc:
            raise DeliveryError(f"securitylake: {exc}") from exc

    def close(self) -> None:
        """Write the open batch (shutdown) and refuse later sends (they answer RETRYABLE)."""
        with self._cond:
            self._closed = True
            batch = self._batch
            if batch is not None:
                self._take(batch)
        if batch is not None:
            self._flush(batch)


class _ClientFactory:
    """S3 clients in the lake's Region, on the provider role when ``role_arn`` is set.

    The role's credentials are cached and refreshed before they expire (the Security Hub
    sink's :class:`SessionCache`), so each flush gets a client with live credentials.
    """

    def __init__(self, settings: SecurityLakeSettings) -> None:
        self.settings = settings
        self.config = Config(retries={"max_attempts": settings.max_attempts, "mode": "standard"})
        self._cache: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        from connector.sinks.securityhub.credentials import SessionCache

        with self._lock:
            if self._cache is None:
                self._cache = SessionCache(role_arn_template=self.settings.role_arn,
                                           external_id=self.settings.external_id)
        region = self.settings.region or self._cache.base.region_name or "us-east-1"
        account = "provider" if self.settings.role_arn else None
        return self._cache.client("s3", region=region, account=account, config=self.config)
