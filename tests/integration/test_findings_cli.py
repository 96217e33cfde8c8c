"""`connector findings` through subprocess against a real OpenSearch node: the SOC questions.

The findings are seeded from the mapping cases (every event, every variant: IAM users, root,
role sessions, a cross-account role, Identity Center, AWS services), spread over three days, some
re-homed into another account and some made by another user, and written by the real sink.
Expected answers are computed from the seeded CloudTrail records, not from what the index holds.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

from connector.config import OpenSearchSettings
from connector.factory import FindingFactory
from connector.model import Outcome
from connector.sinks.opensearch.client import make_client
from connector.sinks.opensearch.setup import install
from connector.sinks.opensearch.sink import OpenSearchSink
from tests.support.moto import free_port
from tests.support.records import ACCOUNT, BOOK, IAM_USER

pytestmark = pytest.mark.opensearch

OTHER_ACCOUNT = "444455556666"
ALICE = IAM_USER["arn"]  # arn:aws:iam::111122223333:user/alice


def seed_records() -> list[dict[str, Any]]:
    records = []
    for n, case in enumerate(BOOK.cases()):
        record = copy.deepcopy(case.record)
        if n % 3 == 1 and record.get("userIdentity", {}).get("userName") == "alice":
            record = json.loads(json.dumps(record).replace("alice", "bob"))
        record["eventID"] = f"seed-{n:03d}"
        record["eventTime"] = f"2026-11-{18 + n % 3}T10:{n % 60:02d}:00Z"
        records.append(record)
        if n % 4 == 0:
            other = json.loads(json.dumps(record).replace(ACCOUNT, OTHER_ACCOUNT))
            other["eventID"] = f"seed-{n:03d}-other"
            records.append(other)
    return records


@pytest.fixture(scope="module")
def seeded(opensearch_url: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    records = seed_records()
    factory = FindingFactory.load()
    batch = [rendered for record in records for rendered in factory.render(record)]
    assert len(batch) == 2 * len(records)
    sink = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    results = sink.send(batch)
    assert all(r.outcome is Outcome.OK for r in results), [r.error for r in results if r.outcome is not Outcome.OK][:3]
    client = make_client(OpenSearchSettings(url=opensearch_url))
    client.indices.refresh(index=f"{prefix}-*")
    client.close()
    sink.close()
    yield prefix, records


def connector(url: str, prefix: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, CONNECTOR_OPENSEARCH_URL=url, CONNECTOR_OPENSEARCH_INDEX_PREFIX=prefix, **(env or {}))
    return subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True, text=True, env=environ, timeout=120)


class Cli:
    """The same command in this process (fast): exit code, stdout, stderr."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, prefix: str) -> None:
        self.capsys = capsys
        monkeypatch.setenv("CONNECTOR_OPENSEARCH_URL", url)
        monkeypatch.setenv("CONNECTOR_OPENSEARCH_INDEX_PREFIX", prefix)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        from connector.cli import main

        self.capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, opensearch_url: str,
        seeded: tuple[str, list[dict[str, Any]]]) -> Cli:
    return Cli(capsys, monkeypatch, opensearch_url, seeded[0])


def csv_counts(text: str) -> dict[str, int]:
    rows = list(csv.reader(io.StringIO(text)))
    return {key: int(n) for key, n in rows[1:]}


def identity(record: dict[str, Any]) -> dict[str, Any]:
    return dict(record.get("userIdentity") or {})


def test_principal_arn_counted_by_event_as_csv(opensearch_url: str, seeded: tuple[str, list[dict[str, Any]]]) -> None:
    """The acceptance question: what did this principal do, counted by event, for a spreadsheet."""
    prefix, records = seeded
    expected = Counter(r["eventName"] for r in records if identity(r).get("arn") == ALICE)
    assert len(expected) == 5 and sum(expected.values()) > 20
    done = connector(opensearch_url, prefix, "findings", "--principal", ALICE, "--count-by", "event", "--output", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "event,count"
    assert csv_counts(done.stdout) == dict(expected)
    # ARNs and event names in any case
    upper = connector(opensearch_url, prefix, "findings", "--principal", ALICE.upper(), "--count-by", "event", "--output", "csv")
    assert csv_counts(upper.stdout) == dict(expected)
    one = connector(opensearch_url, prefix, "findings", "--principal", ALICE, "--event", "deletenatgateway", "--output", "csv", "--limit", "1000")
    assert len(one.stdout.splitlines()) - 1 == expected["DeleteNatGateway"]
    assert f"showing {expected['DeleteNatGateway']} of {expected['DeleteNatGateway']} finding(s)" in one.stderr


@pytest.mark.parametrize(("value", "matches"), [
    ("root", lambda u: u.get("type") == "Root"),
    ("ROOT", lambda u: u.get("type") == "Root"),
    ("bob", lambda u: u.get("userName") == "bob"),
    ("arn:aws:iam::111122223333:role/NetworkAdmin", lambda u: "assumed-role/NetworkAdmin/" in (u.get("arn") or "")
     and ":111122223333:" in u["arn"]),
    ("999988887777", lambda u: ":999988887777:" in (u.get("arn") or "")),
    ("deploy-session", lambda u: (u.get("arn") or "").endswith("/deploy-session")),
])
def test_principal_by_name_arn_or_account(cli: Cli, seeded: tuple[str, list[dict[str, Any]]], value: str, matches: Any) -> None:
    _, records = seeded
    expected = sum(1 for r in records if matches(identity(r)))
    assert expected > 0
    done = cli("findings", "--principal", value, "--count-by", "severity", "--output", "json")
    assert done.returncode == 0, done.stderr
    assert sum(json.loads(line)["count"] for line in done.stdout.splitlines()) == expected
    assert done.stderr.startswith(f"{expected} finding(s)")


def test_counts_by_account_principal_severity_and_day(cli: Cli, seeded: tuple[str, list[dict[str, Any]]]) -> None:
    _, records = seeded
    factory = FindingFactory.load()
    asff = [rf.finding for r in records for rf in factory.render(r) if rf.format == "asff"]
    expected = {
        "account": Counter(r["recipientAccountId"] for r in records),
        "severity": Counter(f.severity.name for f in asff),
        "day": Counter(r["eventTime"][:10] for r in records),
        "principal": Counter(f.event.identity.arn or f.event.identity.invoked_by or f.event.identity.display for f in asff),
    }
    assert len(expected["account"]) == 2 and len(expected["day"]) == 3 and len(expected["principal"]) > 5
    for key, counts in expected.items():
        done = cli("findings", "--count-by", key, "--output", "csv")
        assert done.returncode == 0, done.stderr
        assert csv_counts(done.stdout) == dict(counts), key
    # the table: most first, and the total
    table = cli("findings", "--count-by", "account")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ACCOUNT", "COUNT"] and lines[1].split()[0] == ACCOUNT
    assert table.stderr.startswith(f"{len(records)} finding(s), 2 account value(s)")


def test_total_is_reported_beyond_the_limit(cli: Cli, seeded: tuple[str, list[dict[str, Any]]]) -> None:
    _, records = seeded
    done = cli("findings", "--limit", "5", "--format", "ocsf")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 + 5
    assert f"showing 5 of {len(records)} finding(s)" in done.stderr
    newest = max(r["eventTime"] for r in records)
    assert done.stdout.splitlines()[1].split()[0] == newest


def test_flags_are_validated_before_any_query(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown severity or an empty time range is a usage error, not "0 findings"."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: no query may be needed to say so
    urgent = connector(url, "x", "findings", "--severity", "urgent")
    assert urgent.returncode == 2
    assert "'URGENT'" in urgent.stderr and "CRITICAL" in urgent.stderr
    empty = connector(url, "x", "findings", "--since", "1h", "--until", "2h")
    assert empty.returncode == 2 and "is after --until" in empty.stderr
    fast = Cli(capsys, monkeypatch, url, "x")
    for bad in (["--limit", "0"], ["--since", "yesterday"], ["--count-by", "colour"], ["--output", "xml"], ["--status", "open"]):
        done = fast("findings", *bad)
        assert done.returncode == 2, bad
        assert "Traceback" not in done.stderr
    refused = connector(url, "x", "findings")
    assert refused.returncode == 1 and "Connection refused" in refused.stderr and "Traceback" not in refused.stderr


def test_paging_past_the_result_window(opensearch_url: str) -> None:
    """10,050 findings listed in full: search_after in a point in time, no 400 from the window."""
    prefix = f"page{uuid.uuid4().hex[:8]}"
    client: OpenSearch = make_client(OpenSearchSettings(url=opensearch_url))
    try:
        install(client, prefix, ism=False)
        total = 10_050
        # Documents with only the summary fields: the query reads nothing else, and they are
        # quick to write. Many share an event time, so the tie-breaker matters.
        actions = ({"_index": f"{prefix}-asff-2026.11.20", "_id": f"id-{i:05d}",
                    "_source": {"connector": {"finding_id": f"id-{i:05d}", "event_time": f"2026-11-20T10:{i % 60:02d}:00Z",
                                              "event_name": "DeleteNatGateway", "account": ACCOUNT, "severity": "HIGH"}}}
                   for i in range(total))
        helpers.bulk(client, actions, chunk_size=total, max_chunk_bytes=50 * 1024 * 1024)
        client.indices.refresh(index=f"{prefix}-asff")
        done = connector(opensearch_url, prefix, "findings", "--limit", "20000", "--output", "csv")
        assert done.returncode == 0, done.stderr
        rows = list(csv.DictReader(io.StringIO(done.stdout)))
        assert len(rows) == total and len({r["finding_id"] for r in rows}) == total
        times = [r["time"] for r in rows]
        assert times == sorted(times, reverse=True)
        assert f"showing {total} of {total} finding(s)" in done.stderr
        # No point in time is left open.
        assert client.transport.perform_request("GET", "/_search/point_in_time/_all").get("pits", []) == []
    finally:
        client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
        client.close()


def test_config_and_log_level_on_every_command(cli: Cli, monkeypatch: pytest.MonkeyPatch, opensearch_url: str,
                                                seeded: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    prefix, records = seeded
    config = tmp_path / "connector.yaml"
    config.write_text(f"opensearch:\n  url: {opensearch_url}\n  index_prefix: {prefix}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    for key in [k for k in os.environ if k.startswith("CONNECTOR_")]:
        monkeypatch.delenv(key)
    args = ["--config", str(config), "--log-level", "DEBUG", "findings", "--count-by", "day", "--output", "json"]
    before = subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True, text=True, env=env, timeout=120)
    after = cli("findings", "--config", str(config), "--log-level", "ERROR", "--count-by", "day", "--output", "json")
    for done in (before, after):
        assert done.returncode == 0, done.stderr
        assert sum(json.loads(line)["count"] for line in done.stdout.splitlines()) == len(records)
    from connector.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, parser in commands.items():
        if name != "demo":  # the demo reads no settings: an embedded emulator, by design
            assert {"--config", "--log-level"} <= set(parser._option_string_actions), name
    shown = cli("--config", str(config), "config")
    assert shown.returncode == 0 and prefix in shown.stdout
    demo = cli("--config", str(config), "demo")
    assert demo.returncode == 2 and "--config is not read by this command" in demo.stderr
