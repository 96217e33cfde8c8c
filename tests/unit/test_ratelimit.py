"""The token bucket's arithmetic, with an injected clock so nothing here waits."""

from __future__ import annotations

import threading

import pytest

from connector.sinks.securityhub.ratelimit import RateLimiter, TokenBucket


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it (and records the sleeps)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_burst_is_available_at_once_then_the_rate_applies() -> None:
    clock = FakeClock()
    bucket = TokenBucket(8, 30, clock=clock, sleep=clock.sleep)
    for _ in range(30):
        assert bucket.try_acquire() == 0.0
    # The 31st must wait one token's worth: 1/8 s (binary fractions keep the float math exact).
    assert bucket.try_acquire() == pytest.approx(0.125)
    clock.now += 0.0625
    assert bucket.try_acquire() == pytest.approx(0.0625)
    clock.now += 0.0625
    assert bucket.try_acquire() == 0.0


def test_tokens_never_exceed_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 5, clock=clock, sleep=clock.sleep)
    clock.now += 3600
    assert bucket.available == pytest.approx(5)
    taken = sum(1 for _ in range(20) if bucket.try_acquire() == 0.0)
    assert taken == 5


def test_acquire_sleeps_exactly_enough_and_bounds_any_window() -> None:
    """N acquisitions take at least (N - burst) / rate seconds of (fake) time."""
    clock = FakeClock()
    bucket = TokenBucket(4, 3, clock=clock, sleep=clock.sleep)
    start = clock.now
    stamps = []
    for _ in range(23):
        assert bucket.acquire()
        stamps.append(clock.now)
    assert clock.now - start == pytest.approx((23 - 3) / 4)
    # Over any window of length w, at most burst + rate * w acquisitions happen.
    for i, first in enumerate(stamps):
        for j in range(i, len(stamps)):
            window = stamps[j] - first
            assert j - i + 1 <= 3 + 4 * window + 1e-9


def test_acquire_returns_false_when_stopped() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.001, 1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire()
    stop = threading.Event()
    stop.set()
    assert bucket.acquire(stop) is False


def test_rate_zero_disables_limiting() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0, 1, clock=clock, sleep=clock.sleep)
    assert all(bucket.try_acquire() == 0.0 for _ in range(1000))
    assert clock.sleeps == []


def test_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(-1, 1)


def test_limiter_keeps_one_bucket_per_key() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 2, clock=clock, sleep=clock.sleep)
    a = limiter.bucket(("111122223333", "eu-west-1"))
    assert limiter.bucket(("111122223333", "eu-west-1")) is a
    b = limiter.bucket(("444455556666", "eu-west-1"))
    assert b is not a
    # Draining one account's bucket leaves the other's full.
    assert a.try_acquire() == 0.0 and a.try_acquire() == 0.0
    assert a.try_acquire() > 0
    assert b.try_acquire() == 0.0


def test_threads_share_the_bucket_without_over_issuing() -> None:
    clock = FakeClock()
    lock = threading.Lock()
    bucket = TokenBucket(1e-6, 50, clock=clock, sleep=clock.sleep)
    granted: list[int] = []

    def grab() -> None:
        for _ in range(40):
            if bucket.try_acquire() == 0.0:
                with lock:
                    granted.append(1)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 50
