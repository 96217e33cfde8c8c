"""Client-side token buckets, so the connector throttles itself before AWS has to.

Security Hub allows BatchImportFindings 10 requests per second with a burst of 30, per account
and Region (https://docs.aws.amazon.com/securityhub/1.0/APIReference/Welcome.html, "rate
limits"). Every replica and every thread that imports into one account+region shares that
quota, so the sink takes a token before *every* request, retries included: a throttled request
still counted against the quota.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second. Over any window of
``t`` seconds it therefore lets through at most ``burst + rate * t`` requests — the bound the
integration tests check against the fault proxy's record of what it saw.

The clock and the sleep are injectable so the arithmetic is tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class TokenBucket:
    """A thread-safe token bucket; ``acquire`` blocks until a token is free.

    A ``rate`` of 0 disables limiting (every ``acquire`` returns at once): useful for local
    emulators, never the default.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.rate = float(rate)
        # A burst below one would never let a request through.
        self.burst = max(1, int(burst))
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._stamp = now

    def try_acquire(self) -> float:
        """Take a token if one is there and return 0.0; else return the seconds until one is."""
        if self.rate == 0:
            return 0.0
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until a token is taken (True), or until ``stop`` is set (False)."""
        while True:
            wait = self.try_acquire()
            if wait <= 0.0:
                return True
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                self._sleep(wait)

    @property
    def available(self) -> float:
        """Tokens available now (for metrics and tests)."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens


class RateLimiter:
    """One ``TokenBucket`` per key (e.g. ``(account, region)``), created on first use."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[Hashable, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, key: Hashable) -> TokenBucket:
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = TokenBucket(self.rate, self.burst, clock=self._clock, sleep=self._sleep)
                self._buckets[key] = found
            return found

    def acquire(self, key: Hashable, stop: threading.Event | None = None) -> bool:
        return self.bucket(key).acquire(stop)
