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
from collections.abc import Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from connector import metrics
from connector.deadletters import DeadLetterSink
from connector.envelopes import DecodeFailure, Decoder
from connector.errors import ConnectorError, DeliveryError
from connector.factory import FindingFactory
from connector.model import DeadLetter, DeliveryResult, Outcome, RenderedFinding, SourceMessage
from connector.select import Selector
from connector.sinks import Sink

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
    ) -> None:
        self.factory = factory
        self.decoder = decoder
        self.selector = selector
        self.sinks = list(sinks)
        self.dead_letters = dead_letters
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
        for item in self.decoder.decode(body, origin=origin):
            if isinstance(item, DecodeFailure):
                letters.append(
                    DeadLetter("decode", str(item.error), item.origin, item.body, origin, type(item.error).__name__)
                )
                continue
            try:
                if not self.selector.matches(item.record):
                    skipped += 1
                    continue
                rendered.extend(self.factory.render(item.record, origin=item.origin))
                metrics.EVENTS_SELECTED.labels(str(item.record.get("eventName"))).inc()
            except ConnectorError as exc:
                raw = json.dumps(item.record, default=str).encode()
                letters.append(DeadLetter(exc.stage, str(exc), exc.record_id or item.origin, raw, origin, type(exc).__name__))
            except Exception as exc:
                raw = json.dumps(item.record, default=str).encode()
                reason = f"unexpected {type(exc).__name__} while mapping: {exc}"
                letters.append(DeadLetter("map", reason, item.origin, raw, origin, type(exc).__name__))
        metrics.EVENTS_SKIPPED.inc(skipped)
        return rendered, letters, skipped

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
        work = self._map_messages(messages)
        pending = self._not_yet_delivered(work)
        failed_keys, permanent = self._deliver_everywhere(pending)
        self._assign_letters(work, pending, failed_keys, permanent)
        self._store_letters(work)
        self._remember_delivered(work, permanent)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        return BatchResult(
            done=tuple(w.message for w in work if not w.failed),
            retry=tuple(w.message for w in work if w.failed),
            findings=len({i.finding_id for w in work if not w.failed for i in w.rendered}),
            dead_lettered=sum(len(w.letters) for w in work if not w.failed),
            skipped=sum(w.skipped for w in work),
        )

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
                reason = f"unexpected {type(exc).__name__} while decoding: {exc}"
                letter = DeadLetter("decode", reason, message.id, message.body, message.source, type(exc).__name__)
                work.append(_Work(message, [], [letter], 0))
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
