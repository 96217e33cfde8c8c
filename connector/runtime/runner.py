"""The run loop: receive → handle → acknowledge or release, with bounded in-flight work.

At most ``max_in_flight`` batches are being handled at once; while that many are in flight the
loop stops receiving (backpressure: a sink that is down holds messages in the source, not in
memory). A heartbeat keeps the source's leases alive (SQS visibility) for batches still in
flight. Batches are handled in arrival order per worker; sources whose order matters (Kinesis)
set ``ordered = True`` and get a single worker.

Acknowledging is off the loop for sources that say they may be (``settle_off_loop = True``: SQS,
whose order does not matter and whose calls are thread-safe): a settler thread acknowledges or
releases each finished batch, in the order they finish, while the loop goes on receiving (a
gathered batch of 100 SQS messages is ten delete calls; inline, they held the loop and with it
the pollers, whose buffer filled). Any other source, and the batch observer with it (replay's
state is an SQLite connection of the loop's thread), is settled by the loop itself.

``stop`` ends receiving; in-flight batches finish and are acknowledged before ``run`` returns.
With ``once=True`` the loop ends when the source reports ``drained``.

With ``hold_on_outage`` (the long-running service) a batch that failed because a sink is down
(its breaker is open, ``Pipeline.sinks_down``) is *held*, not released: the loop stops
receiving, keeps the held messages' leases alive, and hands them to a worker again once every
sink's probe passes (``Pipeline.ready_to_retry``). An outage of any length then spends no SQS
receive, so the queue's redrive policy never moves a message that is only waiting for a sink.
A batch held longer than ``max_hold_seconds`` (SQS keeps a message invisible 12 h at most) or
still held at stop is released.

``run`` returns 0 only when every message received was acknowledged in the end: a message
released (sink down) or whose acknowledgement failed counts against it until a later delivery of
the same message (same id) is acknowledged. A failing ``receive``, ``ack`` or ``release`` never
ends the loop: it is logged and retried, and the worst it causes is a redelivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from connector import metrics
from connector.model import SourceMessage
from connector.pipeline import BatchResult, Pipeline
from connector.retry import Backoff
from connector.sources.base import Source

log = logging.getLogger(__name__)

#: Pause between failed receives; ``once`` gives up after ``ONCE_RECEIVE_FAILURES`` in a row.
RECEIVE_BACKOFF = Backoff(base_seconds=0.5, cap_seconds=15.0, max_attempts=5)
ONCE_RECEIVE_FAILURES = 5

#: Told about every settled batch (``None`` when it failed unexpectedly): replay's progress.
BatchObserver = Callable[[Sequence[SourceMessage], "BatchResult | None"], None]


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
        observer: BatchObserver | None = None,
        stop_on_release: bool | None = None,
        gather_messages: int = 1,
        gather_seconds: float = 0.0,
        hold_on_outage: bool = False,
        max_hold_seconds: float = 6 * 3600.0,
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.once = once
        self.stop = stop or threading.Event()
        ordered = bool(getattr(source, "ordered", False))
        self.max_in_flight = 1 if ordered else max(1, max_in_flight)
        self.heartbeat_seconds = heartbeat_seconds
        self.gather_messages = gather_messages
        self.gather_seconds = gather_seconds
        self.observer = observer
        self.hold_on_outage = hold_on_outage and not once
        self.max_hold_seconds = max_hold_seconds
        #: Batches waiting for a sink to come back, with when they were first held.
        self._held: list[tuple[list[SourceMessage], float]] = []
        self.held_total = 0  # messages ever held (for logs and tests)
        #: ``once`` stops at the first release by default (a sink is down: exit, retry later);
        #: replay goes on to the other files and reports the released ones.
        self.stop_on_release = once if stop_on_release is None else stop_on_release
        self.last_loop_at = time.monotonic()
        self.draining = False
        self.received = 0
        self.acked = 0
        self.released = 0
        #: Ids of messages released or not acknowledged, and not acknowledged since.
        self.outstanding: set[str] = set()
        self.failed = False  # the source could not be read (``once`` gave up)
        self._in_flight: dict[Future[BatchResult], list[SourceMessage]] = {}
        self._lock = threading.Lock()
        #: Settles finished batches off the loop (sources with ``settle_off_loop``); made by ``run``.
        self._settler: ThreadPoolExecutor | None = None
        self._settling: dict[int, list[SourceMessage]] = {}
        self._off_loop = bool(getattr(source, "settle_off_loop", False)) and not ordered
        self._receive_failures = 0
        self._done = threading.Event()

    # -- one batch -------------------------------------------------------------------------
    def _ack(self, messages: Sequence[SourceMessage]) -> None:
        try:
            self.source.ack(messages)
        except Exception as exc:
            log.error("could not acknowledge %d delivered messages; they will be redelivered: %s", len(messages), exc)
            self.outstanding.update(m.id for m in messages)
            if self.once:
                self.stop.set()
            return
        self.acked += len(messages)
        self.outstanding.difference_update(m.id for m in messages)

    def _release(self, messages: Sequence[SourceMessage]) -> None:
        self.released += len(messages)
        self.outstanding.update(m.id for m in messages)
        try:
            self.source.release(messages)
        except Exception as exc:
            log.warning("could not release %d messages; they return when their lease expires: %s", len(messages), exc)
        if self.stop_on_release:
            # A one-shot run does not wait for a sink to come back: it stops, exits non-zero,
            # and the messages stay in the source for the next run.
            self.stop.set()

    def _settle(self, batch: Sequence[SourceMessage], result: BatchResult | None, error: BaseException | None) -> None:
        if error is not None or result is None:
            log.error("batch of %d failed unexpectedly; releasing it: %s", len(batch), error, exc_info=error)
            self._release(batch)
            self._observe(batch, None)
            return
        if result.done:
            self._ack(result.done)
        if result.retry:
            down = self.pipeline.sinks_down() if self.hold_on_outage else []
            if down:
                self._hold(list(result.retry), down)
            else:
                self._release(result.retry)
        log.info(
            "batch settled",
            extra={"acked": len(result.done), "released": len(result.retry), "findings": result.findings,
                   "dead_lettered": result.dead_lettered, "skipped": result.skipped},
        )
        self._observe(batch, result)

    def _handle(self, batch: list[SourceMessage]) -> BatchResult:
        if self.hold_on_outage:
            return self.pipeline.handle(batch, outage_held=True)
        return self.pipeline.handle(batch)

    def _hold(self, messages: list[SourceMessage], down: Sequence[str]) -> None:
        since = min((m.received_at for m in messages if m.received_at), default=0.0)
        with self._lock:
            self._held.append((messages, time.monotonic()))
        self.held_total += len(messages)
        metrics.HELD.set(sum(len(b) for b, _ in self._held))
        log.warning("sink down (%s): holding %d messages until it answers again", ", ".join(down), len(messages),
                    extra={"held_since_receive_s": round(time.time() - since, 1) if since else None})

    def _resume_held(self, pool: ThreadPoolExecutor) -> None:
        """Once every sink may be tried, held batches go to a worker again (too old ones are released)."""
        with self._lock:
            held, self._held = self._held, []
        now = time.monotonic()
        for batch, held_at in held:
            if now - held_at > self.max_hold_seconds:
                log.error("releasing %d messages held for %.0f s (max_hold_seconds)", len(batch), now - held_at)
                self._release(batch)
                continue
            future = pool.submit(self._handle, batch)
            with self._lock:
                self._in_flight[future] = batch
        metrics.HELD.set(0)

    def _release_held(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for batch, _ in held:
            self._release(batch)
        metrics.HELD.set(0)

    def _observe(self, batch: Sequence[SourceMessage], result: BatchResult | None) -> None:
        if self.observer is None:
            return
        try:
            self.observer(batch, result)
        except Exception as exc:
            log.warning("batch observer failed: %s", exc)

    def _heartbeat(self) -> None:
        # Called even with nothing in flight: a source may hold received messages that wait for
        # a free worker (SQS keeps those alive too).
        while not self._done.wait(self.heartbeat_seconds):
            with self._lock:
                messages = [m for batch in self._in_flight.values() for m in batch]
                messages += [m for batch in self._settling.values() for m in batch]
                messages += [m for batch, _ in self._held for m in batch]
            try:
                self.source.keep_alive(messages)
            except Exception as exc:  # a missed heartbeat risks a duplicate, never a loss
                log.warning("keep_alive failed: %s", exc)

    def _receive(self) -> list[SourceMessage]:
        """The next batch; a failing source is logged and retried after a pause, never fatal."""
        try:
            batch = self.source.receive()
        except Exception as exc:
            self._receive_failures += 1
            log.error("receive from %s failed (%d in a row): %s", self.source.name, self._receive_failures, exc)
            if self.once and self._receive_failures >= ONCE_RECEIVE_FAILURES:
                self.failed = True
                self.stop.set()
            else:
                self.stop.wait(RECEIVE_BACKOFF.delay(min(self._receive_failures, 6)))
            return []
        self._receive_failures = 0
        return self._gather(batch)

    def _gather(self, batch: list[SourceMessage]) -> list[SourceMessage]:
        """More receives into the same batch while messages keep coming, up to
        ``gather_messages`` and ``gather_seconds``: one SQS receive holds at most 10 messages,
        and a burst sent to Security Hub 10 findings a request is bound by the request quota
        (10/s), not by the 100 findings a request can carry. An empty or failing receive ends
        the gathering; what was gathered is handled at once."""
        if not batch or len(batch) >= self.gather_messages or self.gather_seconds <= 0:
            return batch
        deadline = time.monotonic() + self.gather_seconds
        while len(batch) < self.gather_messages and time.monotonic() < deadline and not self.stop.is_set():
            try:
                more = self.source.receive()
            except Exception as exc:
                log.warning("receive while gathering failed; handling the %d gathered: %s", len(batch), exc)
                break
            if not more:
                break
            batch += more
        return batch

    def _collect(self, block: bool) -> None:
        with self._lock:
            futures = list(self._in_flight)
        for future in futures:
            if block or future.done():
                error = None
                result = None
                try:
                    result = future.result()
                except BaseException as exc:
                    error = exc
                with self._lock:
                    batch = self._in_flight.pop(future)
                if self._settler is not None:
                    with self._lock:
                        self._settling[id(batch)] = batch  # kept alive by the heartbeat until settled
                    self._settler.submit(self._settle_off_loop, batch, result, error)  # one thread: in order
                else:
                    self._settle(batch, result, error)
        metrics.IN_FLIGHT.set(sum(len(b) for b in self._in_flight.values()))

    def _settle_off_loop(self, batch: list[SourceMessage], result: BatchResult | None,
                         error: BaseException | None) -> None:
        try:
            self._settle(batch, result, error)
        except Exception as exc:  # never lose the settler: the messages return after their lease
            log.error("settling a batch of %d failed; its messages will be redelivered: %s", len(batch), exc)
            self.outstanding.update(m.id for m in batch)
        finally:
            with self._lock:
                self._settling.pop(id(batch), None)

    def _settled(self) -> None:
        """Wait until every finished batch is acknowledged or released (the settler is idle)."""
        settler, self._settler = self._settler, None
        if settler is not None:
            settler.shutdown(wait=True)

    # -- loop ----------------------------------------------------------------------------
    def run(self) -> int:
        """0 when everything received was acknowledged (delivered or dead-lettered)."""
        self._done = threading.Event()
        self._receive_failures = 0
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="batch")
        if self._off_loop:
            self._settler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="settle")
        try:
            while not self.stop.is_set():
                self.last_loop_at = time.monotonic()
                self._collect(block=False)
                if len(self._in_flight) >= self.max_in_flight:
                    time.sleep(0.05)
                    continue
                if self.hold_on_outage and (self._held or self.pipeline.sinks_down()):
                    # Circuit open: receive nothing new until every sink answers its probe.
                    if self.pipeline.ready_to_retry():
                        self._resume_held(pool)
                    else:
                        self.stop.wait(0.2)
                    continue
                batch = self._receive()
                if not batch:
                    if self.once and self.source.drained:
                        if not self._in_flight:
                            break
                        time.sleep(0.01)  # a finite source is empty: wait for the last batches
                    continue
                self.received += len(batch)
                future = pool.submit(self._handle, batch)
                with self._lock:
                    self._in_flight[future] = batch
            self.draining = True
            self._collect(block=True)
            self._settled()
            self._release_held()
        finally:
            self.draining = True
            pool.shutdown(wait=True)
            self._settled()
            self._done.set()
            heartbeat.join(timeout=5)
        log.info("runner stopped", extra={"received": self.received, "acked": self.acked, "released": self.released,
                                          "outstanding": len(self.outstanding)})
        return 0 if not self.outstanding and not self.failed else 1
