"""Property-based fuzzing of the decoder, the mapper and the pipeline (issue 10, items 3 and 7).

Structure-aware: the inputs are real CloudTrail records (``../shared/corpus/cloudtrail``: the
target events, the near-miss negatives, the envelopes) and the records of the mapping cases,
mutated at any path (a value replaced by one of another type, a key deleted, a record
duplicated) and then wrapped in the envelopes the decoder accepts, nested in any order. The
properties:

- ``Decoder.decode`` and ``FindingFactory.render`` raise nothing but the project's own errors;
- ``Pipeline.handle`` never raises; every message is done, or released only when the sink is
  down (a sink double that holds everything, or is down for a whole batch); a target
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
from tests.support.records import EVENTS, make_record

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


@pytest.fixture(autouse=True)
def _count_per_property(request: pytest.FixtureRequest) -> Iterator[None]:
    """With ``-s``, each property's count as it ends (a long run cut short still reports)."""
    before = sum(INPUTS.values())
    yield
    if sum(INPUTS.values()) > before:
        print(f"\n{request.node.name}: {sum(INPUTS.values()) - before} inputs", flush=True)


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
STRICT_LEAVES = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=30),
    st.integers(),
    st.sampled_from([2**63, 2**64 + 1, -(2**63) - 1, 10**30, -1, 0, 1, 111122223333, 10**400]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e308, 5e-324]),
    st.booleans(),
    st.none(),
)
#: NaN and Infinity are no JSON, yet the standard library's parser reads them (the decoder falls
#: back to it, so one such value costs its record, not the document): they reach the mapper.
LEAVES = st.one_of(STRICT_LEAVES, st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([math.nan, math.inf, -math.inf]))


def _hostile(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.sampled_from(["eventName", "Records", "Message", "Type", "s3", "data"]), st.text(max_size=8))
    return st.recursive(
        leaves, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=8
    )


HOSTILE = _hostile(LEAVES)
STRICT_HOSTILE = _hostile(STRICT_LEAVES)


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
def mutated(draw: st.DrawFn, seed: Any, *, max_mutations: int = 4, keep_top: bool = True, strict: bool = False) -> Any:
    """``seed`` with 1-``max_mutations`` edits at any path: replace (any type), delete, duplicate.
    ``strict``: only values that JSON can carry."""
    hostile = STRICT_HOSTILE if strict else HOSTILE
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(doc)
        if keep_top and len(paths) > 1:
            paths = paths[1:]  # the top stays an object: the record itself, only its contents change
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "duplicate", "empty"]))
        if not path:
            doc = draw(hostile) if op == "replace" else doc
            continue
        parent = _parent(doc, path)
        key = path[-1]
        if op == "replace":
            parent[key] = draw(hostile)
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
    """A body as the text of a text-only transport (SNS, SQS): binary travels base64-encoded."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _cwl(messages: Sequence[bytes]) -> dict[str, Any]:
    return {
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "aws-cloudtrail-logs",
        "logStream": "111122223333_CloudTrail_eu-west-1", "subscriptionFilters": ["connector"],
        "logEvents": [{"id": str(i), "timestamp": 1700000000000, "message": _text(m)} for i, m in enumerate(messages)],
    }


#: Wrappers of one inner body (bytes) into an outer body: they nest in any order. (A CloudWatch
#: Logs event carries one record as its message, never an envelope: CWL is a container below.)
WRAP: dict[str, Callable[[bytes], bytes]] = {
    "sns": lambda b: _dumps({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-1:111122223333:t",
                             "Message": _text(b)}),
    "sqs-lambda": lambda b: _dumps({"Records": [{"messageId": "1", "eventSource": "aws:sqs", "body": _text(b)}]}),
    "sns-lambda": lambda b: _dumps({"Records": [{"EventSource": "aws:sns", "Sns": {"Type": "Notification", "Message": _text(b)}}]}),
    "receive-message": lambda b: _dumps({"Messages": [{"MessageId": "1", "ReceiptHandle": "r", "Body": _text(b)}]}),
    "kinesis-lambda": lambda b: _dumps({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"data": _b64(b)}}]}),
    "firehose": lambda b: _dumps({"invocationId": "i", "records": [{"recordId": "1", "data": _b64(b)}]}),
    "awslogs": lambda b: _dumps({"awslogs": {"data": _b64(b if b[:2] == b"\x1f\x8b" else gzip.compress(b))}}),
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
    if kind == "cwl":  # as Kinesis carries it; WRAP["awslogs"] makes the Lambda shape of it
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
def wrapped(draw: st.DrawFn, body: bytes, *, depth: int = 3) -> bytes:
    for name in draw(st.lists(st.sampled_from(sorted(WRAP)), max_size=depth)):
        body = WRAP[name](body)
    return body


# -- the pipeline under test ------------------------------------------------------------------------
class RecordingSink:
    """A test double of the sink contract: holds every document, remembers where it came from."""

    name: ClassVar[str] = "recording"
    formats: ClassVar[tuple[str, ...]] = ("asff", "ocsf")
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, down: bool = False) -> None:
        self.held: dict[tuple[str, str], RenderedFinding] = {}
        self.down = down

    @classmethod
    def from_settings(cls, settings: Settings) -> RecordingSink:
        return cls()

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        if self.down:
            raise ConnectionError("sink is down")
        for item in batch:
            json.dumps(item.document, allow_nan=False)  # what a real sink sends must be strict JSON
            self.held[(item.finding_id, item.format)] = item
        return [DeliveryResult(item.finding_id, Outcome.OK) for item in batch]

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


def run_pipeline(messages: Sequence[SourceMessage], *, down: bool = False) -> tuple[Any, RecordingSink, list[dict[str, Any]]]:
    sink = RecordingSink(down=down)
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
    # two wrappers at most: with more, the envelope nesting limit may (rightly) refuse the whole body
    body = data.draw(wrapped(container(data.draw(st.sampled_from(CONTAINERS)), [left, *[victim] * copies, right]), depth=2))
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
    for letter in stored:  # only the mutated record can owe one, and it names its message
        assert letter["source"] == "sqs:victim" and letter["record_id"], letter


@FUZZ
@given(data=st.data())
def test_a_mutated_envelope_never_fails_the_batch(data: st.DataObject) -> None:
    INPUTS["pipeline-envelope"] += 1
    doc = data.draw(mutated(data.draw(st.sampled_from(ENVELOPE_SEEDS)), keep_top=False))
    body = data.draw(wrapped(_dumps(doc)))
    alone = make_record(data.draw(NEIGHBOUR_EVENTS), event_id="other-message")
    messages = [SourceMessage(id="fuzzed", body=body, source="kinesis"),
                SourceMessage(id="other", body=_dumps(alone), source="kinesis")]
    down = data.draw(st.booleans())
    result, sink, stored = run_pipeline(messages, down=down)
    if not down:
        assert_settled(result, messages, stored)
        assert "other-message" in {item.finding.event.event_id for item in sink.held.values()}
        return
    # the sink is down: a message is released only for that, and the healthy one with it
    assert {m.id for m in result.done} | {m.id for m in result.retry} == {"fuzzed", "other"}
    assert "other" in {m.id for m in result.retry}
    assert all("sink is down" in result.reasons[m.id] for m in result.retry), result.reasons
    assert all(letter["error_type"] in OWN_ERRORS for letter in stored)


# -- attacker-influenced values: dead-lettered before they reach ids, URLs or paths ------------------
HOSTILE_FIELDS = [
    ("awsRegion", "../../etc", "awsRegion"),
    ("awsRegion", "us-east-1/../../x", "awsRegion"),
    ("awsRegion", "eu-west-1\nInjected: yes", "awsRegion"),
    ("recipientAccountId", "١١١١٢٢٢٢٣٣٣٣", "recipientAccountId"),  # Arabic-Indic: str.isdigit() is True
    ("recipientAccountId", "１１１１２２２２３３３３", "recipientAccountId"),  # fullwidth digits
    ("recipientAccountId", "1111/../3333", "recipientAccountId"),
    ("eventID", "a/../../b", "eventID"),
    ("eventID", "abc\ndef", "eventID"),
    ("eventID", "ü-0000", "eventID"),
    ("eventID", ["not", "a", "string"], "eventID"),
    ("eventTime", "9999-12-31T23:59:59-05:00", "eventTime"),
    ("eventTime", "0001-01-01T00:00:00+14:00", "eventTime"),
]


@pytest.mark.parametrize(("field", "value", "named"), HOSTILE_FIELDS)
def test_a_hostile_value_dead_letters_its_record_and_spares_its_neighbours(field: str, value: Any, named: str) -> None:
    hostile = make_record(EVENTS[0], event_id="hostile-0001", **{field: value})
    good = make_record(EVENTS[1], event_id="good-0001")
    messages = [SourceMessage(id="m", body=container("log-file", [hostile, good]), source="sqs")]
    result, sink, stored = run_pipeline(messages)
    assert_settled(result, messages, stored)
    assert {item.finding.event.event_id for item in sink.held.values()} == {"good-0001"}
    [letter] = stored
    assert letter["stage"] == "map" and letter["error_type"] == "InvalidRecord"
    assert named in letter["reason"]
    assert "\n" not in letter["record_id"] and ".." not in letter["record_id"]


def test_the_caller_account_does_not_stand_in_for_a_malformed_recipient() -> None:
    """A bad recipientAccountId is not replaced by userIdentity.accountId (another account)."""
    with pytest.raises(errors.InvalidRecord, match="recipientAccountId"):
        FACTORY.render(make_record(EVENTS[0], recipientAccountId="٠١٢٣٤٥٦٧٨٩٠١"))
    assert FACTORY.render(make_record(EVENTS[0], recipientAccountId=None))[0].finding.event.account_id == "111122223333"


def test_a_hostile_arn_partition_does_not_reach_the_product_arn_or_the_console_url() -> None:
    identity = dict(make_record(EVENTS[0])["userIdentity"], arn="arn:../../etc:iam::111122223333:user/alice")
    [asff, ocsf] = FACTORY.render(make_record(EVENTS[0], userIdentity=identity))
    assert asff.finding.event.partition == "aws"  # from the region, the ARN's is not a partition
    assert asff.document["ProductArn"].startswith("arn:aws:securityhub:eu-west-1:111122223333:")
    assert ".." not in asff.document["SourceUrl"] and ".." not in ocsf.document["cloud"]["cloud_partition"]


class _NoS3:
    """Records every S3 call: a reference that is no bucket must not get as far as one."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def get_object(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        raise AssertionError("no S3 request expected")


@pytest.mark.parametrize("bucket", ["../../etc", "..", "a/b", "bucket\nname", ["trail-bucket"], {"name": "x"}])
def test_an_s3_reference_to_something_that_is_no_bucket_is_a_letter_without_an_s3_call(bucket: Any) -> None:
    s3 = _NoS3()
    decoder = Decoder(LimitSettings(), s3_client=s3)
    bodies = [
        {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": bucket}, "object": {"key": "AWSLogs/x.json.gz"}}}]},
        {"s3Bucket": bucket, "s3ObjectKey": ["AWSLogs/x.json.gz"]},
        {"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {"name": bucket}, "object": {"key": "k"}}},
    ]
    for body in bodies:
        [item] = list(decoder.decode(_dumps(body), origin="sqs:m"))
        assert isinstance(item, DecodeFailure) and item.error.stage == "decode", item
        assert "\n" not in item.origin and "../" not in item.origin
    assert s3.calls == []


@pytest.mark.parametrize("body", [
    {"Records": [{"eventSource": "aws:sns", "Sns": 5}]},
    {"Records": [{"eventSource": "aws:kinesis", "kinesis": ["data"]}]},
    {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": "trail", "object": {"key": "k"}}}]},
    {"Messages": [["Body"]]},
    {"invocationId": "i", "records": [7]},
    {"messageType": "DATA_MESSAGE", "logEvents": 5},
    {"messageType": "DATA_MESSAGE", "logEvents": [[{"message": "x"}]]},
])
def test_an_envelope_member_of_the_wrong_type_is_a_decode_letter(body: Any) -> None:
    items = list(Decoder(LimitSettings()).decode(_dumps(body), origin="sqs:m"))
    assert items and all(isinstance(i, DecodeFailure) for i in items), items
    assert all("not" in str(i.error) for i in items)


def test_a_non_string_event_name_is_not_selected() -> None:
    record = make_record(EVENTS[0])
    for name in ([EVENTS[0]], {EVENTS[0]: 1}, None, 5):
        assert not SELECTOR.matches(dict(record, eventName=name))


@pytest.mark.parametrize("value", ["\ud800", math.nan, math.inf])
@pytest.mark.parametrize("kind", CONTAINERS)
def test_a_value_strict_parsers_refuse_costs_its_record_not_the_log_file(value: Any, kind: str) -> None:
    """Found by the fuzzer: a lone surrogate escape or a NaN in one record made orjson and msgspec
    refuse the whole log file, so all its records went to one letter."""
    hostile = make_record(EVENTS[0], event_id="hostile-0002", userAgent=value)
    body = container(kind, [make_record(EVENTS[1], event_id="left"), hostile, make_record(EVENTS[2], event_id="right")])
    messages = [SourceMessage(id="m", body=body, source="sqs")]
    result, sink, stored = run_pipeline(messages)
    assert_settled(result, messages, stored)
    delivered = {item.finding.event.event_id for item in sink.held.values()}
    assert {"left", "right"} <= delivered
    if isinstance(value, str):  # the surrogate reaches the finding: refused before any sink
        assert "hostile-0002" not in delivered
        [letter] = stored
        assert letter["stage"] == "validate" and "UTF-8" in letter["reason"]
