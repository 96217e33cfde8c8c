"""The pipeline's acknowledgement contract, with sinks that fail in chosen ways.

The sinks here are test doubles of the *sink contract* (not of any AWS or OpenSearch API): they
let the test decide which findings a sink accepts, so that the ack decision can be checked
exhaustively. The real sinks are tested against moto and a real OpenSearch node elsewhere.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from connector.config import LimitSettings, Settings
from connector.deadletters.file import FileDeadLetters
from connector.envelopes import Decoder
from connector.factory import FindingFactory
from connector.model import DeliveryResult, Outcome, RenderedFinding, SourceMessage
from connector.pipeline import Pipeline
from connector.select import Selector
from tests.support.records import EVENT, EVENTS, make_record


class RecordingSink:
    name: ClassVar[str] = "recording"
    formats: ClassVar[tuple[str, ...]] = ("asff", "ocsf")
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, fail: Outcome | None = None, reject_ids: set[str] = frozenset(), down: bool = False) -> None:
        self.fail = fail
        self.reject_ids = set(reject_ids)
        self.down = down
        self.held: dict[tuple[str, str], dict] = {}
        self.calls = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> RecordingSink:
        return cls()

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        self.calls += 1
        if self.down:
            raise ConnectionError("sink is down")
        out = []
        for item in batch:
            if item.finding.event.event_id in self.reject_ids:
                out.append(DeliveryResult(item.finding_id, self.fail or Outcome.PERMANENT, "InvalidInput: rejected"))
            else:
                self.held[(item.finding_id, item.format)] = dict(item.document)
                out.append(DeliveryResult(item.finding_id, Outcome.OK))
        return out

    def check(self) -> None:
        if self.down:
            raise ConnectionError("down")

    def close(self) -> None:
        pass


def make_pipeline(tmp_path: Path, *sinks: RecordingSink) -> tuple[Pipeline, FileDeadLetters]:
    factory = FindingFactory.load()
    selector = Selector(factory.event_names)
    letters = FileDeadLetters(f"file://{tmp_path}/dlq")
    pipeline = Pipeline(
        factory=factory,
        decoder=Decoder(LimitSettings(), prefilter=selector.pattern),
        selector=selector,
        sinks=list(sinks),
        dead_letters=letters,
    )
    return pipeline, letters


def message(n: int, *records: dict) -> SourceMessage:
    body = json.dumps({"Records": list(records)}).encode()
    return SourceMessage(id=f"m{n}", body=body, source="test")


def test_all_delivered_all_acked(tmp_path: Path) -> None:
    sink = RecordingSink()
    pipeline, letters = make_pipeline(tmp_path, sink)
    noise = {"eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventID": "n1"}
    msgs = [message(i, make_record(e, event_id=f"id-{i}"), noise) for i, e in enumerate(EVENTS)]
    result = pipeline.handle(msgs)
    assert [m.id for m in result.done] == [m.id for m in msgs] and not result.retry
    assert result.findings == len(EVENTS) and result.skipped == len(EVENTS)
    assert len(sink.held) == 2 * len(EVENTS)  # one ASFF + one OCSF each
    assert letters.read() == []


def test_a_sink_that_is_down_means_no_ack_and_nothing_marked_delivered(tmp_path: Path) -> None:
    good, down = RecordingSink(), RecordingSink(down=True)
    pipeline, _ = make_pipeline(tmp_path, good, down)
    msgs = [message(1, make_record(EVENT, event_id="a"))]
    result = pipeline.handle(msgs)
    assert result.retry == tuple(msgs) and not result.done
    # recovery: the same message again is delivered to both and acked
    down.down = False
    result = pipeline.handle(msgs)
    assert result.done == tuple(msgs)
    assert len(down.held) == 2


def test_permanent_rejections_are_dead_lettered_and_the_message_acked(tmp_path: Path) -> None:
    sink = RecordingSink(reject_ids={"bad"})
    pipeline, letters = make_pipeline(tmp_path, sink)
    msg = message(1, make_record(EVENT, event_id="bad"), make_record(EVENT, event_id="good"))
    result = pipeline.handle([msg])
    assert result.done == (msg,)
    stored = letters.read()
    assert {s["stage"] for s in stored} == {"deliver"}
    assert all("InvalidInput" in s["reason"] for s in stored)
    assert all(s["record_id"].endswith("/bad") for s in stored)


def test_retryable_rejection_keeps_the_message(tmp_path: Path) -> None:
    sink = RecordingSink(fail=Outcome.RETRYABLE, reject_ids={"slow"})
    pipeline, letters = make_pipeline(tmp_path, sink)
    ok_msg = message(1, make_record(EVENT, event_id="fine"))
    slow_msg = message(2, make_record(EVENT, event_id="slow"))
    result = pipeline.handle([ok_msg, slow_msg])
    assert result.done == (ok_msg,) and result.retry == (slow_msg,)
    assert letters.read() == []


def test_undecodable_and_invalid_records_are_dead_lettered_with_reason(tmp_path: Path) -> None:
    sink = RecordingSink()
    pipeline, letters = make_pipeline(tmp_path, sink)
    garbage = SourceMessage(id="g", body=b"\x1f\x8b\x08\x00 definitely not gzip " + EVENT.encode(), source="test")
    no_id = message(2, make_record(EVENT, eventID=None))
    fine = message(3, make_record(EVENT, event_id="fine"))
    result = pipeline.handle([garbage, no_id, fine])
    assert {m.id for m in result.done} == {"g", "m2", "m3"}
    stored = {s["stage"]: s for s in letters.read()}
    assert set(stored) == {"decode", "map"}
    assert "eventID" in stored["map"]["reason"]


def test_without_a_dead_letter_destination_bad_records_are_not_acked(tmp_path: Path) -> None:
    from connector.deadletters import MissingDeadLetters

    factory = FindingFactory.load()
    selector = Selector(factory.event_names)
    pipeline = Pipeline(
        factory=factory, decoder=Decoder(LimitSettings(), prefilter=selector.pattern), selector=selector,
        sinks=[RecordingSink()], dead_letters=MissingDeadLetters(),
    )
    bad = message(1, make_record(EVENT, eventID=None))
    assert pipeline.handle([bad]).retry == (bad,)


def test_repeats_are_not_sent_twice_within_the_cache(tmp_path: Path) -> None:
    sink = RecordingSink()
    pipeline, _ = make_pipeline(tmp_path, sink)
    record = make_record(EVENT, event_id="same")
    pipeline.handle([message(1, record), message(2, record)])
    calls = sink.calls
    result = pipeline.handle([message(3, record)])
    assert result.done and sink.calls == calls  # nothing new to send


def test_redrive_policy_mode_leaves_bad_messages_in_the_queue(tmp_path: Path) -> None:
    from connector.deadletters import open_dead_letters

    factory = FindingFactory.load()
    selector = Selector(factory.event_names)
    pipeline = Pipeline(
        factory=factory, decoder=Decoder(LimitSettings(), prefilter=selector.pattern), selector=selector,
        sinks=[RecordingSink()], dead_letters=open_dead_letters("", leave_to_redrive=True),
    )
    bad = SourceMessage(id="bad", body=b"garbage, not JSON", source="sqs")
    good = message(2, make_record(EVENT, event_id="fine"))
    result = pipeline.handle([bad, good])
    assert result.retry == (bad,) and result.done == (good,)


def test_fast_and_full_ocsf_validators_agree() -> None:
    """The compiled fast path must accept exactly what the jsonschema validator accepts."""
    import copy

    from connector.validate import _ocsf_fast, _ocsf_validator

    doc = next(r.document for r in FindingFactory.load().render(make_record(EVENT)) if r.format == "ocsf")
    mutations = [
        lambda d: d.update(class_uid=5), lambda d: d.update(severity_id=7), lambda d: d.pop("finding_info"),
        lambda d: d.update(extra=1), lambda d: d["metadata"].update(profiles=[]), lambda d: d["cloud"].pop("provider"),
        lambda d: d["evidences"][0].clear(), lambda d: d["resources"][0].clear(), lambda d: d.update(time=123),
        lambda d: d["finding_info"]["attacks"][0]["tactic"].pop("uid"), lambda d: None,
    ]
    for mutate in mutations:
        candidate = copy.deepcopy(dict(doc))
        mutate(candidate)
        try:
            _ocsf_fast()(candidate)
            fast = True
        except Exception:
            fast = False
        assert fast == _ocsf_validator().is_valid(candidate), candidate


POISON = [
    b'{"Records":[{"eventSource":"aws:sns","Sns":5}]}',
    b'{"Records":[{"eventSource":"ec2.amazonaws.com","eventName":["%s"]}]}',
    b'{"Records":[{"eventSource":"ec2.amazonaws.com","eventName":"%s","eventTime":"9999-12-31T23:59:59-05:00",'
    b'"eventID":"x","awsRegion":"us-east-1","recipientAccountId":"123456789012"}]}',
    b'{"Type":"Notification","Message":{"nested":[1,2,3]}}',
    b'{"Records":[{"s3":{"bucket":{"name":"../../etc"},"object":{"key":"x"}}}]}',
    b'[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]',
]


def test_poison_messages_are_dead_lettered_alone_and_their_neighbours_delivered(tmp_path: Path) -> None:
    sink = RecordingSink()
    pipeline, letters = make_pipeline(tmp_path, sink)
    poison = [SourceMessage(id=f"p{i}", body=body.replace(b"%s", EVENT.encode()), source="sqs")
              for i, body in enumerate(POISON)]
    good = [message(i, make_record(EVENT, event_id=f"good-{i}")) for i in range(len(poison))]
    interleaved = [m for pair in zip(good, poison) for m in pair]
    result = pipeline.handle(interleaved)
    assert sorted(m.id for m in result.done) == sorted(m.id for m in interleaved) and not result.retry, \
        "every message settles in one pass"
    delivered = {key[0] for key in sink.held}
    assert all(any(fid.endswith(f"/good-{i}") for fid in delivered) for i in range(len(good)))
    stored = letters.read()
    assert stored, "poison is dead-lettered, with its stage and reason"
    assert all(s["stage"] and s["reason"] for s in stored)


class FailsAfter(RecordingSink):
    """Accepts ``budget`` send calls, then is down until revived."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        if self.budget <= 0:
            self.down = True
        self.budget -= 1
        return super().send(batch)


def test_a_streamed_file_is_delivered_in_parts_and_a_failed_part_is_retried_without_resending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connector.pipeline.STREAM_PART_FINDINGS", 10)
    records = [make_record(EVENTS[i % len(EVENTS)], event_id=f"big-{i}") for i in range(40)]
    data = json.dumps({"Records": records}).encode()
    streamed = SourceMessage(id="big", body=b'{"file": "big"}', source="file",
                             chunks=lambda: (data[i : i + 1000] for i in range(0, len(data), 1000)))
    sink = FailsAfter(budget=3)
    pipeline, _ = make_pipeline(tmp_path, sink)
    first = pipeline.handle([streamed])
    assert first.retry == (streamed,) and not first.done
    assert 0 < len(sink.held) < 80 and sink.calls >= 3  # parts went out one by one, then the sink failed
    held_before = dict(sink.held)
    sent_before = sink.calls
    sink.down, sink.budget = False, 1000
    second = pipeline.handle([streamed])
    assert second.done == (streamed,) and second.findings == 40
    assert len(sink.held) == 80 and held_before.items() <= sink.held.items()
    # the parts delivered the first time were not sent again
    assert sink.calls - sent_before < 8


class WaitsForTheNextPart(RecordingSink):
    """Holds its first delivery until the pipeline has mapped a record of the next part (or 10 s)."""

    def __init__(self, mapped_next: threading.Event) -> None:
        super().__init__()
        self.mapped_next = mapped_next
        self.first_saw_next_part: bool | None = None

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        if self.first_saw_next_part is None:
            self.first_saw_next_part = self.mapped_next.wait(10)
        return super().send(batch)


def test_a_part_is_delivered_while_the_next_one_is_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One single-shard Kinesis batch is one in flight at a time: mapping and Security Hub's
    quota must overlap inside it, or they add up."""
    monkeypatch.setattr("connector.pipeline.STREAM_PART_FINDINGS", 10)  # 5 records of 2 formats
    mapped_next = threading.Event()
    sink = WaitsForTheNextPart(mapped_next)
    pipeline, _ = make_pipeline(tmp_path, sink)
    render = pipeline.factory.render
    rendered = 0

    def counting(record: dict, **kwargs: object) -> list[RenderedFinding]:
        nonlocal rendered
        rendered += 1
        if rendered == 6:  # the first record of the second part
            mapped_next.set()
        return render(record, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "factory", SimpleNamespace(render=counting, event_names=pipeline.factory.event_names))
    msgs = [message(i, make_record(EVENTS[i % len(EVENTS)], event_id=f"overlap-{i}")) for i in range(15)]
    result = pipeline.handle(msgs)
    assert sink.first_saw_next_part is True
    assert result.done == tuple(msgs) and result.findings == 15
    assert len(sink.held) == 30 and sink.calls == 3


def test_a_retry_sends_only_to_the_sinks_that_do_not_hold_the_finding(tmp_path: Path) -> None:
    good, down = RecordingSink(), RecordingSink(down=True)
    pipeline, _ = make_pipeline(tmp_path, good, down)
    msgs = [message(1, make_record(EVENT, event_id="a"))]
    for _ in range(3):
        assert pipeline.handle(msgs).retry == tuple(msgs)
    assert good.calls == 1, "the healthy sink got the finding once, not on every retry"
    assert pipeline.sinks_down() == ["recording"]
    down.down = False
    assert pipeline.handle(msgs).done == tuple(msgs)
    assert good.calls == 1 and len(down.held) == 2 and pipeline.sinks_down() == []


def test_the_breaker_opens_on_an_outage_and_its_probe_is_the_sinks_check(tmp_path: Path) -> None:
    down = RecordingSink(down=True)
    pipeline, _ = make_pipeline(tmp_path, down)
    pipeline.handle([message(1, make_record(EVENT, event_id="a"))])
    assert pipeline.sinks_down() == ["recording"]
    pipeline.breakers[0]._status.next_probe_at = 0  # due now
    assert not pipeline.ready_to_retry(), "the probe (check) still fails"
    down.down = False
    pipeline.breakers[0]._status.next_probe_at = 0
    assert pipeline.ready_to_retry()


def test_on_its_last_receive_a_failing_message_is_dead_lettered_with_why(tmp_path: Path) -> None:
    sink = RecordingSink(reject_ids={"a"}, fail=Outcome.RETRYABLE)  # refuses it retryably, yet is up
    other = RecordingSink()
    pipeline, letters = make_pipeline(tmp_path, sink, other)
    record = make_record(EVENT, event_id="a")
    body = json.dumps({"Records": [record, make_record(EVENT, event_id="b")]}).encode()
    early = SourceMessage(id="m1", body=body, source="sqs", attempt=4, max_receives=5)
    assert pipeline.handle([early]).retry == (early,) and letters.read() == []
    last = SourceMessage(id="m1", body=body, source="sqs", attempt=5, max_receives=5)
    result = pipeline.handle([last])
    assert result.done == (last,) and not result.retry
    [letter] = letters.read()
    assert letter["stage"] == "deliver" and letter["error_type"] == "GaveUp"
    assert "5 receives" in letter["reason"] and "InvalidInput: rejected" in letter["reason"]
    assert letter["body"] == body.decode(), "the whole message, so a redrive replays it"


def test_on_its_last_receive_during_an_outage_a_message_is_kept_not_dead_lettered(tmp_path: Path) -> None:
    down = RecordingSink(down=True)
    pipeline, letters = make_pipeline(tmp_path, down)
    last = SourceMessage(id="m1", body=json.dumps({"Records": [make_record(EVENT, event_id="a")]}).encode(),
                         source="sqs", attempt=5, max_receives=5)
    result = pipeline.handle([last], outage_held=True)
    assert result.retry == (last,) and letters.read() == []
    assert "sink is down" in result.reasons["m1"]
    # Nobody holds it (``run --once``): the last receive still gets a letter with the reason.
    result = pipeline.handle([last])
    assert result.done == (last,) and "sink is down" in letters.read()[0]["reason"]
