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


def test_trouble_names_an_open_breaker_and_a_sink_that_refuses_every_document() -> None:
    """/readyz asks ``trouble``: a sink that answers its health check but rejects every write
    (OpenSearch 429 es_rejected_execution_exception) delivers nothing, so it is not ready."""
    from connector.sinks.breaker import REFUSING_SECONDS

    clock, healthy = Clock(), [True]

    def check() -> None:
        if not healthy[0]:
            raise ConnectionError("refused")

    breaker = SinkBreaker("opensearch", check, clock=clock)
    assert breaker.trouble() is None
    assert not breaker.suspect("429: es_rejected_execution_exception"), "its check passes: not down"
    assert breaker.state is BreakerState.CLOSED
    assert breaker.trouble() == "refusing every document: 429: es_rejected_execution_exception"
    breaker.delivered()
    assert breaker.trouble() is None, "a delivery got through"
    breaker.suspect("429: es_rejected_execution_exception")
    clock.now += REFUSING_SECONDS + 1
    assert breaker.trouble() is None, "an old refusal with nothing tried since no longer counts"
    healthy[0] = False
    assert breaker.suspect("no answer from OpenSearch")
    assert (breaker.trouble() or "").startswith("circuit open: no answer from OpenSearch")


def test_read_health_fails_after_persistent_failures_and_recovers_on_a_working_read() -> None:
    from connector.sources.reads import PERSISTENT_FAILURES, STALE_SECONDS, ReadHealth

    clock = Clock()
    reads = ReadHealth(clock=clock)
    for _ in range(PERSISTENT_FAILURES - 1):
        reads.failed("reading s3://trail/a failed, will retry: SlowDown")
    assert reads.trouble() is None, "one slow read is not an outage"
    reads.failed("reading s3://trail/b failed, will retry: SlowDown")
    assert "SlowDown" in (reads.trouble() or "")
    reads.worked()
    assert reads.trouble() is None
    for _ in range(PERSISTENT_FAILURES):
        reads.failed("SlowDown")
    clock.now += STALE_SECONDS + 1
    assert reads.trouble() is None
