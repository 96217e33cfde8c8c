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
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from cachetools import TTLCache

from connector.config import Settings
from connector.deadletters import DeadLetterSink, open_dead_letters
from connector.envelopes import DecodeFailure, Decoder
from connector.errors import ConnectorError, DeliveryError
from connector.factory import FindingFactory
from connector.model import DeadLetter, DeliveryResult, Outcome, RenderedFinding, SourceMessage
from connector import metrics
from connector.select import Selector
from connector.sinks import Sink, sink_class

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

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sinks: Sequence[Sink] | None = None,
        dead_letters: DeadLetterSink | None = None,
        s3_client: Any = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> "Pipeline":
        factory = FindingFactory.load(settings.mappings_dir or None, settings.securityhub.product_arn)
        selector = Selector(factory.event_names, since=since, until=until)
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        decoder = Decoder(settings.limits, s3_client=s3_client, prefilter=selector.might_match)
        if sinks is None:
            sinks = [sink_class(name).from_settings(settings) for name in settings.sinks]
        return cls(
            factory=factory,
            decoder=decoder,
            selector=selector,
            sinks=sinks,
            dead_letters=dead_letters
            or open_dead_letters(settings.dead_letter, leave_to_redrive=settings.source == "sqs" and settings.sqs.use_redrive_policy),
            dedupe_ttl_seconds=settings.dedupe_ttl_seconds,
            dedupe_max_entries=settings.dedupe_max_entries,
        )

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
            if not self.selector.matches(item.record):
                skipped += 1
                continue
            try:
                rendered.extend(self.factory.render(item.record, origin=item.origin))
                metrics.EVENTS_SELECTED.labels(str(item.record.get("eventName"))).inc()
            except ConnectorError as exc:
                raw = json.dumps(item.record, default=str).encode()
                letters.append(DeadLetter(exc.stage, str(exc), exc.record_id or item.origin, raw, origin, type(exc).__name__))
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
        started = time.monotonic()
        work: list[_Work] = []
        for message in messages:
            metrics.RECORDS_IN.labels(message.source or "unknown").inc()
            try:
                rendered, letters, skipped = self.map_records(message.body, f"{message.source}:{message.id}")
            except ConnectorError as exc:  # retryable trouble while decoding (e.g. S3 unreachable)
                log.warning("message %s kept for redelivery: %s", message.id, exc)
                work.append(_Work(message, [], [], 0, failed=True))
                continue
            work.append(_Work(message, rendered, letters, skipped))

        unique: dict[tuple[str, str], RenderedFinding] = {}
        for w in work:
            for item in w.rendered:
                unique.setdefault(_key(item), item)
        with self._cache_lock:
            pending = {k: v for k, v in unique.items() if k not in self._delivered}
        metrics.DUPLICATES.inc(len(unique) - len(pending))

        failed_keys: set[tuple[str, str]] = set()
        permanent: dict[tuple[str, str], list[str]] = {}
        for sink in self.sinks:
            batch = [item for item in pending.values() if item.format in sink.formats]
            for key, result in self._deliver(sink, batch).items():
                if result.outcome is Outcome.RETRYABLE:
                    failed_keys.add(key)
                elif result.outcome is Outcome.PERMANENT:
                    permanent.setdefault(key, []).append(f"{sink.name}: {result.error}")

        finding_letters: dict[tuple[str, str], DeadLetter] = {}
        for key, reasons in permanent.items():
            if key in failed_keys:
                continue  # it will be retried anyway; dead-letter once it is final
            item = pending[key]
            finding_letters[key] = DeadLetter(
                "deliver", "; ".join(reasons), item.finding_id,
                json.dumps(item.document, default=str).encode(), item.finding.event.origin, "DeliveryRejected",
            )

        done: list[SourceMessage] = []
        retry: list[SourceMessage] = []
        letters_out: list[DeadLetter] = []
        owners: list[_Work] = []
        for w in work:
            keys = {_key(i) for i in w.rendered}
            if w.failed or keys & failed_keys:
                w.failed = True
                continue
            w.letters.extend(finding_letters[k] for k in sorted(keys) if k in finding_letters)
            letters_out.extend(w.letters)
            owners.append(w)
        if letters_out:
            try:
                self.dead_letters.put(letters_out)
                for letter in letters_out:
                    metrics.DEAD_LETTERED.labels(letter.stage).inc()
                    log.warning("dead-lettered %s at %s: %s", letter.record_id, letter.stage, letter.reason)
            except (DeliveryError, OSError) as exc:
                log.error("dead-letter destination failed; %d messages kept for redelivery: %s", len(owners), exc)
                for w in owners:
                    if w.letters:
                        w.failed = True
        for w in work:
            (retry if w.failed else done).append(w.message)
            if not w.failed:
                for finding_id in sorted({i.finding_id for i in w.rendered}):
                    log.info("finding delivered", extra={"finding_id": finding_id, "record_id": w.message.id})
                with self._cache_lock:
                    for item in w.rendered:
                        if _key(item) not in permanent:
                            self._delivered[_key(item)] = True
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        return BatchResult(
            done=tuple(done),
            retry=tuple(retry),
            findings=len({i.finding_id for w in work if not w.failed for i in w.rendered}),
            dead_lettered=sum(len(w.letters) for w in work if not w.failed),
            skipped=sum(w.skipped for w in work),
        )

    def check(self) -> None:
        for sink in self.sinks:
            sink.check()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
