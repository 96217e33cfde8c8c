"""Bounded retries with capped exponential backoff and full jitter.

Shared by every sink and source so that "how long do we keep trying" has one answer. The AWS
Architecture Blog's "Exponential Backoff And Jitter" explains why full jitter: retries from many
replicas spread out instead of arriving in waves.

Every pause before another attempt goes through ``pause``, which counts it in
``connector_retries_total{component=...}``: a sink that is down shows as a rising retry rate
whichever loop (``retry_call``, or a sink's own loop over the items still pending) is retrying.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from connector import metrics

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    base_seconds: float = 0.2
    cap_seconds: float = 20.0
    max_attempts: int = 8

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Sleep before retry number ``attempt`` (1-based): uniform in [0, min(cap, base*2^attempt)]."""
        ceiling = min(self.cap_seconds, self.base_seconds * (2 ** max(0, attempt - 1)))
        return (rng or random).uniform(0, ceiling)


def pause(backoff: Backoff, attempt: int, component: str, stop: threading.Event | None = None, count: int = 1) -> bool:
    """Count ``count`` retries of ``component`` and sleep before attempt ``attempt + 1``.

    Returns False if ``stop`` was set during the pause (the caller should give up).
    """
    metrics.RETRIES.labels(component).inc(count)
    wait = backoff.delay(attempt)
    if stop is not None:
        return not stop.wait(wait)
    time.sleep(wait)
    return True


def retry_call(
    fn: Callable[[], T],
    *,
    backoff: Backoff,
    retryable: Callable[[BaseException], bool],
    component: str = "other",
    on_retry: Callable[[int, BaseException], None] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-retryable error, or attempts run out.

    Each retry is counted under ``component`` (a sink or source name, e.g. ``securityhub``).
    """
    attempt = 1
    while True:
        try:
            return fn()
        except BaseException as exc:
            if attempt >= backoff.max_attempts or not retryable(exc):
                raise
            if on_retry:
                on_retry(attempt, exc)
            if not pause(backoff, attempt, component, stop):
                raise
            attempt += 1
