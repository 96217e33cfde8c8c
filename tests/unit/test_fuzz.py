"""Property-based fuzzing of the decoder, the mapper and the pipeline (issue 10, items 3 and 7).

Structure-aware: the inputs are real CloudTrail records (``../shared/corpus/cloudtrail``: the
target events, the near-miss negatives, the envelopes) and the records of the mapping cases,
mutated at any path (a value replaced by one of another type, a key deleted, a record
duplicated) and then wrapped in the envelopes the decoder accepts, nested in any order. The
properties:

- ``Decoder.decode`` and ``FindingFactory.render`` raise nothing but the project's own errors;
- ``Pipeline.handle`` never raises; every message is done (the sink never fails here); a target
  record ends as a finding or a dead letter with a stage and a reason, and that letter is a
  ``ConnectorError`` of a named stage, not an "unexpected" exception the pipeline had to catch;
- good neighbour records in the same message are still delivered.

Bounded by default (``FUZZ_EXAMPLES``, 300 per property) so the file runs in seconds; a long
run: ``FUZZ_EXAMPLES=20000 python -m pytest tests/unit/test_fuzz.py``. Each property counts the
inputs it ran in ``INPUTS`` and the total is printed at the end of the module.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import errors
from connector.config import LimitSettings, Settings
from connector.deadletters.file import FileDeadLetters
from connector.envelopes import DecodedRecord, DecodeFailure, Decoder, Skipped
from connector.errors import ConnectorError
from connector.factory import FindingFactory
from connector.model import DeliveryResult, Outcome, RenderedFinding, SourceMessage
from connector.pipeline import Pipeline
from connector.select import Selector
from tests.conftest import SHARED, require
from tests.support.records import BOOK, EVENTS, make_record

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,  # a reproducible default run; a failure prints its input
)
#: Inputs each property ran (the closing note of issue 10 reports the total).
INPUTS: Counter[str] = Counter()

CORPUS = SHARED / "corpus" / "cloudtrail"
FACTORY = FindingFactory.load()
SELECTOR = Selector(FACTORY.event_names)
OWN_ERRORS = frozenset(
    name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, ConnectorError)
)


# -- seeds: real records ------------------------------------------------------------------------
def _corpus_json(folder: str) -> list[Any]:
    root = CORPUS / folder
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            continue  # a corpus file that is deliberately not JSON is fed as bytes elsewhere
    return out


CORPUS_EVENTS: list[dict[str, Any]] = [r for r in _corpus_json("events") if isinstance(r, dict)]
CORPUS_NEGATIVES: list[dict[str, Any]] = [r for r in _corpus_json("negatives") if isinstance(r, dict)]
CORPUS_ENVELOPES: list[Any] = _corpus_json("envelopes")
CORPUS_RAW: list[bytes] = (
    [p.read_bytes() for p in sorted((CORPUS / "envelopes").iterdir()) if p.is_file()] if CORPUS.is_dir() else []
)
#: Every mapped event's success case, and its corpus records: the targets to mutate.
TARGETS: list[dict[str, Any]] = [make_record(name, event_id=f"seed-{name}") for name in EVENTS] + CORPUS_EVENTS
SEEDS: list[Any] = TARGETS + CORPUS_NEGATIVES


@pytest.fixture(scope="module", autouse=True)
def _corpus_present() -> Iterator[None]:
    require(bool(CORPUS_EVENTS) and bool(CORPUS_NEGATIVES) and bool(CORPUS_ENVELOPES),
            f"{CORPUS} not found (the real CloudTrail corpus)")
    yield
    total = sum(INPUTS.values())
    print(f"\nfuzzing: {total} generated inputs ({dict(INPUTS)})")


# -- hostile values -------------------------------------------------------------------------------
HOSTILE_STRINGS = [
    "../../etc", "../../etc/passwd", "us-east-1/../../x", "a/b", "a\nb", "a\r\nb", "\x00", "", " ", "\t",
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999Z", "2026-02-30T00:00:00Z",
    "٠١٢٣٤٥٦٧٨٩٠١",  # Arabic-Indic digits: str.isdigit() says True
    "１２３４５６７８９０１２",  # fullwidth digits
    "00000000000000000001", "-1", "1e999", "NaN", "Infinity",
    "\u202eevil", "\ufeff", "\ud800", "😀" * 10, "é" * 3, "\u2028", "<script>alert(1)</script>",
    "{0.__class__}", "{eventID}", "%s%n", "arn:aws:iam::111122223333:user/../../x",
    "AKIA" + "A" * 200, "x" * 5000, "x" * 300_000,
    "DeleteNetworkAclEntry", "ec2.amazonaws.com", "aws:sns", "aws:s3", "aws:sqs", "aws:kinesis",
    "Notification", "DATA_MESSAGE", "CONTROL_MESSAGE", "AWS API Call via CloudTrail", "Object Created", "s3:TestEvent",
]
LEAVES = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=30),
    st.integers(),
    st.sampled_from([2**63, 2**64 + 1, -(2**63) - 1, 10**30, -1, 0, 1, 111122223333, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]),
    st.booleans(),
    st.none(),
)
HOSTILE = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(["eventName", "Records", "Message", "Type", "s3", "data"]), st.text(max_size=8)),
                        inner, max_size=4),
    ),
    max_leaves=8,
)


# -- structure-aware mutation ---------------------------------------------------------------------
Path_ = tuple[Any, ...]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _parent(doc: Any, path: Path_) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn, seed: Any, *, max_mutations: int = 4, keep_top: bool = True) -> Any:
    """``seed`` with 1-``max_mutations`` edits at any path: replace (any type), delete, duplicate."""
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(doc)
        if keep_top and len(paths) > 1:
            paths = paths[1:]  # the top stays an object: the record itself, only its contents change
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "duplicate", "empty"]))
        if not path:
            doc = draw(HOSTILE) if op == "replace" else doc
            continue
        parent = _parent(doc, path)
        key = path[-1]
        if op == "replace":
            parent[key] = draw(HOSTILE)
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "duplicate":  # an object member: its value twice, once under another key
            parent[draw(st.sampled_from(["eventID", "Records", "detail", "Message", key + "2"]))] = copy.deepcopy(parent[key])
        else:
            parent[key] = draw(st.sampled_from([{}, [], "", 0]))
    return doc


# -- envelopes ------------------------------------------------------------------------------------
def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # allow_nan: NaN/Infinity reach the parser as written


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _cwl(messages: Sequence[bytes]) -> dict[str, Any]:
    return {
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "aws-cloudtrail-logs",
        "logStream": "111122223333_CloudTrail_eu-west-1", "subscriptionFilters": ["connector"],
        "logEvents": [{"id": str(i), "timestamp": 1700000000000, "message": _text(m)} for i, m in enumerate(messages)],
    }


#: Wrappers of one inner body (bytes) into an outer body: they nest in any order.
WRAP: dict[str, Callable[[bytes], bytes]] = {
    "sns": lambda b: _dumps({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-1:111122223333:t",
                             "Message": _text(b)}),
    "sqs-lambda": lambda b: _dumps({"Records": [{"messageId": "1", "eventSource": "aws:sqs", "body": _text(b)}]}),
    "sns-lambda": lambda b: _dumps({"Records": [{"EventSource": "aws:sns", "Sns": {"Type": "Notification", "Message": _text(b)}}]}),
    "receive-message": lambda b: _dumps({"Messages": [{"MessageId": "1", "ReceiptHandle": "r", "Body": _text(b)}]}),
    "kinesis-lambda": lambda b: _dumps({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"data": _b64(b)}}]}),
    "firehose": lambda b: _dumps({"invocationId": "i", "records": [{"recordId": "1", "data": _b64(b)}]}),
    "cwl-gzip": lambda b: gzip.compress(_dumps(_cwl([b]))),
    "awslogs": lambda b: _dumps({"awslogs": {"data": _b64(gzip.compress(_dumps(_cwl([b]))))}}),
    "gzip": gzip.compress,
}


def container(kind: str, records: Sequence[Any]) -> bytes:
    """Several records in one body, as each transport carries them."""
    if kind == "log-file":
        return _dumps({"Records": list(records)})
    if kind == "json-lines":
        return b"\n".join(_dumps(r) for r in records)
    if kind == "sqs-batch":
        return _dumps({"Records": [{"messageId": str(i), "eventSource": "aws:sqs", "body": json.dumps(r)}
                                   for i, r in enumerate(records)]})
    if kind == "eventbridge-batch":
        return _dumps({"Messages": [{"Body": json.dumps({"version": "0", "detail-type": "AWS API Call via CloudTrail",
                                                         "source": "aws.ec2", "detail": r})} for r in records]})
    if kind == "cwl":
        return gzip.compress(_dumps(_cwl([_dumps(r) for r in records])))
    raise AssertionError(kind)


CONTAINERS = ["log-file", "json-lines", "sqs-batch", "eventbridge-batch", "cwl"]
#: Shapes that name S3 objects (no S3 client here: each must end as a decode letter, not a crash).
S3_NOTICES: list[Any] = [
    {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1", "eventName": "ObjectCreated:Put",
                  "s3": {"bucket": {"name": "trail-bucket"}, "object": {"key": "AWSLogs/111122223333/CloudTrail/x.json.gz"}}}]},
    {"s3Bucket": "trail-bucket", "s3ObjectKey": ["AWSLogs/111122223333/CloudTrail/eu-west-1/2026/x.json.gz"]},
    {"version": "0", "detail-type": "Object Created", "source": "aws.s3",
     "detail": {"bucket": {"name": "trail-bucket"}, "object": {"key": "AWSLogs/x.json.gz"}}},
]


def envelope_seeds() -> list[Any]:
    """Envelope documents (parsed), real and built around a real record, to mutate as a whole."""
    record = TARGETS[0]
    built = [json.loads(container(k, [record, TARGETS[1]])) for k in ("log-file", "sqs-batch", "eventbridge-batch")]
    built += [json.loads(WRAP[k](_dumps(record))) for k in ("sns", "sqs-lambda", "sns-lambda", "receive-message",
                                                            "kinesis-lambda", "firehose", "awslogs")]
    built.append(_cwl([_dumps(record)]))
    return [*CORPUS_ENVELOPES, *S3_NOTICES, *built]


ENVELOPE_SEEDS = envelope_seeds()


@st.composite
def wrapped(draw: st.DrawFn, body: bytes) -> bytes:
    for name in draw(st.lists(st.sampled_from(sorted(WRAP)), max_size=3)):
        body = WRAP[name](body)
    return body


# -- the pipeline under test ------------------------------------------------------------------------
class RecordingSink:
    """A test double of the sink contract: holds every document, remembers where it came from."""

    name: ClassVar[str] = "recording"
    formats: ClassVar[tuple[str, ...]] = ("asff", "ocsf")
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], RenderedFinding] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RecordingSink:
        return cls()

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        for item in batch:
            json.dumps(item.document, allow_nan=False)  # what a real sink sends must be strict JSON
            self.held[(item.finding_id, item.format)] = item
        return [DeliveryResult(item.finding_id, Outcome.OK) for item in batch]

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


def run_pipeline(messages: Sequence[SourceMessage]) -> tuple[Any, RecordingSink, list[dict[str, Any]]]:
    sink = RecordingSink()
    with tempfile.TemporaryDirectory() as tmp:
        letters = FileDeadLetters(f"file://{tmp}/dlq")
        pipeline = Pipeline(factory=FACTORY, decoder=Decoder(LimitSettings(), prefilter=SELECTOR.pattern),
                            selector=SELECTOR, sinks=[sink], dead_letters=letters)
        result = pipeline.handle(messages)  # must not raise
        stored = letters.read()
    return result, sink, stored


def assert_settled(result: Any, messages: Sequence[SourceMessage], stored: list[dict[str, Any]]) -> None:
    assert not result.retry, f"the sink never fails, yet messages were released: {result.reasons}"
    assert sorted(m.id for m in result.done) == sorted(m.id for m in messages)
    for letter in stored:
        assert letter["stage"] and letter["reason"], letter
        assert letter["error_type"] in OWN_ERRORS, (
            f"an exception escaped its stage and was caught by the pipeline: {letter['error_type']}: {letter['reason']}"
        )


def _selected(record: Any) -> bool:
    return isinstance(record, dict) and SELECTOR.matches(record)


NEIGHBOUR_EVENTS = st.sampled_from(EVENTS)


# -- properties -------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_render_raises_only_connector_errors(data: st.DataObject) -> None:
    INPUTS["render"] += 1
    record = data.draw(mutated(data.draw(st.sampled_from(SEEDS))))
    try:
        rendered = FACTORY.render(record, origin="fuzz")
    except ConnectorError as exc:
        assert str(exc) and exc.stage
        return
    for item in rendered:
        json.dumps(item.document, allow_nan=False)
        assert "\n" not in item.finding_id and ".." not in item.finding_id.split("/")


@FUZZ
@given(data=st.data())
def test_decode_raises_only_connector_errors(data: st.DataObject) -> None:
    INPUTS["decode"] += 1
    decoder = Decoder(LimitSettings(), prefilter=data.draw(st.sampled_from([None, SELECTOR.pattern])))
    how = data.draw(st.sampled_from(["envelope", "record", "raw"]))
    if how == "envelope":
        body = _dumps(data.draw(mutated(data.draw(st.sampled_from(ENVELOPE_SEEDS)), keep_top=False)))
    elif how == "record":
        body = container(data.draw(st.sampled_from(CONTAINERS)), [data.draw(mutated(data.draw(st.sampled_from(SEEDS))))])
    else:
        seed = data.draw(st.sampled_from(CORPUS_RAW))
        cut = data.draw(st.integers(0, len(seed)))
        body = data.draw(st.sampled_from([seed[:cut], seed[:cut] + seed[cut + 1:], seed[:cut] + b"\x00\xff{[" + seed[cut:]]))
    body = data.draw(wrapped(body))
    for item in decoder.decode(body, origin="fuzz"):  # only ConnectorError may escape
        assert isinstance(item, (DecodedRecord, DecodeFailure, Skipped))
        if isinstance(item, DecodeFailure):
            assert type(item.error).__name__ in OWN_ERRORS and str(item.error)


@FUZZ
@given(data=st.data())
def test_a_mutated_record_is_a_finding_or_a_letter_and_its_neighbours_are_delivered(data: st.DataObject) -> None:
    INPUTS["pipeline-record"] += 1
    victim = data.draw(mutated(data.draw(st.sampled_from(SEEDS))))
    copies = data.draw(st.integers(1, 2))  # a duplicated record
    left = make_record(data.draw(NEIGHBOUR_EVENTS), event_id="neighbour-left")
    right = make_record(data.draw(NEIGHBOUR_EVENTS), event_id="neighbour-right")
    body = data.draw(wrapped(container(data.draw(st.sampled_from(CONTAINERS)), [left, *[victim] * copies, right])))
    alone = make_record(data.draw(NEIGHBOUR_EVENTS), event_id="other-message")
    messages = [SourceMessage(id="victim", body=body, source="sqs"),
                SourceMessage(id="other", body=_dumps(alone), source="sqs")]
    result, sink, stored = run_pipeline(messages)
    assert_settled(result, messages, stored)
    events = {item.finding.event.event_id for item in sink.held.values()}
    assert {"neighbour-left", "neighbour-right", "other-message"} <= events, "good neighbours are delivered"
    # the mutated record: skipped (not a target any more), or a finding, or a dead letter
    own = events - {"neighbour-left", "neighbour-right", "other-message"}
    if _selected(victim):
        assert own or stored, f"a target record vanished: {victim!r:.300}"
    if stored:
        assert all(letter["source"].startswith("sqs") or letter["source"] for letter in stored)


@FUZZ
@given(data=st.data())
def test_a_mutated_envelope_never_fails_the_batch(data: st.DataObject) -> None:
    INPUTS["pipeline-envelope"] += 1
    doc = data.draw(mutated(data.draw(st.sampled_from(ENVELOPE_SEEDS)), keep_top=False))
    body = data.draw(wrapped(_dumps(doc)))
    alone = make_record(data.draw(NEIGHBOUR_EVENTS), event_id="other-message")
    messages = [SourceMessage(id="fuzzed", body=body, source="kinesis"),
                SourceMessage(id="other", body=_dumps(alone), source="kinesis")]
    result, sink, stored = run_pipeline(messages)
    assert_settled(result, messages, stored)
    assert "other-message" in {item.finding.event.event_id for item in sink.held.values()}
