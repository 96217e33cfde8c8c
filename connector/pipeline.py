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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from connector import metrics
from connector.deadletters import DeadLetterSink
from connector.envelopes import DecodeFailure, Decoder, Skipped
from connector.errors import ConnectorError, DeliveryError
from connector.factory import FindingFactory
from connector.model import DeadLetter, DeliveryResult, Outcome, RenderedFinding, SourceMessage
from connector.select import Selector
from connector.sinks import Sink

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


@dataclass(slots=True)
class _Work:
    """What one source message produced, and what is still owed for it."""

    message: SourceMessage
    rendered: list[RenderedFinding]
    letters: list[DeadLetter]
    skipped: int
    failed: bool = False
    #: A streamed message's findings and letters already delivered part by part (not held).
    done_ids: set[str] = field(default_factory=set)
    done_letters: int = 0


#: Findings (and letters) per part of a streamed file: memory is bounded by this, not the file.
STREAM_PART_FINDINGS = 500


def _undecodable(message: SourceMessage, exc: Exception) -> DeadLetter:
    """The letter of a whole message that decoding failed on in an unforeseen way."""
    reason = f"unexpected {type(exc).__name__} while decoding: {exc}"
    return DeadLetter("decode", reason, message.id, message.body, message.source, type(exc).__name__)


def _key(item: RenderedFinding) -> tuple[str, str]:
    return item.finding_id, item.format


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
        self.correlator = correlator
        # Ids every sink already holds: drops repeats early. Correctness never depends on it.
        self._delivered: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=dedupe_max_entries, ttl=dedupe_ttl_seconds)
        # The runner hands batches to several worker threads; the cache is not thread-safe.
        self._cache_lock = threading.Lock()

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
        items = self.decoder.decode_stream(chunks(), origin=origin) if chunks else self.decoder.decode(body, origin=origin)
        for item in items:
            if isinstance(item, Skipped):
                skipped += item.count
                continue
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
    def _deliver(self, sink: Sink, items: list[RenderedFinding]) -> dict[tuple[str, str], DeliveryResult]:
        if not items:
            return {}
        try:
            results = sink.send(items)
        except Exception as exc:  # a sink that raises has delivered nothing we can count on
            log.warning("sink %s failed a batch of %d: %s", sink.name, len(items), exc)
            return {_key(i): DeliveryResult(i.finding_id, Outcome.RETRYABLE, str(exc)) for i in items}
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
        for key, result in out.items():
            if result.outcome is Outcome.OK:
                metrics.FINDINGS_OUT.labels(sink.name, key[1]).inc()
        return out

    def handle(self, messages: Sequence[SourceMessage]) -> BatchResult:
        """One source batch through every stage; the answer says which messages may be acknowledged.

        The phases are separate methods so that each step of the failure contract can be read
        (and tested) on its own: map, drop repeats, deliver, decide letters, store letters,
        remember what every sink holds.
        """
        started = time.monotonic()
        work = self._map_messages([m for m in messages if m.chunks is None])
        self._deliver_work(work)
        work += [self._handle_streamed(m) for m in messages if m.chunks is not None]
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        ok = [w for w in work if not w.failed]
        return BatchResult(
            done=tuple(w.message for w in ok),
            retry=tuple(w.message for w in work if w.failed),
            findings=len({i.finding_id for w in ok for i in w.rendered} | {i for w in ok for i in w.done_ids}),
            dead_lettered=sum(len(w.letters) + w.done_letters for w in ok),
            skipped=sum(w.skipped for w in work),
        )

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
        retry = self.correlator.process([i.finding for w in ok for i in w.rendered], self._deliver_everywhere,
                                        self.dead_letters.put)
        for w in ok:
            if any(i.finding_id in retry for i in w.rendered):
                w.failed = True

    def _handle_streamed(self, message: SourceMessage) -> _Work:
        """A large file: each part is delivered (and its letters stored) before the next is read.

        The message is acknowledged only if every part went through; a part that fails stops it
        for redelivery, and the parts before it are not sent again (finding ids are stable and
        the delivered-ids cache knows them).
        """
        metrics.RECORDS_IN.labels(message.source or "unknown").inc()
        total = _Work(message, [], [], 0)
        try:
            for rendered, letters, skipped in self.map_parts(
                message.body, f"{message.source}:{message.id}", message.chunks, part_size=STREAM_PART_FINDINGS
            ):
                part = _Work(message, rendered, letters, skipped)
                self._deliver_work([part])
                total.skipped += skipped
                if part.failed:
                    total.failed = True
                    break
                total.done_ids.update(i.finding_id for i in rendered)
                total.done_letters += len(part.letters)
        except ConnectorError as exc:
            log.warning("message %s kept for redelivery: %s", message.id, exc)
            total.failed = True
        except Exception as exc:
            part = _Work(message, [], [_undecodable(message, exc)], 0)
            self._store_letters([part])
            total.failed = part.failed
            total.done_letters += len(part.letters)
        return total

    # -- the phases of ``handle`` --------------------------------------------------------------
    def _map_messages(self, messages: Sequence[SourceMessage]) -> list[_Work]:
        """Decode and map each message on its own, so one message's trouble is its own.

        A ``ConnectorError`` that escapes ``map_records`` is retryable trouble of the whole
        message (S3 unreachable while following a notice): the message is kept for redelivery.
        """
        work: list[_Work] = []
        for message in messages:
            metrics.RECORDS_IN.labels(message.source or "unknown").inc()
            try:
                rendered, letters, skipped = self.map_records(message.body, f"{message.source}:{message.id}")
            except ConnectorError as exc:
                log.warning("message %s kept for redelivery: %s", message.id, exc)
                work.append(_Work(message, [], [], 0, failed=True))
                continue
            except Exception as exc:
                work.append(_Work(message, [], [_undecodable(message, exc)], 0))
                continue
            work.append(_Work(message, rendered, letters, skipped))
        return work

    def _not_yet_delivered(self, work: list[_Work]) -> dict[tuple[str, str], RenderedFinding]:
        """Each (finding, format) once, minus those every sink already holds (the TTL cache).

        Two messages of a batch can carry the same event (SNS fan-out, a redelivery racing
        its original); sending it once is enough, and the cache spares the sinks repeats.
        """
        unique: dict[tuple[str, str], RenderedFinding] = {}
        for w in work:
            for item in w.rendered:
                unique.setdefault(_key(item), item)
        with self._cache_lock:
            pending = {k: v for k, v in unique.items() if k not in self._delivered}
        metrics.DUPLICATES.inc(len(unique) - len(pending))
        return pending

    def _deliver_everywhere(
        self, pending: dict[tuple[str, str], RenderedFinding]
    ) -> tuple[set[tuple[str, str]], dict[tuple[str, str], list[str]]]:
        """Every sink gets the renderings it takes; returns what must be retried and what was refused.

        A key refused by one sink and failed retryably by another is a retry, not a dead letter:
        it is dead-lettered once the last attempt is final.
        """
        failed_keys: set[tuple[str, str]] = set()
        permanent: dict[tuple[str, str], list[str]] = {}
        for sink in self.sinks:
            batch = [item for item in pending.values() if item.format in sink.formats]
            for key, result in self._deliver(sink, batch).items():
                if result.outcome is Outcome.RETRYABLE:
                    failed_keys.add(key)
                elif result.outcome is Outcome.PERMANENT:
                    permanent.setdefault(key, []).append(f"{sink.name}: {result.error}")
        return failed_keys, permanent

    @staticmethod
    def _assign_letters(
        work: list[_Work],
        pending: dict[tuple[str, str], RenderedFinding],
        failed_keys: set[tuple[str, str]],
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
            if w.failed or keys & failed_keys:
                w.failed = True
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
            return
        for letter in letters:
            metrics.DEAD_LETTERED.labels(letter.stage).inc()
            log.warning("dead-lettered %s at %s: %s", letter.record_id, letter.stage, letter.reason)

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
                        self._delivered[_key(item)] = True

    def check(self) -> None:
        for sink in self.sinks:
            sink.check()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
