"""The sink circuit breaker: open on a failed delivery, probe on the backoff schedule, close on success."""

from __future__ import annotations

from connector.retry import Backoff
from connector.sinks.breaker import BreakerState, SinkBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_open_probe_half_open_closed() -> None:
    clock, healthy, checks = Clock(), [False], [0]

    def check() -> None:
        checks[0] += 1
        if not healthy[0]:
            raise ConnectionError("refused")

    breaker = SinkBreaker("opensearch", check, backoff=Backoff(base_seconds=4, cap_seconds=4, max_attempts=99), clock=clock)
    assert breaker.state is BreakerState.CLOSED and breaker.probe() and checks[0] == 0
    breaker.failed("ConnectionError: refused")
    assert breaker.state is BreakerState.OPEN and breaker.last_error.startswith("ConnectionError")
    clock.now += 4.01  # past the longest possible jittered wait
    assert not breaker.probe() and checks[0] == 1, "a failing probe keeps it open"
    assert not breaker.probe() and checks[0] == 1, "and the next probe waits for the schedule"
    healthy[0] = True
    clock.now += 4.01
    assert breaker.probe() and breaker.state is BreakerState.HALF_OPEN
    breaker.failed("still failing")  # the trial delivery decides
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.01
    assert breaker.probe()
    breaker.delivered()
    assert breaker.state is BreakerState.CLOSED and breaker.last_error == ""
