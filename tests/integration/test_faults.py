"""Fault suite: `connector run` as a real process against the moto server, a sink taken down, and an
accounting table per scenario — sent, delivered per sink, dead-lettered, lost, duplicated.

The clock is shortened (visibility timeout 4 s, the queue's redrive policy ``maxReceiveCount`` 2,
a 40 s outage): without backpressure every message would be received about four times during
the outage and the queue's redrive policy would move it to the DLQ undelivered — the defect
this suite guards against, shown by running the same scenario with ``hold_on_outage`` off.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest

from tests.support.faultproxy import FaultProxy, Faults
from tests.support.moto import MotoServer
from tests.support.records import an_event, make_record
from tests.support.service import (
    queue_depth,
    send_events,
    service_env,
    service_log,
    start_service,
    wait_for,
)

pytestmark = pytest.mark.moto

SH_REGION = "eu-west-1"  # the events' region (tests/support/records.py)


@dataclass
class Accounting:
    """What one scenario did with the events it sent; printed as a table and asserted on."""

    scenario: str
    sent: list[str]
    delivered: dict[str, list[str]] = field(default_factory=dict)  # sink → ids (with repeats)
    dead_lettered: Counter[str] = field(default_factory=Counter)  # reason → count

    #: sink → the ids it should hold (default: all sent)
    expected: dict[str, list[str]] = field(default_factory=dict)
    lettered_ids: list[str] = field(default_factory=list)

    def _expected(self, sink: str) -> set[str]:
        return set(self.expected.get(sink, self.sent))

    def lost(self, sink: str) -> int:
        return len(self._expected(sink) - set(self.delivered.get(sink, [])) - set(self.lettered_ids))

    def duplicated(self, sink: str) -> int:
        ids = [i for i in self.delivered.get(sink, []) if i in self._expected(sink)]
        return len(ids) - len(set(ids))

    def table(self) -> str:
        rows = [f"scenario: {self.scenario}",
                f"{'sink':<14}{'expected':>9}{'delivered':>11}{'lost':>6}{'duplicated':>12}"]
        for sink, ids in self.delivered.items():
            rows.append(f"{sink:<14}{len(self._expected(sink)):>9}{len(set(ids) & self._expected(sink)):>11}"
                        f"{self.lost(sink):>6}{self.duplicated(sink):>12}")
        repeats = len(self.lettered_ids) - len(set(self.lettered_ids))
        rows.append(f"dead-lettered: {len(self.lettered_ids)} ({repeats} repeated)"
                    + "".join(f"\n  {n} × {reason}" for reason, n in self.dead_lettered.most_common()))
        return "\n".join(rows)


def _queues(name: str, max_receives: int) -> tuple[str, str, str]:
    """A queue with the shipped kind of redrive policy (shortened), its DLQ, and the connector's DLQ."""
    sqs = boto3.client("sqs")
    native = sqs.create_queue(QueueName=f"{name}-native-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=native, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": "4",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)}),
    })["QueueUrl"]
    own = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    return queue, native, own


def _drain_letters(url: str) -> list[dict[str, str]]:
    sqs = boto3.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            return out
        for m in got:
            attrs = {k: v.get("StringValue", "") for k, v in (m.get("MessageAttributes") or {}).items()}
            out.append({"reason": attrs.get("reason", "(no reason: moved by the queue's redrive policy)"), "body": m["Body"]})
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _jsonl_event_ids(directory: Path) -> list[str]:
    ids = []
    for path in sorted(directory.glob("*asff*.jsonl*")):
        for line in path.read_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # empty, or a line torn by kill -9 (rewritten on redelivery)
            ids.append(doc["Id"].rsplit("/", 1)[-1])
    return ids


def _security_hub_imports(proxy: FaultProxy, tag: str) -> list[str]:
    """Every finding id Security Hub was sent (repeats included), read from the requests."""
    return [i.rsplit("/", 1)[-1] for r in proxy.imports() for i in r.finding_ids if tag in i]


@pytest.mark.parametrize("hold", [True, False], ids=["backpressure", "without-backpressure"])
def test_a_sink_outage_with_the_redrive_policy_drains_nothing_into_the_dlq(
    aws_env: MotoServer, tmp_path: Path, hold: bool
) -> None:
    boto3.client("securityhub", region_name=SH_REGION).enable_security_hub()
    tag = f"out{uuid.uuid4().hex[:6]}"
    queue, native_dlq, own_dlq = _queues(f"{tag}-q", max_receives=2)
    out = tmp_path / "jsonl"
    with FaultProxy(aws_env.url) as proxy:
        env = service_env(aws_env, queue, own_dlq, out, CONNECTOR_SINKS="jsonl,securityhub",
                          AWS_ENDPOINT_URL_SECURITYHUB=proxy.url, CONNECTOR_SQS_VISIBILITY_TIMEOUT="4",
                          CONNECTOR_HOLD_ON_OUTAGE="true" if hold else "false", CONNECTOR_GATHER_SECONDS="0")
        proc = start_service(env)
        try:
            first = send_events(queue, f"{tag}a", 10)
            wait_for(lambda: len(set(_jsonl_event_ids(out))) == 10, timeout=90)
            # The JSONL sink goes down: its directory becomes a file (writes and its check fail).
            shutil.rmtree(out)
            out.write_text("not a directory")
            during = send_events(queue, f"{tag}b", 10)
            time.sleep(40)
            out.unlink()

            def settled() -> bool:
                if queue_depth(queue):
                    return False
                delivered = set(_jsonl_event_ids(out)) if out.is_dir() else set()
                return set(during) <= delivered or bool(queue_depth(native_dlq) + queue_depth(own_dlq))

            try:
                wait_for(settled, timeout=150, interval=1)
            except AssertionError:
                raise AssertionError(f"did not settle; service log:\n{service_log(proc)[-4000:]}") from None
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        letters = _drain_letters(native_dlq) + _drain_letters(own_dlq)
        account = Accounting(f"jsonl down 40 s, redrive maxReceiveCount 2, hold_on_outage={hold}", [*first, *during])
        # The JSONL files of the first ten went with the directory: count the outage's ten there.
        account.expected["jsonl"] = during
        account.delivered["jsonl"] = _jsonl_event_ids(out) if out.is_dir() else []
        account.delivered["securityhub"] = _security_hub_imports(proxy, tag)
        account.dead_lettered.update(letter["reason"][:100] for letter in letters)
        account.lettered_ids = [json.loads(letter["body"])["eventID"] for letter in letters]
    print("\n" + account.table())
    if hold:
        assert not letters, f"an outage moved messages to a DLQ:\n{account.table()}\n{service_log(proc)[-3000:]}"
        assert sorted(set(account.delivered["jsonl"])) == sorted(during)
        assert account.lost("securityhub") == 0 and account.duplicated("securityhub") == 0, (
            "Security Hub, healthy all along, was sent each finding once (not on every retry)")
        assert account.duplicated("jsonl") == 0
    else:
        # The defect, reproduced: the outage spends the receives and the queue drains the messages.
        assert letters, "expected the redrive policy to move messages when nothing holds them"
        assert all("(no reason" not in r for r in account.dead_lettered), (
            "a message on its last receive is dead-lettered by the connector, with its reason")
        assert account.lost("jsonl") == 0 and account.lost("securityhub") == 0



# -- more scenarios (issue 10 item 7) ------------------------------------------------------


def _held_findings(tag: str) -> list[str]:
    """The ids Security Hub (moto, via GetFindings) holds for this scenario, repeats included."""
    client = boto3.client("securityhub", region_name=SH_REGION)
    ids, token = [], None
    while True:
        page = client.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
        ids += [f["Id"].rsplit("/", 1)[-1] for f in page["Findings"] if tag in f["Id"]]
        token = page.get("NextToken")
        if not token:
            return ids


def _forwarded_imports(proxy: FaultProxy, tag: str) -> list[str]:
    """Finding ids in the imports that reached Security Hub (not the ones answered 429/500)."""
    return [i.rsplit("/", 1)[-1] for r in proxy.imports() if r.answer == "forwarded" for i in r.finding_ids if tag in i]


def _letter_id(body: str) -> str:
    """The eventID a dead letter is about (its body is the record, or the message around it)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:60]
    if isinstance(doc, dict):
        for key in ("eventID", "event_id", "Id"):  # a record, or a finding a sink rejected
            if isinstance(doc.get(key), str):
                return str(doc[key]).rsplit("/", 1)[-1]
    return body[:60]


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _both_sinks(aws_env: MotoServer, queue: str, dlq: str, out: Path, proxy: FaultProxy, **extra: str) -> dict[str, str]:
    boto3.client("securityhub", region_name=SH_REGION).enable_security_hub()
    return service_env(aws_env, queue, dlq, out, CONNECTOR_SINKS="jsonl,securityhub", AWS_ENDPOINT_URL_SECURITYHUB=proxy.url,
                       CONNECTOR_SQS_VISIBILITY_TIMEOUT="4", CONNECTOR_GATHER_SECONDS="0", **extra)


def test_kill_9_at_random_points_loses_and_duplicates_nothing(aws_env: MotoServer, tmp_path: Path) -> None:
    """`connector run` killed with SIGKILL at random points N times (FAULTS_FULL=1: 20), a new
    wave of events before each start, then one last run until the queue is empty."""
    kills = 20 if os.environ.get("FAULTS_FULL") == "1" else 5
    rng = random.Random(int(os.environ.get("FAULTS_SEED", "10")))
    tag = f"k9{uuid.uuid4().hex[:6]}"
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"{tag}-q", Attributes={"VisibilityTimeout": "4"})["QueueUrl"]
    own_dlq = sqs.create_queue(QueueName=f"{tag}-dlq")["QueueUrl"]
    out = tmp_path / "jsonl"
    sent: list[str] = []
    with FaultProxy(aws_env.url) as proxy:
        env = _both_sinks(aws_env, queue, own_dlq, out, proxy)
        for round_ in range(kills):
            sent += send_events(queue, f"{tag}r{round_:02d}", 10)
            proc = start_service(env)
            time.sleep(rng.uniform(0.5, 4.0))  # start-up, receiving, mid-delivery, deleting
            proc.kill()
            proc.wait(timeout=10)
        proc = start_service(env)
        try:
            try:
                wait_for(lambda: not queue_depth(queue) and set(sent) <= set(_held_findings(tag)), timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(f"not everything delivered after {kills} kills:\n{service_log(proc)}") from None
        finally:
            _stop(proc)
        letters = _drain_letters(own_dlq)
        account = Accounting(f"SQS, kill -9 x{kills} at random points, restart each time", sent)
        account.delivered["jsonl"] = _jsonl_event_ids(out)
        account.delivered["securityhub"] = _held_findings(tag)
        account.delivered["sh-imports"] = _forwarded_imports(proxy, tag)
        account.dead_lettered.update(letter["reason"][:100] for letter in letters)
        account.lettered_ids = [_letter_id(letter["body"]) for letter in letters]
    print("\n" + account.table())
    assert not letters, account.table()
    for sink in ("jsonl", "securityhub"):
        assert account.lost(sink) == 0, account.table()
    assert account.duplicated("securityhub") == 0, account.table()
    # At-least-once: a kill between delivery and DeleteMessage re-delivers at most the batches in
    # flight (4 batches of 10) once per kill; re-imports are upserts of the same id.
    bound = kills * 40
    assert account.duplicated("jsonl") <= bound and account.duplicated("sh-imports") <= bound, account.table()


def test_security_hub_throttling_and_failed_findings(aws_env: MotoServer, tmp_path: Path) -> None:
    """A third of BatchImportFindings calls answered 429; one finding rejected permanently in
    FailedFindings: it is dead-lettered once with its reason, everything else delivered once."""
    tag = f"thr{uuid.uuid4().hex[:6]}"
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"{tag}-q", Attributes={"VisibilityTimeout": "4"})["QueueUrl"]
    own_dlq = sqs.create_queue(QueueName=f"{tag}-dlq")["QueueUrl"]
    out = tmp_path / "jsonl"
    rejected = f"{tag}-0007"
    with FaultProxy(aws_env.url, Faults(throttle_fraction=0.35, reject_marker=rejected, seed=7)) as proxy:
        env = _both_sinks(aws_env, queue, own_dlq, out, proxy)
        sent = send_events(queue, tag, 30)
        proc = start_service(env)
        try:
            def settled() -> bool:
                return (not queue_depth(queue) and set(sent) - {rejected} <= set(_held_findings(tag))
                        and bool(queue_depth(own_dlq)))
            try:
                wait_for(settled, timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(f"did not settle:\n{service_log(proc)}") from None
        finally:
            _stop(proc)
        letters = _drain_letters(own_dlq)
        throttled = sum(1 for r in proxy.imports() if r.answer == "throttled")
        account = Accounting(f"Security Hub 35% of imports 429 ({throttled} throttled), {rejected} rejected (InvalidInput)", sent)
        account.expected["securityhub"] = [i for i in sent if i != rejected]
        account.expected["sh-imports"] = account.expected["securityhub"]
        account.delivered["jsonl"] = _jsonl_event_ids(out)
        account.delivered["securityhub"] = _held_findings(tag)
        account.delivered["sh-imports"] = _forwarded_imports(proxy, tag)
        account.dead_lettered.update(letter["reason"][:100] for letter in letters)
        account.lettered_ids = [_letter_id(letter["body"]) for letter in letters]
    print("\n" + account.table())
    assert throttled, "the proxy throttled nothing: the scenario did not happen"
    for sink in ("jsonl", "securityhub", "sh-imports"):
        assert account.lost(sink) == 0 and account.duplicated(sink) == 0, account.table()
    assert rejected not in account.delivered["securityhub"]
    assert account.lettered_ids == [rejected], account.table()
    assert "InvalidInput" in letters[0]["reason"], letters[0]["reason"]
