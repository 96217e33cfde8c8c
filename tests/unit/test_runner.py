"""The run loop against fakes of its two collaborators' contracts: a Source and a pipeline.

Each fake does only what the contract says (``receive``/``ack``/``release``/``keep_alive``;
``handle(batch) -> BatchResult``), so the runner's decisions — what is acknowledged, what is
outstanding, when to stop, how much is in flight — are checked without AWS and in milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import ClassVar

import pytest

from connector.model import SourceMessage
from connector.pipeline import BatchResult
from connector.retry import Backoff
from connector.runtime import runner as runner_module
from connector.runtime.runner import Runner


def msg(n: int) -> SourceMessage:
    return SourceMessage(id=f"m{n}", body=b"{}", source="sqs")


class ScriptedSource:
    """A finite source: hands out the given batches, then is drained once nothing is held.

    ``requeue`` makes a released batch come back later (as SQS does); ``fail_receives`` makes the
    next n receives raise; ``fail_acks`` makes the next n acks raise.
    """

    name: ClassVar[str] = "scripted"
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, batches: Sequence[Sequence[SourceMessage]], *, requeue: bool = False,
                 fail_receives: int = 0, fail_acks: int = 0) -> None:
        self.pending = [list(b) for b in batches]
        self.requeue = requeue
        self.fail_receives = fail_receives
        self.fail_acks = fail_acks
        self.acked: list[str] = []
        self.released: list[str] = []
        self.kept_alive: list[str] = []
        self.receives = 0
        self.lock = threading.Lock()

    def receive(self) -> list[SourceMessage]:
        with self.lock:
            self.receives += 1
            if self.fail_receives:
                self.fail_receives -= 1
                raise ConnectionError("receive failed")
            return self.pending.pop(0) if self.pending else []

    def ack(self, messages: Sequence[SourceMessage]) -> None:
        with self.lock:
            if self.fail_acks:
                self.fail_acks -= 1
                raise ConnectionError("ack failed")
            self.acked.extend(m.id for m in messages)

    def release(self, messages: Sequence[SourceMessage]) -> None:
        with self.lock:
            self.released.extend(m.id for m in messages)
            if self.requeue:
                self.pending.append(list(messages))

    def keep_alive(self, messages: Sequence[SourceMessage]) -> None:
        with self.lock:
            self.kept_alive.extend(m.id for m in messages)

    @property
    def drained(self) -> bool:
        return not self.pending

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


class ScriptedPipeline:
    """``handle`` asks ``decide`` per message: "ok" → done, "retry" → retry, "raise" → exception."""

    def __init__(self, decide: Callable[[SourceMessage, int], str] = lambda m, n: "ok",
                 gate: threading.Event | None = None) -> None:
        self.decide = decide
        self.gate = gate
        self.seen: dict[str, int] = {}
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def handle(self, batch: Sequence[SourceMessage]) -> BatchResult:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                assert self.gate.wait(10), "test gate never opened"
            done, retry = [], []
            for m in batch:
                with self.lock:
                    self.seen[m.id] = self.seen.get(m.id, 0) + 1
                    count = self.seen[m.id]
                verdict = self.decide(m, count)
                if verdict == "raise":
                    raise RuntimeError(f"unforeseen failure on {m.id}")
                (done if verdict == "ok" else retry).append(m)
            return BatchResult(done=tuple(done), retry=tuple(retry), findings=len(done))
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(autouse=True)
def fast_receive_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "RECEIVE_BACKOFF", Backoff(base_seconds=0.001, cap_seconds=0.002, max_attempts=5))


def run(source: ScriptedSource, pipeline: ScriptedPipeline, **kwargs: object) -> tuple[int, Runner]:
    runner = Runner(source, pipeline, once=True, **kwargs)  # type: ignore[arg-type]
    return runner.run(), runner


def test_everything_delivered_is_acknowledged_and_the_run_succeeds() -> None:
    source = ScriptedSource([[msg(1), msg(2)], [msg(3)]])
    rc, runner = run(source, ScriptedPipeline())
    assert rc == 0
    assert sorted(source.acked) == ["m1", "m2", "m3"] and source.released == []
    assert (runner.received, runner.acked, runner.released) == (3, 3, 0)


def test_a_release_in_a_one_shot_run_stops_it_and_fails_it() -> None:
    source = ScriptedSource([[msg(1), msg(2)], [msg(3)], [msg(4)]])
    rc, runner = run(source, ScriptedPipeline(lambda m, n: "retry" if m.id == "m2" else "ok"), max_in_flight=1)
    assert rc == 1
    assert "m2" in source.released and "m2" not in source.acked
    assert runner.outstanding == {"m2"}
    assert source.pending, "a one-shot run stops at the first release instead of reading on"


def test_a_released_message_acknowledged_on_redelivery_is_no_longer_outstanding() -> None:
    source = ScriptedSource([[msg(1), msg(2)]], requeue=True)
    pipeline = ScriptedPipeline(lambda m, n: "retry" if m.id == "m2" and n == 1 else "ok")
    rc, runner = run(source, pipeline, stop_on_release=False)
    assert rc == 0 and runner.outstanding == set()
    assert source.released == ["m2"] and sorted(source.acked) == ["m1", "m2"]


def test_an_unforeseen_exception_releases_its_batch_and_the_loop_goes_on() -> None:
    source = ScriptedSource([[msg(1)], [msg(2)], [msg(3)]])
    pipeline = ScriptedPipeline(lambda m, n: "raise" if m.id == "m2" else "ok")
    rc, runner = run(source, pipeline, stop_on_release=False, max_in_flight=1)
    assert rc == 1 and runner.outstanding == {"m2"}
    assert source.released == ["m2"] and sorted(source.acked) == ["m1", "m3"]


def test_a_failing_receive_is_retried_not_fatal() -> None:
    source = ScriptedSource([[msg(1)]], fail_receives=3)
    rc, runner = run(source, ScriptedPipeline())
    assert rc == 0 and source.acked == ["m1"] and not runner.failed


def test_a_one_shot_run_gives_up_on_a_source_that_never_answers() -> None:
    source = ScriptedSource([[msg(1)]], fail_receives=1000)
    rc, runner = run(source, ScriptedPipeline())
    assert rc == 1 and runner.failed
    assert source.receives == runner_module.ONCE_RECEIVE_FAILURES


def test_a_failed_acknowledgement_leaves_the_messages_outstanding() -> None:
    source = ScriptedSource([[msg(1)], [msg(2)]], fail_acks=1)
    rc, runner = run(source, ScriptedPipeline(), max_in_flight=1)
    assert rc == 1 and "m1" in runner.outstanding and "m1" not in source.acked


def test_no_more_batches_are_received_than_may_be_in_flight() -> None:
    gate = threading.Event()
    source = ScriptedSource([[msg(i)] for i in range(6)])
    pipeline = ScriptedPipeline(gate=gate)
    runner = Runner(source, pipeline, once=True, max_in_flight=2)  # type: ignore[arg-type]
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        deadline = threading.Event()
        for _ in range(200):
            if pipeline.active == 2:
                break
            deadline.wait(0.01)
        deadline.wait(0.2)  # give the loop every chance to over-receive
        assert pipeline.active == 2 and runner.received == 2, "backpressure: two batches in flight, no third received"
    finally:
        gate.set()
        thread.join(10)
    assert sorted(source.acked) == [f"m{i}" for i in range(6)] and pipeline.max_active == 2


def test_an_ordered_source_gets_one_worker() -> None:
    class OrderedSource(ScriptedSource):
        ordered: ClassVar[bool] = True

    source = OrderedSource([[msg(i)] for i in range(5)])
    pipeline = ScriptedPipeline()
    rc, runner = run(source, pipeline, max_in_flight=8)
    assert rc == 0 and runner.max_in_flight == 1 and pipeline.max_active == 1
    assert source.acked == [f"m{i}" for i in range(5)], "acknowledged in arrival order"


def test_the_heartbeat_keeps_in_flight_messages_alive() -> None:
    gate = threading.Event()
    source = ScriptedSource([[msg(1), msg(2)]])
    runner = Runner(source, ScriptedPipeline(gate=gate), once=True, heartbeat_seconds=0.01)  # type: ignore[arg-type]
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        for _ in range(300):
            if {"m1", "m2"} <= set(source.kept_alive):
                break
            threading.Event().wait(0.01)
    finally:
        gate.set()
        thread.join(10)
    assert {"m1", "m2"} <= set(source.kept_alive)


def test_stop_lets_in_flight_batches_finish_and_be_acknowledged() -> None:
    gate = threading.Event()
    stop = threading.Event()
    source = ScriptedSource([[msg(1)]] + [[] for _ in range(10_000)])
    pipeline = ScriptedPipeline(gate=gate)
    runner = Runner(source, pipeline, stop=stop)  # type: ignore[arg-type]
    thread = threading.Thread(target=runner.run)
    thread.start()
    for _ in range(300):
        if pipeline.active:
            break
        threading.Event().wait(0.01)
    stop.set()
    gate.set()
    thread.join(10)
    assert not thread.is_alive() and source.acked == ["m1"] and runner.outstanding == set()


class BatchSizes(ScriptedPipeline):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def handle(self, batch: Sequence[SourceMessage]) -> BatchResult:
        self.sizes.append(len(batch))
        return super().handle(batch)


def test_receives_are_gathered_into_batches_of_up_to_gather_messages() -> None:
    source = ScriptedSource([[msg(i * 10 + j) for j in range(10)] for i in range(7)])
    pipeline = BatchSizes()
    code, _ = run(source, pipeline, gather_messages=30, gather_seconds=5.0, max_in_flight=1)
    assert code == 0 and len(source.acked) == 70
    assert pipeline.sizes == [30, 30, 10]  # not seven batches of ten
    # without gathering, each receive is a batch of its own
    source = ScriptedSource([[msg(i * 10 + j) for j in range(10)] for i in range(3)])
    pipeline = BatchSizes()
    run(source, pipeline, max_in_flight=1)
    assert pipeline.sizes == [10, 10, 10]


def test_gathering_stops_at_an_empty_or_failing_receive() -> None:
    source = ScriptedSource([[msg(1)], [], [msg(2)]])
    pipeline = BatchSizes()
    run(source, pipeline, gather_messages=100, gather_seconds=5.0, max_in_flight=1)
    assert pipeline.sizes == [1, 1]
    flaky = ScriptedSource([[msg(3)]])
    original = flaky.receive
    calls = {"n": 0}

    def receive() -> list[SourceMessage]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("receive failed while gathering")
        return original()

    flaky.receive = receive  # type: ignore[method-assign]
    pipeline = BatchSizes()
    code, _ = run(flaky, pipeline, gather_messages=100, gather_seconds=5.0, max_in_flight=1)
    assert code == 0 and pipeline.sizes == [1] and flaky.acked == ["m3"]


class OutagePipeline(ScriptedPipeline):
    """A pipeline whose one sink is down until ``up`` is set: batches fail and ``sinks_down``
    says so; ``ready_to_retry`` is the breaker's probe (counted)."""

    def __init__(self) -> None:
        super().__init__(lambda m, n: "ok" if self.up.is_set() else "retry")
        self.up = threading.Event()
        self.probes = 0
        self.tripped = False

    def handle(self, batch: Sequence[SourceMessage], *, outage_held: bool = False) -> BatchResult:
        result = super().handle(batch)
        self.tripped = self.tripped or bool(result.retry)  # a breaker opens on a failed delivery
        return result

    def sinks_down(self) -> list[str]:
        return ["opensearch"] if self.tripped and not self.up.is_set() else []

    def ready_to_retry(self) -> bool:
        self.probes += 1
        return self.up.is_set()


def test_an_outage_holds_batches_instead_of_releasing_them_and_stops_receiving() -> None:
    stop = threading.Event()
    source = ScriptedSource([[msg(1), msg(2)], [msg(3)]] + [[] for _ in range(100_000)], requeue=True)
    pipeline = OutagePipeline()
    runner = Runner(source, pipeline, stop=stop, max_in_flight=1, heartbeat_seconds=0.01,  # type: ignore[arg-type]
                    hold_on_outage=True)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        for _ in range(500):
            if pipeline.probes >= 5:
                break
            threading.Event().wait(0.01)
        receives_during_outage = source.receives
        threading.Event().wait(0.1)
        assert source.receives == receives_during_outage, "no receive while the sink is down"
        assert source.released == [], "held, not released: no receive count is spent"
        assert {"m1", "m2"} <= set(source.kept_alive), "held messages keep their lease"
        assert source.acked == []
        pipeline.up.set()
        for _ in range(500):
            if len(source.acked) == 3:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(10)
    assert sorted(source.acked) == ["m1", "m2", "m3"] and source.released == []
    assert pipeline.seen["m1"] == 2, "the held batch was handled again after the sink came back"
    assert runner.outstanding == set()


def test_held_batches_are_released_at_stop() -> None:
    stop = threading.Event()
    source = ScriptedSource([[msg(1)]] + [[] for _ in range(100_000)])
    pipeline = OutagePipeline()
    runner = Runner(source, pipeline, stop=stop, hold_on_outage=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=runner.run)
    thread.start()
    for _ in range(500):
        if runner.held_total:
            break
        threading.Event().wait(0.01)
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and source.released == ["m1"] and source.acked == []


def test_a_one_shot_run_never_holds() -> None:
    source = ScriptedSource([[msg(1)]])
    rc, runner = run(source, OutagePipeline(), hold_on_outage=True)
    assert rc == 1 and source.released == ["m1"] and runner.held_total == 0
