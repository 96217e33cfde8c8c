"""Bounded retries with capped exponential backoff and full jitter.

Shared by every sink and source so that "how long do we keep trying" has one answer. The AWS
Architecture Blog's "Exponential Backoff And Jitter" explains why full jitter: retries from many
replicas spread out instead of arriving in waves.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

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


def retry_call(
    fn: Callable[[], T],
    *,
    backoff: Backoff,
    retryable: Callable[[BaseException], bool],
    on_retry: Callable[[int, BaseException], None] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-retryable error, or attempts run out."""
    attempt = 1
    while True:
        try:
            return fn()
        except BaseException as exc:
            if attempt >= backoff.max_attempts or not retryable(exc):
                raise
            if on_retry:
                on_retry(attempt, exc)
            wait = backoff.delay(attempt)
            if stop is not None:
                if stop.wait(wait):
                    raise
            else:
                time.sleep(wait)
            attempt += 1
