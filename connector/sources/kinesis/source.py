"""Kinesis Data Streams source: every shard, checkpoints in DynamoDB, resharding, no silent skips.

One replica owns the stream in this mode (scale-out is the Lambda mode). Batches come from one
shard at a time and are handled in order (``ordered = True`` makes the runner use one worker);
``ack`` moves the shard's checkpoint over the delivered prefix; ``release`` rewinds the shard to
its checkpoint so the records are read again. A child shard is not read before its parents
have been read to their end. An expired iterator is recreated from the checkpoint — never
silently from LATEST or from the trim horizon; a shard never checkpointed is read again from the
very position it was first read from (TRIM_HORIZON stays TRIM_HORIZON, AT_TIMESTAMP keeps its
time, LATEST becomes AT_TIMESTAMP of the moment it was first read), so a release or an expiry
before the first checkpoint skips nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from connector import metrics
from connector.config import Settings
from connector.errors import SourceError
from connector.model import SourceMessage
from connector.retry import Backoff, retry_call
from connector.sources.base import register
from connector.sources.kinesis.checkpoints import CheckpointStore

log = logging.getLogger(__name__)
RELIST_SECONDS = 30.0
#: Shards read ahead at once (one page each).
PREFETCH_THREADS = 4
THROTTLED = ("ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException")


@dataclass
class ShardState:
    shard_id: str
    parents: tuple[str, ...]
    checkpoint: str | None = None
    finished: bool = False
    iterator: str | None = None
    closed: bool = False  # read to the end: NextShardIterator null, or past EndingSequenceNumber
    ending_sequence: str | None = None  # set by ListShards once the shard is closed (reshard)
    at_tip: bool = False
    #: GetShardIterator arguments of the first read, repeatable (never LATEST), while no checkpoint.
    start: dict[str, Any] | None = None
    last_read: str | None = None  # sequence number of the last record received from the shard
    in_flight: list[str] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    #: The next page, asked for while the last one is handled: (the iterator it reads, its call).
    prefetched: tuple[str, Future[Any]] | None = None


@register("kinesis")
class KinesisSource:
    name: ClassVar[str] = "kinesis"
    ordered: ClassVar[bool] = True
    iam_actions: ClassVar[tuple[str, ...]] = (
        "kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:DescribeStreamSummary",
        *CheckpointStore.iam_actions,
    )

    def __init__(
        self,
        stream_name: str,
        checkpoints: CheckpointStore,
        *,
        start_position: str = "TRIM_HORIZON",
        start_timestamp: str = "",
        max_records: int = 1000,
        idle_sleep_seconds: float = 1.0,
        client: Any = None,
        read_ahead: bool = True,
    ) -> None:
        if not stream_name:
            raise SourceError("setting kinesis.stream_name (CONNECTOR_KINESIS_STREAM_NAME) is required")
        self.stream = stream_name
        self.checkpoints = checkpoints
        self.start_position = start_position
        self.start_timestamp = datetime.fromisoformat(start_timestamp.replace("Z", "+00:00")) if start_timestamp else None
        if start_position == "AT_TIMESTAMP" and self.start_timestamp is None:
            raise SourceError("kinesis.start_position AT_TIMESTAMP needs kinesis.start_timestamp")
        self.max_records = max_records
        self.idle_sleep = idle_sleep_seconds
        self.client = client or boto3.client("kinesis", config=Config(retries={"max_attempts": 2, "mode": "standard"}))
        self.shards: dict[str, ShardState] = {}
        self._listed_at = 0.0
        self._cursor = 0
        self._backoff = Backoff(base_seconds=0.2, cap_seconds=10, max_attempts=8)
        self._loaded = False
        #: Reads the next page of a shard while its last one is handled (``_read_ahead``).
        self._prefetch = ThreadPoolExecutor(max_workers=PREFETCH_THREADS, thread_name_prefix="kinesis-prefetch")
        self.read_ahead = read_ahead

    @classmethod
    def from_settings(cls, settings: Settings) -> KinesisSource:
        k = settings.kinesis
        return cls(
            k.stream_name,
            CheckpointStore(k.checkpoint_table, k.stream_name),
            start_position=k.start_position,
            start_timestamp=k.start_timestamp,
            max_records=k.max_records,
            idle_sleep_seconds=k.idle_sleep_seconds,
        )

    # -- shards --------------------------------------------------------------------------
    def _list_shards(self) -> None:
        if not self._loaded:
            for shard_id, cp in self.checkpoints.load().items():
                self.shards.setdefault(shard_id, ShardState(shard_id, ()))
                self.shards[shard_id].checkpoint = cp.sequence_number
                self.shards[shard_id].finished = cp.finished
            self._loaded = True
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            response = self._call(self.client.list_shards, **kwargs)
            for shard in response["Shards"]:
                parents = tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)
                state = self.shards.setdefault(shard["ShardId"], ShardState(shard["ShardId"], parents))
                state.parents = parents
                state.ending_sequence = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
            token = response.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        self._listed_at = time.monotonic()

    def _ready(self, state: ShardState) -> bool:
        """Not finished, and every parent read to its end (or gone from the stream)."""
        if state.finished:
            return False
        return all(self.shards[p].finished if p in self.shards else True for p in state.parents)

    def _call(self, method: Any, **kwargs: Any) -> Any:
        def throttled(exc: BaseException) -> bool:
            hit = isinstance(exc, ClientError) and exc.response["Error"]["Code"] in THROTTLED
            if hit:
                metrics.THROTTLES.labels("kinesis").inc()
            return hit

        return retry_call(lambda: method(**kwargs), backoff=self._backoff, retryable=throttled, component="kinesis")

    def _start(self, state: ShardState) -> dict[str, Any]:
        """Where a shard without a checkpoint is read from; the same answer every time it is asked."""
        if state.start is None:
            if state.parents and any(p in self.shards for p in state.parents):
                state.start = {"ShardIteratorType": "TRIM_HORIZON"}  # a child is read from its start
            elif self.start_position == "AT_TIMESTAMP":
                state.start = {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": self.start_timestamp}
            elif self.start_position == "LATEST":
                # LATEST means "now" and cannot be asked again: a second read must start at the same
                # point, so it is pinned as the time of the first read (taken before the call, so
                # the re-read can only include more, never less).
                state.start = {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": datetime.now().astimezone()}
                return {"ShardIteratorType": "LATEST"}
            else:
                state.start = {"ShardIteratorType": self.start_position}
        return state.start

    def _iterator(self, state: ShardState) -> str | None:
        """A fresh iterator at the checkpoint (or the shard's start); None if the shard is gone."""
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": state.shard_id}
        if state.checkpoint:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=state.checkpoint)
        else:
            kwargs.update(self._start(state))
        try:
            return str(self._call(self.client.get_shard_iterator, **kwargs)["ShardIterator"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            self._gone(state)
            return None

    def _gone(self, state: ShardState) -> None:
        """The shard aged out of the stream (past retention): nothing left to read in it."""
        log.warning("shard %s is no longer in stream %s; marking it finished", state.shard_id, self.stream)
        state.in_flight.clear()
        state.closed = True
        self._finish_if_done(state)

    # -- contract ------------------------------------------------------------------------
    def receive(self) -> list[SourceMessage]:
        if not self.shards or time.monotonic() - self._listed_at > RELIST_SECONDS:
            self._list_shards()
        ready = [s for s in self.shards.values() if self._ready(s) and not s.in_flight]
        if not ready:
            time.sleep(self.idle_sleep)
            return []
        state = ready[self._cursor % len(ready)]
        self._cursor += 1
        if state.closed:
            self._finish_if_done(state)
            return []
        if state.iterator is None:
            state.iterator = self._iterator(state)
            if state.iterator is None:
                return []
        try:
            response = self._get_records(state)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExpiredIteratorException":
                log.info("iterator of %s expired; resuming from its checkpoint", state.shard_id)
                state.iterator = None
                return []
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                self._gone(state)
                return []
            raise
        metrics.KINESIS_ITERATOR_AGE.labels(self.stream, state.shard_id).set(response.get("MillisBehindLatest", 0) / 1000)
        state.iterator = response.get("NextShardIterator")
        records = response.get("Records", [])
        state.at_tip = not records and response.get("MillisBehindLatest", 0) == 0
        if records:
            state.last_read = records[-1]["SequenceNumber"]
        if state.iterator is None or (not records and self._past_end(state)):
            # A closed shard (after a split or merge) with nothing more to give is finished.
            state.closed = True
            if not records:
                self._finish_if_done(state)
        if not records:
            if len(ready) == 1:
                time.sleep(self.idle_sleep / 4)
            return []
        now = time.time()
        batch = [
            SourceMessage(
                id=f"{state.shard_id}:{r['SequenceNumber']}",
                body=r["Data"],
                ack_token=(state.shard_id, r["SequenceNumber"]),
                received_at=now,
                source="kinesis",
            )
            for r in records
        ]
        state.in_flight = [r["SequenceNumber"] for r in records]
        state.acked = set()
        self._read_ahead(state)
        return batch

    def _get_records(self, state: ShardState) -> Any:
        """The page at the shard's iterator: the one read ahead for it, or read now. A page read
        ahead from another iterator (the shard was rewound since) is dropped unread."""
        ahead, state.prefetched = state.prefetched, None
        if ahead is not None and ahead[0] == state.iterator:
            return ahead[1].result()  # its errors are the call's, handled as if it were made now
        return self._page(state.iterator)

    def _page(self, iterator: str | None) -> Any:
        return self._call(self.client.get_records, ShardIterator=iterator, Limit=self.max_records)

    def _read_ahead(self, state: ShardState) -> None:
        """Ask for the shard's next page now, while this one is handled. A shard's batches are
        handled one at a time, each settled before the next is read, so without it the sinks
        waited for every GetRecords call and the call for the sinks (a 10,000-record burst took
        1.4x Security Hub's quota minimum). Only the call runs ahead: what it returns is taken
        by ``receive`` after this batch is settled, checkpoints move as before, and a rewind
        (``release``) or an expired iterator drops it. One page per shard, so memory is one
        batch more and the read rate is still one call per batch handled."""
        if not self.read_ahead or state.iterator is None or state.closed:
            return
        state.prefetched = (state.iterator, self._prefetch.submit(self._page, state.iterator))

    @staticmethod
    def _past_end(state: ShardState) -> bool:
        """Read up to the EndingSequenceNumber ListShards gives a closed shard.

        Kinesis ends a closed shard with a null NextShardIterator; an empty page alone proves
        nothing (GetRecords may return empty pages inside a shard). Some emulators never return
        the null iterator, hence this second test, which holds only once the last record read
        (or the checkpoint) has reached the shard's end.
        """
        if state.ending_sequence is None:
            return False
        position = state.last_read or state.checkpoint or "0"
        return int(position) >= int(state.ending_sequence)

    def _finish_if_done(self, state: ShardState) -> None:
        if state.closed and not state.in_flight:
            self.checkpoints.save(state.shard_id, state.checkpoint, finished=True)
            state.finished = True
            self._listed_at = 0.0  # its children may be ready now: list again
            log.info("shard %s read to its end", state.shard_id)

    def ack(self, messages: Sequence[SourceMessage]) -> None:
        touched = set()
        for message in messages:
            shard_id, sequence = message.ack_token
            self.shards[shard_id].acked.add(sequence)
            touched.add(shard_id)
        for shard_id in touched:
            state = self.shards[shard_id]
            advanced = None
            while state.in_flight and state.in_flight[0] in state.acked:
                advanced = state.in_flight.pop(0)
            if advanced is not None:
                self.checkpoints.save(shard_id, advanced)
                state.checkpoint = advanced
            if not state.in_flight:
                state.acked.clear()
                if state.closed:
                    self._finish_if_done(state)
        metrics.ACKED.labels("kinesis").inc(len(messages))

    def release(self, messages: Sequence[SourceMessage]) -> None:
        for shard_id in {m.ack_token[0] for m in messages}:
            state = self.shards[shard_id]
            state.in_flight.clear()
            state.acked.clear()
            state.iterator = None  # read again from the checkpoint
            state.prefetched = None
            state.closed = False
            state.last_read = state.checkpoint
        metrics.RELEASED.labels("kinesis").inc(len(messages))

    def keep_alive(self, messages: Sequence[SourceMessage]) -> None:
        """Kinesis has no lease to extend."""

    @property
    def drained(self) -> bool:
        live = [s for s in self.shards.values() if not s.finished]
        return bool(self.shards) and all((s.at_tip or not self._ready(s)) and not s.in_flight for s in live)

    def check(self) -> None:
        self.client.describe_stream_summary(StreamName=self.stream)

    def close(self) -> None:
        self._prefetch.shutdown(wait=False, cancel_futures=True)
