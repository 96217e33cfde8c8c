"""A circuit breaker per sink: tells the run loop that a sink is down, and when to try it again.

Why: without it, a sink outage turned into a drain. Every failed delivery released its messages,
SQS counted another receive each time they came back, and with the shipped redrive policy
(``maxReceiveCount`` 5) a one-minute OpenSearch outage moved every message to the dead-letter
queue undelivered. With the breaker the run loop stops receiving while a sink is down, holds the
batches it already has (their visibility kept alive), and retries them only when the sink
answers its health check again. So an outage spends no receive count, whatever its length.

States: *closed* (deliveries go through), *open* (the last delivery failed retryably for every
document and the sink's own check failed too: nothing is sent until a probe passes) and, after a passing probe, *half-open*: the
next delivery decides. Probes follow the one backoff schedule of ``connector.retry`` (capped,
jittered), so replicas do not probe a recovering cluster in step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from connector import metrics
from connector.retry import Backoff

#: Between probes of a sink that is down: 1 s, 2 s, 4 s … up to 30 s (jittered).
PROBE_BACKOFF = Backoff(base_seconds=1.0, cap_seconds=30.0, max_attempts=1_000_000)
#: A sink that refused every document of a delivery while answering its check (OpenSearch 429
#: ``es_rejected_execution_exception``, Security Hub throttling every call) counts as refusing
#: for ``/readyz`` until a delivery gets through, or this long after its last refusal.
REFUSING_SECONDS = 60.0


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(slots=True)
class _Status:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # failed deliveries and probes since the last success
    next_probe_at: float = 0.0
    last_error: str = ""
    refused_at: float | None = None  # the last delivery refused whole while the check passed


class SinkBreaker:
    """The health of one sink as its deliveries and probes showed it. Thread-safe."""

    def __init__(self, name: str, check: Callable[[], None], *, backoff: Backoff = PROBE_BACKOFF,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._check = check
        self._backoff = backoff
        self._clock = clock
        self._status = _Status()
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._status.state

    @property
    def last_error(self) -> str:
        with self._lock:
            return self._status.last_error

    def delivered(self) -> None:
        """A delivery got at least one document through: the sink is up."""
        with self._lock:
            self._status = _Status()
        metrics.SINK_UP.labels(self.name).set(1)

    def suspect(self, error: str) -> bool:
        """A delivery failed retryably for every document it carried. Down only if the sink's
        check fails too: a sink that answers its check but refuses these documents (one finding
        failed retryably, a throttled call) is not an outage, and its messages must take the
        normal road (release, and in the end a dead letter), not be held forever."""
        try:
            self._check()
        except Exception as exc:
            self.failed(f"{error} (check: {exc})")
            return True
        with self._lock:
            self._status.refused_at = self._clock()
            self._status.last_error = error
        return False

    def trouble(self) -> str | None:
        """Why delivery to this sink is stopped now, for ``/readyz``; None while it delivers.

        Open: its deliveries and its check failed. Refusing: its last delivery failed for every
        document although the check passed (the cluster answers health but rejects writes, HTTP
        429), and no delivery got through since — for ``REFUSING_SECONDS`` after the refusal.
        """
        with self._lock:
            s = self._status
            if s.state is BreakerState.OPEN:
                return f"circuit open: {s.last_error}"
            if s.refused_at is not None and self._clock() - s.refused_at < REFUSING_SECONDS:
                return f"refusing every document: {s.last_error}"
        return None

    def failed(self, error: str) -> None:
        """The sink is down: open (or re-open, with a longer wait before the next probe)."""
        with self._lock:
            s = self._status
            s.failures += 1
            s.state = BreakerState.OPEN
            s.last_error = error
            s.next_probe_at = self._clock() + self._backoff.delay(s.failures)
        metrics.SINK_UP.labels(self.name).set(0)

    def probe(self) -> bool:
        """True when the sink may be tried: closed or half-open, or open and its probe passes now.

        An open breaker probes at most once per backoff step; a failing probe pushes the next
        one further out. The probe is the sink's own ``check`` (what ``/readyz`` asks).
        """
        with self._lock:
            s = self._status
            if s.state is not BreakerState.OPEN:
                return True
            if self._clock() < s.next_probe_at:
                return False
        try:
            self._check()
        except Exception as exc:
            self.failed(f"probe: {exc}")
            return False
        with self._lock:
            if self._status.state is BreakerState.OPEN:
                self._status.state = BreakerState.HALF_OPEN
        return True
