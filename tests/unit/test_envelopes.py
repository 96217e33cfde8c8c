"""Envelope decoding: every kind alone and nested in any order, the real corpus envelopes, and
hostile input (gzip bombs, truncated gzip, invalid UTF-8, absurd nesting) rejected with a reason
while the rest of the message is still decoded."""

from __future__ import annotations

import base64
import gzip
import io
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connector.config import LimitSettings
from connector.envelopes import DecodedRecord, DecodeFailure, Decoder, gunzip, json_depth_exceeds
from connector.errors import DecodeError, LimitExceeded
from connector.select import Selector
from tests.support.records import EVENT, EVENTS, make_record

SELECTOR = Selector(EVENTS)
NOISE = {"eventVersion": "1.08", "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventID": "noise"}


def targets(items: list) -> list[str]:
    return sorted(i.record["eventID"] for i in items if isinstance(i, DecodedRecord) and SELECTOR.matches(i.record))


def failures(items: list) -> list[DecodeFailure]:
    return [i for i in items if isinstance(i, DecodeFailure)]


def decode(body: bytes | str, limits: LimitSettings | None = None, **kwargs: Any) -> list:
    data = body.encode() if isinstance(body, str) else body
    return list(Decoder(limits or LimitSettings(), **kwargs).decode(data, origin="t"))


# Wrappers, each turning a payload (bytes) into the next envelope out (bytes).
def logfile(records: list[dict]) -> bytes:
    return json.dumps({"Records": records}).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def sns(data: bytes) -> bytes:
    return json.dumps({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": data.decode()}).encode()


def eventbridge(record: dict) -> bytes:
    return json.dumps({"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2", "detail": record}).encode()


def cwl(records: list[dict]) -> bytes:
    events = [{"id": str(i), "timestamp": 0, "message": json.dumps(r)} for i, r in enumerate(records)]
    return gz(json.dumps({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g", "logStream": "s",
                          "subscriptionFilters": ["f"], "logEvents": events}).encode())


def sqs_lambda(bodies: list[bytes]) -> bytes:
    return json.dumps({"Records": [{"messageId": str(i), "eventSource": "aws:sqs", "body": b.decode()} for i, b in enumerate(bodies)]}).encode()


def kinesis_lambda(datas: list[bytes]) -> bytes:
    return json.dumps({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": str(i), "data": base64.b64encode(d).decode()}}
                                   for i, d in enumerate(datas)]}).encode()


def sns_lambda(messages: list[bytes]) -> bytes:
    return json.dumps({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": m.decode()}} for m in messages]}).encode()


def receive_message(bodies: list[bytes]) -> bytes:
    return json.dumps({"Messages": [{"MessageId": str(i), "Body": b.decode()} for i, b in enumerate(bodies)]}).encode()


def recs(prefix: str) -> list[dict]:
    return [make_record(EVENTS[i], event_id=f"{prefix}-{i}") for i in range(2)] + [dict(NOISE, eventID=f"{prefix}-n")]


CASES: dict[str, Callable[[], tuple[bytes, list[str]]]] = {
    "bare": lambda: (json.dumps(recs("a")[0]).encode(), ["a-0"]),
    "array": lambda: (json.dumps(recs("a")).encode(), ["a-0", "a-1"]),
    "jsonl": lambda: (b"\n".join(json.dumps(r).encode() for r in recs("a")), ["a-0", "a-1"]),
    "logfile": lambda: (logfile(recs("a")), ["a-0", "a-1"]),
    "logfile-gzip": lambda: (gz(logfile(recs("a"))), ["a-0", "a-1"]),
    "eventbridge": lambda: (eventbridge(recs("a")[1]), ["a-1"]),
    "cwl-gzip": lambda: (cwl(recs("a")), ["a-0", "a-1"]),
    "kinesis-cwl-base64": lambda: (b64(cwl(recs("a"))), ["a-0", "a-1"]),
    "sns-logfile": lambda: (sns(logfile(recs("a"))), ["a-0", "a-1"]),
    "sqs-eventbridge": lambda: (sqs_lambda([eventbridge(recs("a")[0]), eventbridge(recs("b")[1])]), ["a-0", "b-1"]),
    "sns-eventbridge": lambda: (sns(eventbridge(recs("a")[0])), ["a-0"]),
    "kinesis-lambda-cwl": lambda: (kinesis_lambda([cwl(recs("a")), cwl(recs("b"))]), ["a-0", "a-1", "b-0", "b-1"]),
    "sns-lambda-sns-logfile": lambda: (sns_lambda([sns(logfile(recs("a")))]), ["a-0", "a-1"]),
    "receive-message-sns-eventbridge": lambda: (receive_message([sns(eventbridge(recs("a")[1]))]), ["a-1"]),
    "sqs-sns-gzip-b64-logfile": lambda: (sqs_lambda([sns(b64(gz(logfile(recs("a")))))]), ["a-0", "a-1"]),
    "cwl-control": lambda: (gz(json.dumps({"messageType": "CONTROL_MESSAGE", "logEvents": []}).encode()), []),
    "s3-test-event": lambda: (sns(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}).encode()), []),
}


@pytest.mark.parametrize("name", CASES)
def test_every_kind_alone_and_nested(name: str) -> None:
    body, expected = CASES[name]()
    items = decode(body)
    assert not failures(items), failures(items)
    assert targets(items) == sorted(expected)
    # The byte prefilter (the service's cheap path) never loses a target.
    assert targets(decode(body, prefilter=SELECTOR.pattern)) == sorted(expected)


def test_corpus_envelopes_decode_without_crashing(corpus_dir: Path) -> None:
    seen = 0
    for path in sorted((corpus_dir / "envelopes").iterdir()):
        items = decode(path.read_bytes())
        for item in failures(items):
            assert str(item.error), path  # every failure has a reason
        seen += 1
    assert seen >= 30


def test_corpus_envelope_specifics(corpus_dir: Path) -> None:
    env = corpus_dir / "envelopes"
    truncated = failures(decode((env / "cwl-cloudtrail-data-message-2.json").read_bytes()))
    assert truncated and all("invalid JSON" in str(f.error) for f in truncated)
    assert decode((env / "cwl-control-message-1.json").read_bytes()) == []
    assert decode((env / "s3-test-event-1.json").read_bytes()) == []
    garbage = failures(decode((env / "sqs-batch-partial-garbage-1.json").read_bytes()))
    assert any("not JSON" in str(f.error) for f in garbage)
    s3 = [f for f in failures(decode((env / "cloudtrail-sns-message-1.json").read_bytes())) if "S3 access" in str(f.error)]
    assert s3, "an S3 reference without S3 access says so"
    config_notice = decode((env / "sns-sqs-config-notification-1.json").read_bytes())
    assert not failures(config_notice) and targets(config_notice) == []
    for name in ("eventbridge-cloudtrail-1.json", "cloudtrail-logfile-1.json", "kinesis-cwl-data-1.b64"):
        items = decode((env / name).read_bytes())
        assert any(isinstance(i, DecodedRecord) for i in items) or failures(items), name


def test_gzip_bomb_is_rejected_without_expanding_it() -> None:
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as out:
        chunk = b"\0" * (1 << 20)
        for _ in range(64):  # 64 MiB of zeros → ~64 KB compressed
            out.write(chunk)
    limits = LimitSettings(max_decompressed_bytes=8 << 20)
    with pytest.raises(LimitExceeded, match="gzip bomb"):
        gunzip(bomb.getvalue(), limits.max_decompressed_bytes, origin="t")
    good = json.dumps(make_record(EVENT, event_id="ok")).encode()
    items = decode(sqs_lambda([b64(bomb.getvalue()), good]), limits)
    assert targets(items) == ["ok"]
    assert any("gzip bomb" in str(f.error) for f in failures(items))


def test_truncated_gzip_and_invalid_utf8_and_deep_json() -> None:
    good = json.dumps(make_record(EVENT, event_id="ok")).encode()
    truncated = gz(logfile(recs("x")))[:-20]
    assert any("truncated gzip" in str(f.error) for f in failures(decode(truncated)))
    latin1 = json.dumps(make_record(EVENT, event_id="bad", sourceIPAddress="caf\u00e9"), ensure_ascii=False).encode().replace("é".encode(), b"\xe9")
    items = decode(b"\n".join([latin1, good]))
    assert targets(items) == ["ok"] and any("not UTF-8" in str(f.error) for f in failures(items))
    deep = b"[" * 10_000 + b"]" * 10_000
    items = decode(b"\n".join([deep, good]))
    assert targets(items) == ["ok"] and any("nested deeper" in str(f.error) for f in failures(items))
    assert json_depth_exceeds(deep, 64) and not json_depth_exceeds(good, 64)


def test_record_size_and_envelope_nesting_limits() -> None:
    big = make_record(EVENT, event_id="big", padding="x" * 5000)
    items = decode(sqs_lambda([json.dumps(big).encode()]), LimitSettings(max_record_bytes=4096))
    assert any(isinstance(f.error, LimitExceeded) for f in failures(items))
    body = logfile([make_record(EVENT, event_id="deep")])
    for _ in range(12):
        body = sns(body)
    items = decode(body, LimitSettings(max_nesting=8))
    assert targets(items) == [] and any("nested" in str(f.error) for f in failures(items))


def test_corrupt_gzip_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="corrupt gzip"):
        gunzip(b"\x1f\x8b\x08\x00" + b"\xff" * 40, 1 << 20, origin="t")
    assert zlib  # imported for clarity of what gunzip wraps


def compact_body(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def eventbridge_compact(record: dict) -> bytes:
    """An EventBridge event as EventBridge writes it (a UUID id, then the detail-type)."""
    head = {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2"}
    return compact_body({**head, "detail": record})


def outcome(items: list) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    skipped = sorted(str(i.count) for i in items if not isinstance(i, (DecodedRecord, DecodeFailure)))
    letters = sorted((f.origin, type(f.error).__name__) for f in failures(items))
    return targets(items), skipped, letters


def hit(event_id: str, **extra: object) -> dict:
    return {**make_record(EVENT, event_id=event_id), **extra}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(compact_body(hit("plain")), id="record"),
        pytest.param(compact_body(hit("utf8", userAgent="café ☕")), id="non-ASCII record"),
        pytest.param(compact_body(hit("bad", userAgent="caf")).replace(b"caf", b"\xff\xfe"), id="invalid UTF-8"),
        pytest.param(compact_body(hit("deep", requestParameters=json.loads("[" * 80 + "]" * 80))), id="too deep"),
        pytest.param(compact_body(hit("cut"))[:-40] + b"}", id="invalid JSON"),
        pytest.param(compact_body(hit("l1")) + b"\n" + compact_body(hit("l2")), id="JSON Lines"),
        pytest.param(eventbridge_compact(hit("eb")), id="EventBridge"),
        pytest.param(eventbridge_compact(hit("eb-bad"))[:-50] + b"}", id="EventBridge invalid"),
        pytest.param(sns(compact_body(hit("in-sns"))), id="record as SNS text"),
        pytest.param(sns(compact_body(NOISE)), id="noise as SNS text"),
        pytest.param(sns(compact_body(hit("sns-deep", requestParameters=json.loads("[" * 80 + "]" * 80)))), id="deep record as SNS text"),
    ],
)
def test_records_holding_a_name_parsed_straight_away_end_as_the_full_path_ends_them(body: bytes) -> None:
    # The pre-filtered decoder parses a compact record that holds a name without the container
    # tests; every outcome (finding, letter and its kind, count) is still the full path's.
    fast = decode(body, prefilter=SELECTOR.pattern)
    full = decode(body)
    assert outcome(fast)[0] == outcome(full)[0]
    assert outcome(fast)[2] == outcome(full)[2]
    if not outcome(full)[0] and not outcome(full)[2]:
        assert outcome(fast)[1] == ["1"]  # the noise record: counted as skipped


def test_a_record_body_deeper_in_envelopes_than_allowed_is_a_letter_on_the_fast_path_too() -> None:
    body = compact_body(hit("nested"))
    for _ in range(LimitSettings().max_nesting + 2):
        body = sns(body)
    for decoder_kwargs in ({}, {"prefilter": SELECTOR.pattern}):
        items = decode(body, **decoder_kwargs)
        assert targets(items) == [] and any(isinstance(f.error, LimitExceeded) for f in failures(items))
