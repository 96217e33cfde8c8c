"""`connector replay` at organisation scale, against the moto server's S3.

10,000 small log files (half of them without a target, so the byte prefilter skips them
whole): the counts the replay reports are exact; a SIGKILL in the middle and a rerun deliver
every finding, re-deliver only findings of files that were in flight at the kill, and leave
one state row per file; the listing is read lazily; a failure is logged with its reason; a
terminal gets a progress bar.

Creating 10,000 objects and reading them back is bound by moto (a few milliseconds of its CPU
per request), not by the connector: this module takes about 2.5 minutes on a quiet 2-core
machine (15 at a load of 20).
``CONNECTOR_TEST_REPLAY_FILES`` makes it smaller for a quick local run.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.sources.files import FilesSource
from connector.sources.replay_state import ReplayState, Totals
from tests.support.moto import MotoServer, put_objects
from tests.support.records import an_event, make_record

FILES = int(os.environ.get("CONNECTOR_TEST_REPLAY_FILES", "10000"))
RECORDS_PER_FILE = 5
PREFIX = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/"
#: Decoded and delivered at once by the replay below: CONNECTOR_MAX_IN_FLIGHT batches of
#: CONNECTOR_GATHER_MESSAGES files. Only these can be delivered and not yet recorded at a kill.
MAX_IN_FLIGHT, GATHER = 4, 20
NOISE = ("GetObject", "PutObject", "ListBuckets", "DescribeInstances", "AssumeRole")


def key(index: int) -> str:
    return f"{PREFIX}123456789012_CloudTrail_us-east-1_20261120T1005Z_{index:05d}{uuid.uuid4().hex[:8]}.json.gz"


def log_file(index: int) -> bytes:
    """Five records; an even file's first one is a target (event id ``file<index>``)."""
    records: list[dict[str, Any]] = [
        {"eventVersion": "1.08", "eventSource": "s3.amazonaws.com", "eventName": NOISE[k], "eventID": f"noise-{index}-{k}",
         "awsRegion": "us-east-1", "eventTime": "2026-11-20T10:00:00Z", "recipientAccountId": "123456789012"}
        for k in range(RECORDS_PER_FILE)
    ]
    if index % 2 == 0:
        records[0] = make_record(an_event(index), event_id=f"file{index:05d}", eventTime="2026-11-20T10:00:00Z")
    return gzip.compress(json.dumps({"Records": records}).encode())


def index_of(name: str) -> int:
    return int(name.rsplit("_", 1)[1][:5])


@pytest.fixture(scope="module")
def trail(moto_server: MotoServer) -> Iterator[str]:
    """A bucket of FILES log files (created once for the module)."""
    bucket = f"replay-scale-{uuid.uuid4().hex[:8]}"
    saved = dict(os.environ)
    os.environ.update(moto_server.env())
    try:
        boto3.client("s3").create_bucket(Bucket=bucket)
        put_objects(moto_server, bucket, ((key(i), log_file(i)) for i in range(FILES)))
        yield bucket
    finally:
        os.environ.clear()
        os.environ.update(saved)


def replay_cmd(location: str, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "connector", "replay", location, "--sinks", "jsonl",
            "--state", str(tmp_path / "state.sqlite"), *extra]


def replay_env(server: MotoServer, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, **server.env(), CONNECTOR_JSONL_DIRECTORY=str(tmp_path / "out"),
                CONNECTOR_DEAD_LETTER=f"file://{tmp_path}/dlq", CONNECTOR_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT),
                CONNECTOR_GATHER_MESSAGES=str(GATHER))


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def finished(state: Path) -> set[str]:
    with sqlite3.connect(state) as db:
        return {row[0] for row in db.execute("SELECT name FROM finished")}


@pytest.mark.moto
@pytest.mark.timeout(1800)  # moto's S3 at a few ms of CPU a request, on a shared 2-core machine
def test_replay_counts_and_resumes_after_sigkill(moto_server: MotoServer, trail: str, tmp_path: Path) -> None:
    env = replay_env(moto_server, tmp_path)
    state = tmp_path / "state.sqlite"
    # 1. A replay killed (SIGKILL: no cleanup at all) once about a third of the files are finished.
    with open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(replay_cmd(f"s3://{trail}/AWSLogs/", tmp_path, "--progress-seconds", "0.5"),
                                 env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 900
        done: set[str] = set()
        while time.monotonic() < deadline and first.poll() is None:
            if state.exists():
                try:
                    done = finished(state)
                except sqlite3.OperationalError:  # the tables are not made yet
                    done = set()
                if len(done) >= FILES // 3:
                    break
            time.sleep(0.2)
        assert first.poll() is None, "the replay ended before it could be killed: " + (tmp_path / "first.err").read_text()
        first.send_signal(signal.SIGKILL)
        first.wait()
    at_kill = finished(state)
    assert FILES // 3 <= len(at_kill) < FILES
    progress = [line for line in json_lines((tmp_path / "first.err").read_text()) if line.get("message") == "replay progress"]
    # The first files were finished while the listing was still going (it is read lazily).
    assert any(p["files"] > 0 and not p["listing_done"] for p in progress), progress[:3]

    # 2. The same command again finishes the rest.
    second = subprocess.run(replay_cmd(f"s3://{trail}/AWSLogs/", tmp_path), env=env, capture_output=True, text=True,
                            timeout=1200)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = [line for line in json_lines(second.stderr) if "total_files" in line]
    assert len(summary) == 1, second.stderr[-3000:]
    got = summary[0]
    rest = FILES - len(at_kill)
    rest_targets = sum(1 for name in finished(state) - at_kill if index_of(name) % 2 == 0)
    assert got["files_finished_earlier"] == len(at_kill)
    assert (got["files"], got["records"], got["findings"]) == (rest, rest * RECORDS_PER_FILE, rest_targets)
    # The whole backfill, over both runs: every file, every record (prefilter-skipped ones
    # included), every finding, each counted once.
    assert (got["total_files"], got["total_records"], got["total_findings"]) == (FILES, FILES * RECORDS_PER_FILE, FILES // 2)
    assert got["files_failed"] == 0 and got["dead_lettered"] == 0
    assert got["bytes"] > 0 and got["records_per_s"] > 0

    assert len(finished(state)) == FILES
    # (A line torn by the kill does not parse and is skipped, as the JSONL sink tells readers to.)
    seen = Counter(doc["Id"].rsplit("/", 1)[-1] for doc in json_lines((tmp_path / "out" / "asff.jsonl").read_text()))
    assert set(seen) == {f"file{i:05d}" for i in range(0, FILES, 2)}  # every finding is there
    twice = {finding for finding, n in seen.items() if n > 1}
    assert all(n <= 2 for n in seen.values())
    # Only files that were in flight at the kill (delivered, not yet recorded) were read again.
    finished_indexes = {index_of(name) for name in at_kill}
    assert not {int(f.removeprefix("file")) for f in twice} & finished_indexes
    assert len(twice) <= MAX_IN_FLIGHT * GATHER


@pytest.mark.moto
def test_listing_is_lazy(moto_server: MotoServer, trail: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first file is handed out after one page of the listing, not after all of it."""
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3")
    pages: list[str] = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: pages.append("page"))
    source = FilesSource(f"s3://{trail}/AWSLogs/", s3_client=s3, workers=4)
    try:
        messages: list[Any] = []
        while not messages:
            messages = source.receive()
        assert messages[0].body.startswith(b"\x1f\x8b")
        assert len(pages) == 1 and source.listed <= source.prefetch + len(messages) < FILES
    finally:
        source.close()


@pytest.mark.moto
def test_nothing_to_replay_is_one_line(moto_server: MotoServer, trail: str, tmp_path: Path) -> None:
    env = replay_env(moto_server, tmp_path)
    for location, says in ((f"s3://{trail}/AWSLog/", "top-level prefixes are AWSLogs/"),
                           ("s3://no-such-trail-bucket-x/AWSLogs/", "bucket does not exist (NoSuchBucket)"),
                           (str(tmp_path), "no CloudTrail log files")):
        proc = subprocess.run(replay_cmd(location, tmp_path), env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (location, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("connector replay: ") and says in lines[0], proc.stderr


def _write_local(root: Path, count: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        (root / key(i).rsplit("/", 1)[1]).write_bytes(log_file(i))


def test_a_failure_says_its_reason(tmp_path: Path) -> None:
    """A file that cannot be finished is logged with why, not only counted."""
    _write_local(tmp_path / "logs", 2)
    (tmp_path / "logs" / "123456789012_CloudTrail_us-east-1_20261120T1005Z_99999broken.json.gz").write_bytes(b"\x1f\x8b not gzip")
    (tmp_path / "dlq" / "dead-letters.jsonl").mkdir(parents=True)  # the dead-letter destination cannot be written
    env = dict(os.environ, CONNECTOR_JSONL_DIRECTORY=str(tmp_path / "out"), CONNECTOR_DEAD_LETTER=f"file://{tmp_path}/dlq")
    proc = subprocess.run(replay_cmd(str(tmp_path / "logs"), tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in json_lines(proc.stderr) if line["level"] == "ERROR"]
    assert any("dead-letter destination failed" in e["message"] and "Is a directory" in e["message"] for e in errors), proc.stderr
    assert "1 files to retry" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(finished(tmp_path / "state.sqlite")) == 2


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    _write_local(tmp_path / "logs", 6)
    env = dict(os.environ, CONNECTOR_JSONL_DIRECTORY=str(tmp_path / "out"), CONNECTOR_DEAD_LETTER=f"file://{tmp_path}/dlq")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a 160-column terminal
    try:
        proc = subprocess.run(replay_cmd(str(tmp_path / "logs"), tmp_path), env=env, stdout=subprocess.DEVNULL,
                              stderr=follower, timeout=120)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "6/6" in text and "30 records, 3 findings" in text, text
    assert "replay progress" not in text  # the bar, not the log lines


def test_state_is_one_row_per_file_in_wal_mode_and_reads_an_old_json_state(tmp_path: Path) -> None:
    old = tmp_path / "state.json"
    old.write_text(json.dumps({"finished": ["s3://b/a.json.gz", "s3://b/b.json.gz"]}))
    state = ReplayState(old)
    try:
        assert state.is_finished("s3://b/a.json.gz") and not state.is_finished("s3://b/c.json.gz")
        state.mark_finished(["s3://b/c.json.gz", "s3://b/d.json.gz"], Totals(2, 10, 1, 0, 400))
        state.mark_finished(["s3://b/e.json.gz"], Totals(1, 5, 0, 1, 200))
        assert state.totals() == Totals(files=5, records=15, findings=1, dead_lettered=1, bytes=600)
    finally:
        state.close()
    assert old.read_bytes().startswith(b"SQLite format 3")
    with sqlite3.connect(old) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM finished").fetchone()[0] == 5
