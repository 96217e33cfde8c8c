"""Wires the stages: decode → select → dedupe → map/render/validate → deliver → ack decision.

The failure contract (STYLE "five habits", 5): every record ends delivered, skipped (counted) or
dead-lettered with its stage and reason. A source message is acknowledged (``BatchResult.done``)
only when every finding from it is held by every enabled sink or dead-lettered; otherwise it is
released (``BatchResult.retry``) and its source redelivers it — at-least-once, and because finding
ids are deterministic, redelivery overwrites instead of duplicating.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from connector import metrics
from connector.deadletters import DeadLetterSink
from connector.envelopes import DecodeFailure, Decoder, Skipped
from connector.errors import ConnectorError, DeliveryError, SourceError
from connector.factory import FindingFactory
from connector.model import DeadLetter, DeliveryResult, Outcome, RenderedFinding, SourceMessage
from connector.resolve.resolver import is_resolved
from connector.select import Selector
from connector.sinks import Sink
from connector.sinks.breaker import BreakerState, SinkBreaker
from connector.sources.reads import ReadHealth

if TYPE_CHECKING:
    from connector.correlate import Correlator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchResult:
    done: tuple[SourceMessage, ...]
    retry: tuple[SourceMessage, ...]
    findings: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    #: Why each message in ``retry`` was not delivered (message id → reason), for the logs.
    reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Work:
    """What one source message produced, and what is still owed for it."""

    message: SourceMessage
    rendered: list[RenderedFinding]
    letters: list[DeadLetter]
    skipped: int
    failed: bool = False
    reason: str = ""  # why it failed, when it did
    #: A streamed message's findings and letters already delivered part by part (not held).
    done_ids: set[str] = field(default_factory=set)
    done_letters: int = 0


#: Findings (and letters) per part of a streamed file or a large batch: memory is bounded by
#: this, not the file. 400 renderings of two formats are 200 findings a sink: two full Security
#: Hub requests (100 a request), where 500 made three, the last half empty (120 requests for
#: 10,000 findings instead of 100, at a quota of 10 a second).
STREAM_PART_FINDINGS = 400
#: Threads that deliver parts while the batch that made them goes on mapping (one part of each
#: batch in delivery at a time): the run loop may have several batches in flight.
DELIVERY_THREADS = 8


def _undecodable(message: SourceMessage, exc: Exception) -> DeadLetter:
    """The letter of a whole message that decoding failed on in an unforeseen way."""
    reason = f"unexpected {type(exc).__name__} while decoding: {exc}"
    return DeadLetter("decode", reason, message.id, message.body, message.source, type(exc).__name__)


def _key(item: RenderedFinding) -> tuple[str, str]:
    return item.finding_id, item.format


def _seen_key(item: RenderedFinding) -> tuple[str, str]:
    """The dedupe key: a finding's resolved update (connector/resolve) is not a repeat of it."""
    return item.finding_id, item.format + ("/resolved" if is_resolved(item) else "")


def _observe_delivery(sink: str, items: list[RenderedFinding], out: Mapping[tuple[str, str], DeliveryResult]) -> None:
    """Outcomes, delivered count and event-time lag (once per finding) of one sink's batch (its
    up/down gauge is its breaker's)."""
    now = time.time()
    lagged: set[str] = set()
    for item in items:
        outcome = out[_key(item)].outcome
        metrics.SINK_OUTCOMES.labels(sink, outcome.value).inc()
        if outcome is Outcome.OK:
            metrics.FINDINGS_OUT.labels(sink, item.format).inc()
            if item.finding_id not in lagged:
                lagged.add(item.finding_id)
                metrics.DELIVERY_LAG_SECONDS.labels(sink).observe(max(0.0, now - item.finding.event.event_time.timestamp()))


class Pipeline:
    def __init__(
        self,
        *,
        factory: FindingFactory,
        decoder: Decoder,
        selector: Selector,
        sinks: Sequence[Sink],
        dead_letters: DeadLetterSink,
        dedupe_ttl_seconds: int = 900,
        dedupe_max_entries: int = 100_000,
        correlator: Correlator | None = None,
    ) -> None:
        self.factory = factory
        self.decoder = decoder
        self.selector = selector
        self.sinks = list(sinks)
        self.dead_letters = dead_letters
        for sink in self.sinks:
            metrics.declare_sink(sink.name)
        self.correlator = correlator
        # Ids every sink already holds: drops repeats early. Correctness never depends on it.
        self._delivered: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=dedupe_max_entries, ttl=dedupe_ttl_seconds)
        # (sink, finding, format) a sink already holds, though another sink failed it: a retry
        # sends it only where it is missing (Security Hub bills every re-import).
        self._held_by: TTLCache[tuple[int, str, str], bool] = TTLCache(maxsize=dedupe_max_entries, ttl=dedupe_ttl_seconds)
        # The runner hands batches to several worker threads; the caches are not thread-safe.
        self._cache_lock = threading.Lock()
        #: One breaker per sink, in ``sinks`` order (two sinks may share a name in tests).
        self.breakers = [SinkBreaker(sink.name, sink.check) for sink in self.sinks]
        #: The S3 reads messages need (notices), for ``/readyz``.
        self.reads = ReadHealth()
        self._delivery = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="deliver")

    # -- map -------------------------------------------------------------------------------
    def map_records(self, body: bytes, origin: str) -> tuple[list[RenderedFinding], list[DeadLetter], int]:
        """Decode one message body into rendered findings, dead letters and a count of skipped records."""
        rendered: list[RenderedFinding] = []
        letters: list[DeadLetter] = []
        skipped = 0
        for part in self.map_parts(body, origin):
            rendered += part[0]
            letters += part[1]
            skipped += part[2]
        return rendered, letters, skipped

    def map_parts(
        self, body: bytes, origin: str, chunks: Callable[[], Iterable[bytes]] | None = None, *, part_size: int = 0
    ) -> Iterator[tuple[list[RenderedFinding], list[DeadLetter], int]]:
        """``map_records`` in parts of about ``part_size`` findings and letters (0: one part), so
        that a large streamed file is delivered as it is read instead of held whole."""
        rendered: list[RenderedFinding] = []
        letters: list[DeadLetter] = []
        skipped = 0
        # The pipeline's origins are "<source>:<message id>"; any other (bench, tests) counts as unknown,
        # never as a label per message.
        source, _, rest = origin.partition(":")
        records = metrics.RECORDS_IN.labels(source if rest and source else "unknown")
        items = self.decoder.decode_stream(chunks(), origin=origin) if chunks else self.decoder.decode(body, origin=origin)
        read_s3 = False
        for item in items:
            records.inc(item.count if isinstance(item, Skipped) else 1)
            if isinstance(item, Skipped):
                skipped += item.count
                continue
            if not read_s3 and ">s3://" in item.origin:  # an object a notice named was read
                read_s3 = True
                self.reads.worked()
            if isinstance(item, DecodeFailure):
                letters.append(
                    DeadLetter("decode", str(item.error), item.origin, item.body, origin, type(item.error).__name__)
                )
            else:
                skipped += self._map_one(item.record, item.origin, origin, rendered, letters)
            if part_size and len(rendered) + len(letters) >= part_size:
                metrics.EVENTS_SKIPPED.inc(skipped)
                yield rendered, letters, skipped
                rendered, letters, skipped = [], [], 0
        metrics.EVENTS_SKIPPED.inc(skipped)
        yield rendered, letters, skipped

    def _map_one(
        self, record: Mapping[str, Any], where: str, origin: str, rendered: list[RenderedFinding], letters: list[DeadLetter]
    ) -> int:
        """Select and render one record into ``rendered`` (or a letter); 1 if it was skipped."""
        try:
            if not self.selector.matches(record):
                return 1
            rendered.extend(self.factory.render(record, origin=where))
            metrics.EVENTS_SELECTED.labels(str(record.get("eventName"))).inc()
        except ConnectorError as exc:
            raw = json.dumps(record, default=str).encode()
            letters.append(DeadLetter(exc.stage, str(exc), exc.record_id or where, raw, origin, type(exc).__name__))
        except Exception as exc:
            raw = json.dumps(record, default=str).encode()
            reason = f"unexpected {type(exc).__name__} while mapping: {exc}"
            letters.append(DeadLetter("map", reason, where, raw, origin, type(exc).__name__))
        return 0

    # -- deliver ---------------------------------------------------------------------------
    def _deliver(self, index: int, items: list[RenderedFinding]) -> dict[tuple[str, str], DeliveryResult]:
        sink = self.sinks[index]
        if not items:
            return {}
        try:
            results = sink.send(items)
        except Exception as exc:  # a sink that raises has delivered nothing we can count on
            log.warning("sink %s failed a batch of %d: %s", sink.name, len(items), exc)
            failed = {_key(i): DeliveryResult(i.finding_id, Outcome.RETRYABLE, str(exc)) for i in items}
            self._judge(index, failed)
            _observe_delivery(sink.name, items, failed)
            return failed
        by_id: dict[str, list[RenderedFinding]] = {}
        for item in items:
            by_id.setdefault(item.finding_id, []).append(item)
        severity = {Outcome.OK: 0, Outcome.PERMANENT: 1, Outcome.RETRYABLE: 2}
        out: dict[tuple[str, str], DeliveryResult] = {}
        for result in results:
            for item in by_id.get(result.finding_id, []):
                if result.format is not None and result.format != item.format:
                    continue
                known = out.get(_key(item))
                # Two answers for one document: the worse one counts (never let OK hide a failure).
                if known is None or severity[result.outcome] > severity[known.outcome]:
                    out[_key(item)] = result
        # A result a sink forgot to give is a failure to deliver, never a success.
        for item in items:
            out.setdefault(_key(item), DeliveryResult(item.finding_id, Outcome.RETRYABLE, f"{sink.name} gave no result"))
        _observe_delivery(sink.name, items, out)
        self._judge(index, out)
        return out

    def _judge(self, index: int, results: Mapping[tuple[str, str], DeliveryResult]) -> None:
        """Tell the sink's breaker: every document failed retryably → suspect (down if its check
        fails too); anything else → up."""
        breaker = self.breakers[index]
        if not results:
            return
        errors = [r.error for r in results.values() if r.outcome is Outcome.RETRYABLE]
        if len(errors) == len(results):
            breaker.suspect(errors[0] or "retryable failure")
        else:
            breaker.delivered()

    def handle(self, messages: Sequence[SourceMessage], *, outage_held: bool = False) -> BatchResult:
        """One source batch through every stage; the answer says which messages may be acknowledged.

        The phases are separate methods so that each step of the failure contract can be read
        (and tested) on its own: map, drop repeats, deliver, decide letters, store letters,
        remember what every sink holds. ``outage_held``: the caller holds batches that fail
        while a sink is down (instead of releasing them), so those need no last-receive letter.
        """
        started = time.monotonic()
        work = self._map_and_deliver(messages)
        self._give_up_last_attempts(work, outage_held=outage_held)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        ok = [w for w in work if not w.failed]
        return BatchResult(
            done=tuple(w.message for w in ok),
            retry=tuple(w.message for w in work if w.failed),
            findings=len({i for w in ok for i in w.done_ids}),
            dead_lettered=sum(w.done_letters for w in ok),
            skipped=sum(w.skipped for w in work),
            reasons={w.message.id: w.reason or "not delivered" for w in work if w.failed},
        )

    def _give_up_last_attempts(self, work: list[_Work], *, outage_held: bool) -> None:
        """A message on its queue's last receive is dead-lettered by us, with the reason.

        Otherwise the queue's redrive policy would move it on the next receive, and the message
        would reach the dead-letter queue with no word of why. Not while a sink is down if the
        run loop holds such batches (it does not release them, so they spend no receive).
        """
        if outage_held and self.sinks_down():
            return
        last = [w for w in work if w.failed and w.message.max_receives and w.message.attempt >= w.message.max_receives]
        for w in last:
            reason = f"not delivered in {w.message.attempt} receives (the queue's limit): {w.reason or 'unknown'}"
            w.failed, w.rendered = False, []
            w.letters = [DeadLetter("deliver", reason, w.message.id, w.message.body, w.message.source, "GaveUp")]
        self._store_letters(last)
        for w in last:
            if not w.failed:
                w.done_letters += len(w.letters)

    # -- sink health, for the run loop's backpressure ---------------------------------------
    def sinks_down(self) -> list[str]:
        """Sinks whose breaker is open: their last delivery failed for every document."""
        return [b.name for b in self.breakers if b.state is BreakerState.OPEN]

    def ready_to_retry(self) -> bool:
        """Every sink may be tried again (an open breaker's probe passed, or none is open)."""
        return all([b.probe() for b in self.breakers])

    def _deliver_work(self, work: list[_Work]) -> None:
        pending = self._not_yet_delivered(work)
        failed_keys, permanent = self._deliver_everywhere(pending)
        self._assign_letters(work, pending, failed_keys, permanent)
        self._store_letters(work)
        self._remember_delivered(work, permanent)
        if self.correlator is not None:
            self._correlate(work)

    def _correlate(self, work: list[_Work]) -> None:
        """Teardown findings of the delivered members (``connector.correlate``), delivered like any
        other; a message whose teardown was not delivered is kept for redelivery."""
        assert self.correlator is not None
        ok = [w for w in work if not w.failed]
        retry = self.correlator.process([i.finding for w in ok for i in w.rendered], self._deliver_updates,
                                        self.dead_letters.put)
        for w in ok:
            if any(i.finding_id in retry for i in w.rendered):
                w.failed = True

    # -- the phases of ``handle`` --------------------------------------------------------------
    def _map_and_deliver(self, messages: Sequence[SourceMessage]) -> list[_Work]:
        """Decode and map each message on its own (one message's trouble is its own), delivering
        in parts of about ``STREAM_PART_FINDINGS`` findings and letters gathered across messages,
        each part while the next is mapped.

        So memory is bounded by the part, not by the message: a CloudWatch Logs payload of
        100,000 target events, or a large streamed log file, is delivered as it is mapped. Small
        messages still share one delivery (Security Hub takes 100 findings a request). A message
        is acknowledged only if every part of it went through; a part that fails stops reading
        it (it will be redelivered, and the parts already delivered are not sent again: finding
        ids are stable and the delivered-ids caches know them). A ``ConnectorError`` escaping
        the decoder is retryable trouble of the whole message (S3 unreachable while following a
        notice): the message is kept for redelivery.
        """
        totals: list[_Work] = []
        parts: list[tuple[_Work, _Work]] = []  # (the message's total, a part not yet delivered)
        size = 0
        delivering: Future[None] | None = None
        try:
            for message in messages:
                metrics.MESSAGES_IN.labels(message.source or "unknown").inc()
                total = _Work(message, [], [], 0)
                totals.append(total)
                try:
                    for rendered, letters, skipped in self.map_parts(
                        message.body, f"{message.source}:{message.id}", message.chunks, part_size=STREAM_PART_FINDINGS
                    ):
                        total.skipped += skipped
                        parts.append((total, _Work(message, rendered, letters, skipped)))
                        size += len(rendered) + len(letters)
                        if size >= STREAM_PART_FINDINGS:
                            # Delivered while the next part is mapped (a single-shard Kinesis batch
                            # of 1,000 records was mapped, then delivered: Security Hub's quota and
                            # the mapping time added up instead of overlapping). One part at a time.
                            if delivering is not None:
                                delivering.result()
                            delivering = self._delivery.submit(self._deliver_parts, parts)
                            parts, size = [], 0
                        if total.failed:  # a part delivered before this one failed
                            break
                except ConnectorError as exc:
                    log.warning("message %s kept for redelivery: %s", message.id, exc)
                    if isinstance(exc, SourceError):
                        self.reads.failed(str(exc))
                    total.failed, total.reason = True, str(exc)
                except Exception as exc:
                    parts.append((total, _Work(message, [], [_undecodable(message, exc)], 0)))
        finally:
            if delivering is not None:
                wait([delivering])
        if delivering is not None:
            delivering.result()  # its failure is the batch's, as when it was delivered in line
        self._deliver_parts(parts)
        return totals

    def _deliver_parts(self, parts: list[tuple[_Work, _Work]]) -> None:
        """Deliver the parts, then account each to its message: delivered ids and letters, or the failure."""
        if not parts:
            return
        self._deliver_work([part for _, part in parts])
        for total, part in parts:
            if part.failed:
                if not total.failed:
                    total.failed, total.reason = True, part.reason
                continue
            total.done_ids.update(i.finding_id for i in part.rendered)
            total.done_letters += len(part.letters)

    def _not_yet_delivered(self, work: list[_Work]) -> dict[tuple[str, str], RenderedFinding]:
        """Each (finding, format) once, minus those every sink already holds (the TTL cache).

        Two messages of a batch can carry the same event (SNS fan-out, a redelivery racing
        its original); sending it once is enough, and the cache spares the sinks repeats.
        """
        unique: dict[tuple[str, str], RenderedFinding] = {}
        for w in work:
            for item in w.rendered:
                if is_resolved(item) or _key(item) not in unique:  # the resolved version wins
                    unique[_key(item)] = item
        with self._cache_lock:
            pending = {k: v for k, v in unique.items() if _seen_key(v) not in self._delivered}
        metrics.DUPLICATES.inc(len(unique) - len(pending))
        return pending

    def _deliver_updates(
        self, pending: dict[tuple[str, str], RenderedFinding]
    ) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], list[str]]]:
        """A new version of a finding every sink may already hold under its id (a teardown finding
        with more members): sent to every sink, and not remembered as held (the next version must
        go out too)."""
        return self._deliver_everywhere(pending, versioned=True)

    def _deliver_everywhere(
        self, pending: dict[tuple[str, str], RenderedFinding], *, versioned: bool = False
    ) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], list[str]]]:
        """Every sink gets the renderings it takes (minus those it already holds from an earlier
        attempt); returns what must be retried (with why) and what was refused.

        A key refused by one sink and failed retryably by another is a retry, not a dead letter:
        it is dead-lettered once the last attempt is final.
        """
        failed_keys: dict[tuple[str, str], str] = {}
        permanent: dict[tuple[str, str], list[str]] = {}
        for index, sink in enumerate(self.sinks):
            with self._cache_lock:
                batch = [item for item in pending.values() if item.format in sink.formats
                         and (versioned or (index, *_seen_key(item)) not in self._held_by)]
            if not batch:
                continue
            for key, result in self._deliver(index, batch).items():
                if result.outcome is Outcome.RETRYABLE:
                    failed_keys.setdefault(key, f"{sink.name}: {result.error}")
                elif result.outcome is Outcome.PERMANENT:
                    permanent.setdefault(key, []).append(f"{sink.name}: {result.error}")
                elif not versioned:
                    with self._cache_lock:
                        self._held_by[(index, *_seen_key(pending[key]))] = True
        return failed_keys, permanent

    @staticmethod
    def _assign_letters(
        work: list[_Work],
        pending: dict[tuple[str, str], RenderedFinding],
        failed_keys: Mapping[tuple[str, str], str],
        permanent: dict[tuple[str, str], list[str]],
    ) -> None:
        """Mark messages with a retryable finding failed; give the rest their refused findings as letters."""
        finding_letters: dict[tuple[str, str], DeadLetter] = {}
        for key, reasons in permanent.items():
            if key in failed_keys:
                continue
            item = pending[key]
            finding_letters[key] = DeadLetter(
                "deliver", "; ".join(reasons), item.finding_id,
                json.dumps(item.document, default=str).encode(), item.finding.event.origin, "DeliveryRejected",
            )
        for w in work:
            keys = {_key(i) for i in w.rendered}
            missing = sorted(keys & failed_keys.keys())
            if w.failed or missing:
                w.failed = True
                w.reason = w.reason or failed_keys[missing[0]]
                continue
            w.letters.extend(finding_letters[k] for k in sorted(keys) if k in finding_letters)

    def _store_letters(self, work: list[_Work]) -> None:
        """Dead letters of the messages about to be acknowledged, stored before the acknowledgement.

        If the destination fails, the messages that owe a letter are not acknowledged (their
        records would otherwise be lost); messages owing none proceed.
        """
        owners = [w for w in work if not w.failed and w.letters]
        letters = [letter for w in owners for letter in w.letters]
        if not letters:
            return
        try:
            self.dead_letters.put(letters)
        except (DeliveryError, OSError) as exc:
            log.error("dead-letter destination failed; %d messages kept for redelivery: %s", len(owners), exc)
            for w in owners:
                w.failed = True
                w.reason = f"dead-letter destination: {exc}"
            return
        for letter in letters:
            metrics.DEAD_LETTERED.labels(letter.stage).inc()
            log.warning("dead-lettered %s at %s: %s", letter.record_id, letter.stage, letter.reason,
                        extra={"repeat_key": f"dead-lettered {letter.stage} {letter.error_type}"})

    def _remember_delivered(self, work: list[_Work], permanent: dict[tuple[str, str], list[str]]) -> None:
        """Log each delivered finding once and cache it, so a redelivery does not re-send it."""
        for w in work:
            if w.failed:
                continue
            for finding_id in sorted({i.finding_id for i in w.rendered}):
                log.info("finding delivered", extra={"finding_id": finding_id, "record_id": w.message.id})
            with self._cache_lock:
                for item in w.rendered:
                    if _key(item) not in permanent:
                        self._delivered[_seen_key(item)] = True

    def check(self) -> None:
        for sink in self.sinks:
            sink.check()

    def close(self) -> None:
        self._delivery.shutdown(wait=True)
        for sink in self.sinks:
            sink.close()
