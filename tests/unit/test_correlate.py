"""Teardown correlation: the window stores under concurrent writers (memory, and DynamoDB on the
moto server), the windows and thresholds, the findings it renders (checked by the shared
validators with --strict), and its place in the pipeline's failure contract."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest

from connector.config import LimitSettings, Settings, load_settings
from connector.correlate import Correlator, DynamoWindowStore, MemoryWindowStore
from connector.correlate.teardown import Member
from connector.deadletters.file import FileDeadLetters
from connector.envelopes import Decoder
from connector.errors import ConfigError
from connector.factory import FindingFactory
from connector.model import DeliveryResult, Finding, Outcome, RenderedFinding, SourceMessage
from connector.pipeline import Pipeline
from connector.select import Selector
from tests.support.moto import MotoServer
from tests.support.moto_serial import serial_moto_server
from tests.support.records import ASSUMED_ROLE, IAM_USER, an_event, make_record

FACTORY = FindingFactory.load()


def record(i: int, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("eventTime", f"2026-11-20T10:15:{i % 60:02d}Z")
    return make_record(an_event(i), event_id=f"corr-{i:03d}", **overrides)


def finding(i: int, **overrides: Any) -> Finding:
    return FACTORY.render(record(i, **overrides))[0].finding


# -- stores --------------------------------------------------------------------------------------

def race(add: Any, writers: int) -> list[frozenset[str]]:
    """``writers`` threads add one member each to one window at the same moment."""
    barrier = threading.Barrier(writers)
    answers: list[frozenset[str]] = [frozenset()] * writers

    def write(n: int) -> None:
        barrier.wait()
        answers[n] = add(f"m{n}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def check_race(answers: list[frozenset[str]], final: frozenset[str]) -> None:
    everyone = {f"m{n}" for n in range(len(answers))}
    assert final == everyone  # nothing lost, one window
    for n, answer in enumerate(answers):
        assert f"m{n}" in answer  # each writer sees its own member
    # The last write's answer is everyone's: exactly one writer sees the full set first... and
    # the answers grow one by one (each write saw the ones applied before it).
    assert sorted(len(a) for a in answers) == list(range(1, len(answers) + 1))


def test_memory_store_concurrent_writers() -> None:
    store = MemoryWindowStore()
    answers = race(lambda m: store.add("w", [m], expires_at=2**40), 16)
    check_race(answers, store.members("w"))
    assert store.add("w", ["m0"], expires_at=2**40) == store.members("w")  # idempotent


def test_memory_store_expiry_and_cap() -> None:
    now = [1000.0]
    store = MemoryWindowStore(max_members=3, clock=lambda: now[0])
    assert store.add("w", ["a", "b", "c", "d"], expires_at=1100) == {"a", "b", "c"}
    now[0] = 1100
    assert store.members("w") == frozenset()
    assert store.add("w", ["e"], expires_at=1200) == {"e"}


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[MotoServer]:
    """DynamoDB on a moto server serving one request at a time (see tests/support/moto_serial.py)."""
    with serial_moto_server() as server:
        yield server


def test_dynamodb_store_concurrent_creates_and_ttl(aws_env: MotoServer, dynamodb: MotoServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.url)
    table = f"corr-{uuid.uuid4().hex[:8]}"
    store = DynamoWindowStore(table)
    store.create_table_if_missing()
    store.create_table_if_missing()  # idempotent
    # Eight writers create one window at the same moment: one creates it, the others' creation
    # is refused by its condition, and every member is in it.
    answers = race(lambda m: DynamoWindowStore(table).add("w#1", [m], expires_at=1_900_000_000), 8)
    check_race(answers, store.members("w#1"))
    client = boto3.client("dynamodb")
    items = client.scan(TableName=table)["Items"]
    assert len(items) == 1 and items[0]["expires_at"] == {"N": "1900000000"}
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    # A later write keeps the first expiry; a full window answers what it holds.
    assert store.add("w#1", ["m0", "x"], expires_at=5) == store.members("w#1")
    assert client.get_item(TableName=table, Key={"window": {"S": "w#1"}})["Item"]["expires_at"] == {"N": "1900000000"}
    small = DynamoWindowStore(table, max_members=2)
    small.add("w#2", ["a", "b"], expires_at=1)
    assert small.add("w#2", ["c"], expires_at=1) == {"a", "b"}


# -- windows and findings ------------------------------------------------------------------------

def test_threshold_window_and_members() -> None:
    correlator = Correlator(MemoryWindowStore(), threshold=5)
    assert correlator.observe([finding(i) for i in range(4)]) == []
    [teardown] = correlator.observe([finding(4)])
    assert [m.finding_id for m in teardown.members] == [finding(i).id for i in range(5)]
    # Failed and dry-run calls deleted nothing; another principal is another window.
    assert correlator.window_of(finding(5, errorCode="Client.UnauthorizedOperation")) is None
    assert correlator.window_of(finding(6, errorCode="Client.DryRunOperation")) is None
    other = correlator.window_of(finding(7, userIdentity=ASSUMED_ROLE))
    assert other is not None and other.key != teardown.window.key
    # The next window of time is another window; the id is a pure function of (key, window).
    later = correlator.window_of(finding(8, eventTime="2026-11-20T10:20:00Z"))
    assert later is not None and later.start == teardown.window.end
    assert Correlator(MemoryWindowStore()).window_of(finding(3)) == teardown.window


def test_key_values_never_reach_the_id_in_clear() -> None:
    hostile = {**IAM_USER, "arn": "arn:aws:iam::111122223333:user/../../x\n$(id)"}
    window = Correlator(MemoryWindowStore()).window_of(finding(1, userIdentity=hostile))
    assert window is not None
    assert "$(id)" not in window.finding_id and ".." not in window.finding_id and "\n" not in window.key


def test_vpc_key_uses_only_well_formed_vpc_ids() -> None:
    correlator = Correlator(MemoryWindowStore(), key="vpc")
    keyed = [f for f in (finding(i) for i in range(10)) if f.values.get("vpcId")]
    assert keyed, "some mapping names the VPC"
    window = correlator.window_of(keyed[0])
    assert window is not None and window.subject == keyed[0].values["vpcId"]
    assert all(correlator.window_of(f) is None for f in (finding(i) for i in range(10)) if not f.values.get("vpcId"))


def test_window_must_divide_a_day() -> None:
    with pytest.raises(ConfigError, match="window_seconds"):
        Correlator(MemoryWindowStore(), window_seconds=7 * 60)
    settings = load_settings(environ={"CONNECTOR_CORRELATION_ENABLED": "true", "CONNECTOR_CORRELATION_THRESHOLD": "3"})
    built = Correlator.from_settings(settings)
    assert built is not None and built.threshold == 3 and isinstance(built.store, MemoryWindowStore)
    assert Correlator.from_settings(Settings()) is None


def test_rendered_teardown(tmp_path: Path, shared_dir: Path) -> None:
    """12 members: ASFF lists 10 in RelatedFindings (its limit) and the rest in ProductFields,
    OCSF lists all 12; both pass the shared validators with --strict."""
    correlator = Correlator(MemoryWindowStore(), threshold=5, clock=lambda: datetime(2026, 11, 20, 11, tzinfo=UTC))
    [teardown] = correlator.observe([finding(i) for i in range(12)])
    asff, ocsf = (r.document for r in correlator.render(teardown))
    ids = [finding(i).id for i in range(12)]
    assert [r["Id"] for r in asff["RelatedFindings"]] == ids[:10]
    assert asff["FindingProviderFields"]["RelatedFindings"] == asff["RelatedFindings"]
    assert [asff["ProductFields"][f"connector/correlation/member/{n}"] for n in (11, 12)] == ids[10:]
    assert [e["uid"] for e in ocsf["finding_info"]["related_events"]] == ids
    assert asff["Severity"]["Label"] in ("HIGH", "CRITICAL") and "Workflow" not in asff
    assert asff["Severity"]["Label"] == ocsf["severity"].upper()
    assert asff["FirstObservedAt"] == "2026-11-20T10:15:00.000Z" and asff["LastObservedAt"] == "2026-11-20T10:15:11.000Z"
    tools = shared_dir / "tools"
    for name, doc in (("asff", asff), ("ocsf", ocsf)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        proc = subprocess.run([sys.executable, str(tools / f"check_{name}.py"), "--strict", str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_member_strings_are_deterministic_and_decoded_defensively() -> None:
    member = Member.of(finding(2))
    assert Member.decode(member.encode()) == member and Member.of(finding(2)).encode() == member.encode()
    assert Member.decode("not json") is None and Member.decode('[1,"a","b",9,"","",""]') is None


# -- the stage in the pipeline --------------------------------------------------------------------

class Sink:
    """A double of the sink contract (not of any AWS API) that holds what it accepts."""

    name: ClassVar[str] = "holding"
    formats: ClassVar[tuple[str, ...]] = ("asff", "ocsf")
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], dict[str, Any]] = {}
        self.refuse_teardowns: Outcome | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Sink:
        return cls()

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        out = []
        for item in batch:
            if self.refuse_teardowns and item.finding.mapping_id == "network-teardown":
                out.append(DeliveryResult(item.finding_id, self.refuse_teardowns, "InvalidInput: no", item.format))
                continue
            self.held[(item.finding_id, item.format)] = dict(item.document)
            out.append(DeliveryResult(item.finding_id, Outcome.OK, None, item.format))
        return out

    def teardowns(self) -> list[dict[str, Any]]:
        return [d for (_, fmt), d in self.held.items() if fmt == "ocsf" and d["finding_info"]["analytic"]["uid"] == "network-teardown"]

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


def pipeline(tmp_path: Path, sink: Sink, store: MemoryWindowStore) -> Pipeline:
    selector = Selector(FACTORY.event_names)
    return Pipeline(factory=FACTORY, decoder=Decoder(LimitSettings(), prefilter=selector.pattern), selector=selector,
                    sinks=[sink], dead_letters=FileDeadLetters(f"file://{tmp_path}/dlq"),
                    correlator=Correlator(store, threshold=5))


def messages(*numbers: int) -> list[SourceMessage]:
    return [SourceMessage(id=f"m{n}", body=json.dumps(record(n)).encode(), source="test") for n in numbers]


def test_pipeline_delivers_the_teardown_and_updates_it_in_place(tmp_path: Path) -> None:
    sink, store = Sink(), MemoryWindowStore()
    result = pipeline(tmp_path, sink, store).handle(messages(*range(8)))
    assert len(result.done) == 8 and not result.retry
    [teardown] = sink.teardowns()
    assert len(teardown["finding_info"]["related_events"]) == 8
    # A new process (nothing in memory but the shared store) and a ninth deletion: same id, 9 members.
    pipeline(tmp_path, sink, store).handle(messages(8))
    [updated] = sink.teardowns()
    assert updated["finding_info"]["uid"] == teardown["finding_info"]["uid"]
    assert len(updated["finding_info"]["related_events"]) == 9


def test_an_undelivered_teardown_keeps_its_members_messages(tmp_path: Path) -> None:
    sink, store = Sink(), MemoryWindowStore()
    sink.refuse_teardowns = Outcome.RETRYABLE
    first = pipeline(tmp_path, sink, store).handle(messages(*range(6)))
    assert len(first.retry) == 6 and not sink.teardowns()  # members delivered, messages not acknowledged
    sink.refuse_teardowns = None
    again = pipeline(tmp_path, sink, store).handle(messages(*range(6)))  # the redelivery
    assert len(again.done) == 6 and len(sink.teardowns()) == 1
    # A permanent refusal is dead-lettered, and the messages go.
    sink.refuse_teardowns = Outcome.PERMANENT
    third = pipeline(tmp_path, sink, store).handle(messages(6))
    assert len(third.done) == 1
    letters = [json.loads(line) for p in (tmp_path / "dlq").rglob("*") if p.is_file() for line in p.read_text().splitlines()]
    assert any("teardown" in json.dumps(letter) for letter in letters)


def test_a_stale_delivery_is_followed_by_the_full_list() -> None:
    """Replica A writes 6 members, B writes 2 more and delivers 8, then A's delivery of 6 lands
    last: A re-reads the window and delivers 8 again."""
    store = MemoryWindowStore()
    a, b = Correlator(store, threshold=5), Correlator(store, threshold=5)
    held: dict[tuple[str, str], RenderedFinding] = {}

    def deliver(items: dict[tuple[str, str], RenderedFinding]) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], list[str]]]:
        held.update(items)
        return {}, {}

    def a_send(items: dict[tuple[str, str], RenderedFinding]) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], list[str]]]:
        if not held:  # B's whole round happens between A's write and A's delivery
            b.process([finding(6), finding(7)], deliver, lambda letters: None)
        return deliver(items)

    assert a.process([finding(i) for i in range(6)], a_send, lambda letters: None) == set()
    [(_, item)] = [(k, v) for k, v in held.items() if k[1] == "ocsf"]
    assert len(item.document["finding_info"]["related_events"]) == 8


@pytest.mark.parametrize(("partition", "region", "console", "docs"), [
    ("aws", "eu-west-1", "https://eu-west-1.console.aws.amazon.com/", "https://docs.aws.amazon.com/"),
    ("aws-cn", "cn-north-1", "https://cn-north-1.console.amazonaws.cn/", "https://docs.amazonaws.cn/en_us/"),
    ("aws-us-gov", "us-gov-west-1", "https://us-gov-west-1.console.amazonaws-us-gov.com/", "https://docs.aws.amazon.com/"),
])
def test_teardown_links_follow_the_partition(partition: str, region: str, console: str, docs: str) -> None:
    """A teardown in the China or GovCloud partition links to that partition's console and
    documentation (a commercial console link would not open for those accounts)."""
    account = "111122223333"
    ident = dict(IAM_USER, arn=f"arn:{partition}:iam::{account}:user/alice")
    correlator = Correlator(MemoryWindowStore(), threshold=3, clock=lambda: datetime(2026, 11, 20, 11, tzinfo=UTC))
    [teardown] = correlator.observe([finding(i, awsRegion=region, userIdentity=ident) for i in range(3)])
    assert teardown.window.partition == partition
    asff, ocsf = (r.document for r in correlator.render(teardown))
    assert asff["SourceUrl"] == f"{console}cloudtrailv2/home?region={region}#/events"
    assert asff["Remediation"]["Recommendation"]["Url"].startswith(docs)
    assert [a["src_url"] for a in ocsf["remediation"]["kb_article_list"]] == [
        asff["Remediation"]["Recommendation"]["Url"], asff["SourceUrl"]]
    assert asff["SourceUrl"] in ocsf["remediation"]["desc"]  # the runbook's console step
    others = {"aws": "amazonaws", "aws-cn": "amazon.com", "aws-us-gov": "amazonaws.cn"}[partition]
    assert others not in asff["SourceUrl"]
