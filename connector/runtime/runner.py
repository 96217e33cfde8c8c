"""The run loop: receive → handle → acknowledge or release, with bounded in-flight work.

At most ``max_in_flight`` batches are being handled at once; while that many are in flight the
loop stops receiving (backpressure: a sink that is down holds messages in the source, not in
memory). A heartbeat keeps the source's leases alive (SQS visibility) for batches still in
flight. Batches are handled in arrival order per worker; sources whose order matters (Kinesis)
set ``ordered = True`` and get a single worker.

``stop`` ends receiving; in-flight batches finish and are acknowledged before ``run`` returns.
With ``once=True`` the loop ends when the source reports ``drained``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Sequence

from connector.model import SourceMessage
from connector.pipeline import BatchResult, Pipeline
from connector.runtime import metrics
from connector.sources.base import Source

log = logging.getLogger(__name__)


class Runner:
    def __init__(
        self,
        source: Source,
        pipeline: Pipeline,
        *,
        once: bool = False,
        stop: threading.Event | None = None,
        max_in_flight: int = 4,
        heartbeat_seconds: float = 20.0,
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.once = once
        self.stop = stop or threading.Event()
        ordered = bool(getattr(source, "ordered", False))
        self.max_in_flight = 1 if ordered else max(1, max_in_flight)
        self.heartbeat_seconds = heartbeat_seconds
        self.last_loop_at = time.monotonic()
        self.draining = False
        self.received = 0
        self.acked = 0
        self.released = 0
        self._in_flight: dict[Future[BatchResult], list[SourceMessage]] = {}
        self._lock = threading.Lock()

    # -- one batch -------------------------------------------------------------------------
    def _settle(self, batch: Sequence[SourceMessage], result: BatchResult | None, error: BaseException | None) -> None:
        if error is not None or result is None:
            log.error("batch of %d failed unexpectedly; releasing it: %s", len(batch), error)
            self.source.release(batch)
            self.released += len(batch)
            if self.once:
                self.stop.set()
            return
        if result.done:
            self.source.ack(result.done)
            self.acked += len(result.done)
        if result.retry:
            self.source.release(result.retry)
            self.released += len(result.retry)
            if self.once:
                # A one-shot run does not wait for a sink to come back: it stops, exits non-zero,
                # and the messages stay in the source for the next run.
                self.stop.set()
        log.info(
            "batch settled",
            extra={"acked": len(result.done), "released": len(result.retry), "findings": result.findings,
                   "dead_lettered": result.dead_lettered, "skipped": result.skipped},
        )

    def _heartbeat(self) -> None:
        while not self._done.wait(self.heartbeat_seconds):
            with self._lock:
                messages = [m for batch in self._in_flight.values() for m in batch]
            if messages:
                try:
                    self.source.keep_alive(messages)
                except Exception as exc:  # a missed heartbeat risks a duplicate, never a loss
                    log.warning("keep_alive failed: %s", exc)

    def _collect(self, block: bool) -> None:
        with self._lock:
            futures = list(self._in_flight)
        for future in futures:
            if block or future.done():
                error = None
                result = None
                try:
                    result = future.result()
                except BaseException as exc:  # noqa: BLE001 - reported and released
                    error = exc
                with self._lock:
                    batch = self._in_flight.pop(future)
                self._settle(batch, result, error)
        metrics.IN_FLIGHT.set(sum(len(b) for b in self._in_flight.values()))

    # -- loop ----------------------------------------------------------------------------
    def run(self) -> int:
        """0 when everything received was acknowledged (delivered or dead-lettered)."""
        self._done = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="batch")
        try:
            while not self.stop.is_set():
                self.last_loop_at = time.monotonic()
                self._collect(block=False)
                if len(self._in_flight) >= self.max_in_flight:
                    time.sleep(0.05)
                    continue
                batch = self.source.receive()
                if not batch:
                    if self.once and not self._in_flight and self.source.drained:
                        break
                    continue
                self.received += len(batch)
                future = pool.submit(self.pipeline.handle, batch)
                with self._lock:
                    self._in_flight[future] = batch
            self.draining = True
            self._collect(block=True)
        finally:
            self.draining = True
            pool.shutdown(wait=True)
            self._done.set()
            heartbeat.join(timeout=5)
        log.info("runner stopped", extra={"received": self.received, "acked": self.acked, "released": self.released})
        return 0 if self.released == 0 else 1
