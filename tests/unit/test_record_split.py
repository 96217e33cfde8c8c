"""Log files split without a dict per record, and streamed: the fast paths find exactly what a
full parse finds, count what they skip, never take a nested look-alike for a record, and keep
every limit."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.config import LimitSettings
from connector.envelopes import DecodedRecord, DecodeFailure, Decoder, Skipped
from connector.errors import DecodeError, LimitExceeded
from connector.inflate import INPUT_STEP, gunzip, inflate
from connector.record_split import cwl_hits, log_file_hits
from connector.select import Selector
from tests.support.records import EVENTS, make_record

SELECTOR = Selector(EVENTS)


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def noise(i: int) -> dict[str, object]:
    record = make_record(EVENTS[0], event_id=f"noise-{i}")
    record.update(eventName="GetObject", eventSource="s3.amazonaws.com", responseElements=None,
                  requestParameters={"bucketName": "logs", "key": f"k/{i}"})
    return record


def forged_inside(i: int) -> dict[str, object]:
    """A failed call whose request parameters carry two CloudTrail look-alike records, laid out so
    that the bytes between record-boundary candidates parse as a complete target record."""
    record = noise(i)
    fake = [make_record(EVENTS[1], event_id=f"forged-{i}-{n}") for n in range(3)]
    record["requestParameters"] = {"policy": {"Statement": [{"Sid": "a"}, *fake]}}
    record["errorCode"] = "MalformedPolicy"
    return record


def trail(count: int, every: int = 10) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(count):
        if i % every == 0:
            out.append(make_record(EVENTS[i % len(EVENTS)], event_id=f"target-{i}"))
        elif i % every == 5:
            out.append(forged_inside(i))
        else:
            out.append(noise(i))
    return out


def found(items: list[object]) -> tuple[list[str], int, list[DecodeFailure]]:
    ids = sorted(str(i.record["eventID"]) for i in items if isinstance(i, DecodedRecord) and SELECTOR.matches(i.record))
    skipped = sum(i.count for i in items if isinstance(i, Skipped))  # dropped unparsed by the pre-filter
    skipped += sum(1 for i in items if isinstance(i, DecodedRecord) and not SELECTOR.matches(i.record))
    return ids, skipped, [i for i in items if isinstance(i, DecodeFailure)]


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("layout", ["compact", "spaced"])
def test_split_log_file_finds_what_a_full_parse_finds_and_counts_the_rest(layout: str) -> None:
    records = trail(200)
    doc = compact({"Records": records}) if layout == "compact" else json.dumps({"Records": records}, indent=1).encode()
    expected = sorted(str(r["eventID"]) for r in records if str(r["eventID"]).startswith("target-"))
    full, _, _ = found(list(Decoder(LimitSettings()).decode(doc, origin="t")))
    assert full == expected
    fast = list(Decoder(LimitSettings(), prefilter=SELECTOR.pattern).decode(gzip.compress(doc), origin="t"))
    ids, skipped, failures = found(fast)
    assert ids == expected and not failures
    assert skipped == len(records) - len(expected)  # every record is either a finding or counted


def test_no_nested_look_alike_is_ever_taken_for_a_record() -> None:
    records = [forged_inside(i) for i in range(20)]
    doc = compact({"Records": records})
    for decoder in (Decoder(LimitSettings()), Decoder(LimitSettings(), prefilter=SELECTOR.pattern)):
        ids, _, _ = found(list(decoder.decode(doc, origin="t")))
        assert ids == []
        streamed, _, _ = found(list(decoder.decode_stream(chunks(gzip.compress(doc), 4096), origin="t")))
        assert streamed == []


def with_arrays(i: int) -> dict[str, object]:
    """A record holding arrays and, in its strings, the bytes of a record boundary and brackets."""
    record = noise(i)
    record["resources"] = [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::logs/k/{i}"}, {"type": "AWS::S3::Bucket"}]
    record["userAgent"] = '[aws-cli] },{"eventVersion":"1.08","eventName":"x"} ]]]}}'
    return record


def honest(count: int, with_array_every: int = 7) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(count):
        if i % 10 == 0:
            out.append(make_record(EVENTS[i % len(EVENTS)], event_id=f"target-{i}"))
        else:
            out.append(with_arrays(i) if i % with_array_every == 0 else noise(i))
    return out


def test_an_honest_log_file_is_cut_at_its_record_heads_into_exactly_the_target_records() -> None:
    records = honest(300)
    doc = compact({"Records": records})
    cut = log_file_hits(doc, SELECTOR.pattern, SELECTOR.pattern.positions(doc))
    assert cut is not None  # the layout is proved: no parser pass over the file
    count, hits = cut
    assert count == len(records)
    assert [index for index, _ in hits] == list(range(0, 300, 10))
    assert all(data == compact(records[index]) for index, data in hits)
    # Through the decoder: the same findings, origins and counts as the parser's split.
    fast = list(Decoder(LimitSettings(), prefilter=SELECTOR.pattern).decode(gzip.compress(doc), origin="t"))
    ids, skipped, failures = found(fast)
    assert ids == sorted(f"target-{i}" for i in range(0, 300, 10)) and not failures and skipped == 270
    assert [i.origin for i in fast if isinstance(i, DecodedRecord)][:2] == ["t>gzip#0", "t>gzip#10"]


def forged_variants() -> dict[str, dict[str, object]]:
    """Look-alike records nested in one record, each way a nested head can sit."""
    fake = [make_record(EVENTS[1], event_id=f"forged-{n}") for n in range(4)]
    shapes: dict[str, object] = {
        "after an object": {"Statement": [{"Sid": "a"}, *fake]},
        "before one with no name": {"Statement": [{"Sid": "a"}, *fake, {"eventVersion": "1.0"}]},
        "brackets in strings balance the counts": {"Statement": [{"Sid": "]]}}"}, *fake], "note": "]"},
        "first in its array": {"Statement": fake},
        "after a string": {"Statement": ["a", *fake]},
        "as a member's value": {"a": fake[0], "b": fake[1]},
        "deeply": {"x": [[{"y": [{"Sid": "a"}, *fake]}]]},
    }
    out = {}
    for name, parameters in shapes.items():
        record = noise(0)
        record["requestParameters"] = parameters
        out[name] = record
    return out


def parses_as_one_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


@pytest.mark.parametrize("shape", list(forged_variants()))
def test_a_nested_look_alike_never_passes_the_head_cut(shape: str) -> None:
    records = [*honest(40, with_array_every=1000), forged_variants()[shape], *honest(40, with_array_every=1000)]
    doc = compact({"Records": records})
    cut = log_file_hits(doc, SELECTOR.pattern, SELECTOR.pattern.positions(doc))
    # Refused, or each hit span that parses is a record of the file (one that does not parse sends
    # the decoder to the parser's split): a look-alike is never cut out as a record.
    if cut is not None and all(parses_as_one_object(data) for _, data in cut[1]):
        assert cut[0] == len(records)
        assert all(data == compact(records[index]) for index, data in cut[1])
    ids, skipped, failures = found(list(Decoder(LimitSettings(), prefilter=SELECTOR.pattern).decode(doc, origin="t")))
    assert not any(i.startswith("forged") for i in ids) and len(ids) == 8 and not failures
    assert skipped == len(records) - 8


def test_the_head_cut_falls_back_to_the_parser_for_any_other_layout() -> None:
    records = honest(50)
    pattern = SELECTOR.pattern
    for doc in (
        json.dumps({"Records": records}).encode(),  # spaced
        compact({"Records": records})[:-1],  # truncated
        compact({"Records": records, "Other": [1]}),  # more than the records
        compact({"Records": [{"x": 1}, *records]}),  # an entry that is not a CloudTrail record first
        compact({"Records": honest(50, with_array_every=2)}),  # arrays in most records: one parser pass is cheaper
    ):
        assert log_file_hits(doc, pattern, pattern.positions(doc)) is None
    # A hit record that does not parse alone: the parser's split gives it its own letter.
    doc = compact({"Records": records}).replace(b'"target-10"', rb'"target-10\ud800"')
    items = list(Decoder(LimitSettings(), prefilter=pattern).decode(doc, origin="t"))
    ids, skipped, failures = found(items)
    assert len(ids) == 5 and skipped == 45 and not failures  # a lone surrogate is read by the standard parser


@pytest.mark.parametrize("piece", [1, 777, 64 * 1024])
def test_a_streamed_log_file_gives_the_same_records_in_any_chunking(piece: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connector.envelopes.STREAM_WINDOW", 16 * 1024)  # many windows, many cuts
    records = trail(300)
    data = gzip.compress(compact({"Records": records}))
    expected = sorted(str(r["eventID"]) for r in records if str(r["eventID"]).startswith("target-"))
    decoder = Decoder(LimitSettings(), prefilter=SELECTOR.pattern)
    ids, skipped, failures = found(list(decoder.decode_stream(chunks(data, piece), origin="t")))
    assert ids == expected and not failures and skipped == len(records) - len(expected)
    # Record origins count across windows: the n-th record of the file is #n.
    origins = [i.origin for i in decoder.decode_stream(chunks(data, 4096), origin="t") if isinstance(i, DecodedRecord) and SELECTOR.matches(i.record)]
    assert origins == [f"t>gzip#{n}" for n in range(0, 300, 10)]


def test_a_truncated_streamed_file_keeps_the_records_before_the_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connector.envelopes.STREAM_WINDOW", 8 * 1024)
    data = gzip.compress(compact({"Records": trail(300)}))
    items = list(Decoder(LimitSettings(), prefilter=SELECTOR.pattern).decode_stream(chunks(data[: len(data) // 2], 1000), origin="t"))
    ids, _, failures = found(items)
    assert ids and len(ids) < 30
    assert len(failures) == 1 and "truncated" in str(failures[0].error)


def test_a_stream_that_is_not_a_log_file_is_decoded_whole_within_the_limit() -> None:
    body = compact({"Type": "Notification", "Message": compact(make_record(EVENTS[0], event_id="sns")).decode()})
    ids, _, _ = found(list(Decoder(LimitSettings()).decode_stream(chunks(gzip.compress(body), 100), origin="t")))
    assert ids == ["sns"]
    items = list(Decoder(LimitSettings(max_decompressed_bytes=50)).decode_stream(chunks(body, 10), origin="t"))
    assert any(isinstance(i.error, LimitExceeded) for i in items if isinstance(i, DecodeFailure))


def test_large_honest_files_pass_the_ratio_limit_and_bombs_do_not() -> None:
    honest = compact({"Records": [noise(i) for i in range(3000)]})
    packed = gzip.compress(honest)
    ratio = len(honest) // len(packed) + 5
    limit = len(honest) // 4  # the file is 4x the size limit, but of an honest ratio
    assert sum(map(len, inflate(chunks(packed, 4096), limit=limit, ratio=ratio, origin="t"))) == len(honest)
    bomb = gzip.compress(b"\0" * (limit * 8))
    with pytest.raises(LimitExceeded, match="gzip bomb"):
        sum(map(len, inflate(chunks(bomb, 4096), limit=limit, ratio=ratio, origin="t")))
    with pytest.raises(LimitExceeded, match="gzip bomb"):  # held in memory: the size limit is absolute
        gunzip(packed, limit, origin="t")


def test_inflation_handles_members_split_across_chunks_and_ignores_trailing_garbage() -> None:
    first, second = b"a" * (INPUT_STEP + 3), b"b" * 1000
    data = gzip.compress(first) + gzip.compress(second) + b"garbage"
    for size in (1, 2, 3, 1001, len(data)):
        assert b"".join(inflate(chunks(data, size), limit=1 << 30, ratio=0, origin="t")) == first + second
    with pytest.raises(DecodeError, match="truncated"):
        b"".join(inflate(chunks(gzip.compress(first)[:-9], 100), limit=1 << 30, ratio=0, origin="t"))


def test_a_member_head_split_across_input_steps_of_one_large_chunk_is_joined() -> None:
    # One chunk of several input steps, a member boundary one byte before a step's end: the magic
    # bytes of the next member arrive in two steps. (Random bytes are stored, not compressed, so
    # a member's length is its data's plus a fixed overhead.)
    rng = random.Random(3)
    probe = rng.randbytes(INPUT_STEP - 100)
    overhead = len(gzip.compress(probe, mtime=0)) - len(probe)
    first = rng.randbytes(INPUT_STEP - 1 - overhead)
    head = gzip.compress(first, mtime=0)
    assert len(head) == INPUT_STEP - 1
    second = b"x" * (3 * INPUT_STEP)
    data = head + gzip.compress(second)
    assert b"".join(inflate([data], limit=1 << 30, ratio=0, origin="t")) == first + second


def test_one_call_gunzip_keeps_members_garbage_truncation_and_its_exact_limit() -> None:
    first, second = b"a" * 5000, b"b" * 1000
    data = gzip.compress(first) + gzip.compress(second)
    assert gunzip(data + b"garbage", 1 << 20, origin="t") == first + second
    assert gunzip(data, len(first) + len(second), origin="t") == first + second  # the limit itself passes
    with pytest.raises(LimitExceeded, match="gzip bomb"):
        gunzip(data, len(first) + len(second) - 1, origin="t")  # a byte over it does not, in any member
    for cut in (gzip.compress(first)[:-9], data + b"\x1f"):
        with pytest.raises(DecodeError, match="truncated"):
            gunzip(cut, 1 << 20, origin="t")


def cwl_payload(messages: list[bytes], *, layout: str = "compact", message_type: str = "DATA_MESSAGE") -> bytes:
    events = [{"id": f"3719{n:052d}", "timestamp": 1764582930000 + n, "message": m.decode()} for n, m in enumerate(messages)]
    doc = {"messageType": message_type, "owner": "111122223333", "logGroup": "trail", "logStream": "s",
           "subscriptionFilters": ["f"], "logEvents": events}
    return compact(doc) if layout == "compact" else json.dumps(doc).encode()


@pytest.mark.parametrize("layout", ["compact", "spaced"])
def test_cwl_events_cut_by_their_heads_give_what_a_full_parse_gives(layout: str) -> None:
    # Targets, noise, a record whose strings hold the event boundary's bytes and a target's name,
    # an event that is not a record, and two names in one event: all as CloudWatch Logs writes them.
    tricky = noise(1)
    tricky["requestParameters"] = {"key": '},{"id":"x","message":"DeleteNatGateway'}
    messages = [compact(r) for r in trail(60)] + [compact(tricky), b"plain text DeleteNatGateway DeleteNatGateway"]
    payload = gzip.compress(cwl_payload(messages, layout=layout))
    # The compact payload takes the byte cut (no parse of the whole), the spaced one the parser.
    assert (cwl_hits(cwl_payload(messages, layout=layout), SELECTOR.pattern) is not None) == (layout == "compact")
    full = list(Decoder(LimitSettings()).decode(payload, origin="t"))
    fast = list(Decoder(LimitSettings(), prefilter=SELECTOR.pattern).decode(payload, origin="t"))
    ids, skipped, failures = found(fast)
    assert ids == found(full)[0] and ids == [f"target-{i}" for i in range(0, 60, 10)]
    assert skipped + len(ids) + len(failures) == len(messages)  # every event a finding, a letter or counted
    # The events are named by their place in the payload, as a full parse names them.
    def origins(items: list[object]) -> list[str]:
        return sorted(i.origin for i in items if isinstance(i, DecodedRecord) and SELECTOR.matches(i.record))

    assert origins(fast) == origins(full) and "t>gzip>cwl#0" in origins(fast)
    assert [f.origin for f in failures] == [f.origin for f in full if isinstance(f, DecodeFailure)] == ["t>gzip>cwl#61"]


def test_cwl_control_and_empty_payloads_and_odd_layouts_fall_back_safely() -> None:
    decoder = Decoder(LimitSettings(), prefilter=SELECTOR.pattern)
    assert list(decoder.decode(gzip.compress(cwl_payload([], message_type="CONTROL_MESSAGE")), origin="t")) == []
    assert found(list(decoder.decode(gzip.compress(cwl_payload([])), origin="t"))) == ([], 0, [])
    # logEvents not last: the byte cut does not apply, the parser splits, the target is still found.
    target = compact(make_record(EVENTS[0], event_id="target-x"))
    doc = json.loads(cwl_payload([target]))
    doc = {"logEvents": doc.pop("logEvents"), **doc}
    ids, _, failures = found(list(decoder.decode(gzip.compress(compact(doc)), origin="t")))
    assert ids == ["target-x"] and not failures


def test_the_name_scan_agrees_with_the_regular_expression_it_stands_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import connector.select as select

    data = b"xxDeleteNetworkAcl DeleteNetworkAclEntry" + compact(trail(30)) + b"DeleteNatGatewayDeleteNatGateway"
    fast = select.NameScan(name.encode() for name in EVENTS)
    monkeypatch.setattr(select, "ahocorasick_rs", None)
    slow = select.NameScan(name.encode() for name in EVENTS)
    assert fast.positions(data) == slow.positions(data) == [m.start() for m in fast.regex.finditer(data)]
    assert fast.positions(data, 7) == slow.positions(data, 7)
    assert (fast.search(b"GetObject") is None) and (slow.search(b"GetObject") is None) and fast.search(data)
    assert fast.occurs(data) and slow.occurs(data) and not fast.occurs(b"GetObject") and not slow.occurs(b"GetObject")
    head = b'{"eventVersion":"1.'
    assert [m[1] for m in fast.marker_scan(head)(data)] == [m[1] for m in slow.marker_scan(head)(data)]
    assert len(fast.marker_scan(head)(data)) == data.count(head)


KINDS = ("target", "noise", "arrays", *forged_variants())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=40), gzipped=st.booleans())
def test_any_mix_of_records_decodes_to_what_the_parser_finds(kinds: list[str], gzipped: bool) -> None:
    # Targets, noise, records with arrays and every look-alike shape, in any order: the head cut
    # (or its fall-back) finds exactly the targets the parser's full split finds, counts the rest.
    records = []
    for i, kind in enumerate(kinds):
        if kind == "target":
            records.append(make_record(EVENTS[i % len(EVENTS)], event_id=f"target-{i}"))
        elif kind == "noise":
            records.append(noise(i))
        elif kind == "arrays":
            records.append(with_arrays(i))
        else:
            records.append(forged_variants()[kind])
    doc = compact({"Records": records})
    body = gzip.compress(doc) if gzipped else doc
    fast = found(list(Decoder(LimitSettings(), prefilter=SELECTOR.pattern).decode(body, origin="t")))
    full = found(list(Decoder(LimitSettings()).decode(body, origin="t")))
    expected = sorted(f"target-{i}" for i, kind in enumerate(kinds) if kind == "target")
    assert fast[0] == full[0] == expected
    assert not fast[2] and not full[2]
    assert fast[1] == len(records) - len(expected)
