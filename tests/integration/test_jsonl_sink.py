"""The JSONL sink on a real filesystem: layout, rotation, concurrent writers, fsync, failures."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from connector.config import load_settings
from connector.errors import DeliveryError
from connector.model import Outcome, RenderedFinding
from connector.sinks import sink_class
from connector.sinks.jsonl import JsonlSink, line_for
from tests.support.sink_contents import findings


def read_ids(path: Path, fmt: str) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        document = json.loads(line)
        out.append(document["Id"] if fmt == "asff" else document["finding_info"]["uid"])
    return out


def all_files(directory: Path, fmt: str) -> list[Path]:
    """Oldest first: asff.jsonl.N ... asff.jsonl.1, asff.jsonl."""
    backups = sorted(directory.glob(f"{fmt}.jsonl.*"), key=lambda p: -int(p.suffix[1:]))
    current = directory / f"{fmt}.jsonl"
    return backups + ([current] if current.exists() else [])


def test_one_file_per_format_with_the_documents_as_sent(tmp_path: Path) -> None:
    batch = findings(5, fmt=None)
    sink = JsonlSink(tmp_path / "out")
    results = sink.send(batch)
    assert [r.finding_id for r in results] == [i.finding_id for i in batch]
    assert {r.outcome for r in results} == {Outcome.OK}
    asff = [json.loads(line) for line in (tmp_path / "out/asff.jsonl").read_text().splitlines()]
    ocsf = [json.loads(line) for line in (tmp_path / "out/ocsf.jsonl").read_text().splitlines()]
    assert asff == [dict(i.document) for i in batch if i.format == "asff"]
    assert ocsf == [dict(i.document) for i in batch if i.format == "ocsf"]
    # The same id in both formats, so readers can join and dedupe.
    assert [d["Id"] for d in asff] == [d["finding_info"]["uid"] for d in ocsf]
    sink.close()


def test_rotation_by_size_keeps_the_newest_and_the_configured_backups(tmp_path: Path) -> None:
    batch = findings(60)
    line_size = max(len(line_for(i.document)) for i in batch)
    max_bytes = line_size * 5
    sink = JsonlSink(tmp_path, max_bytes=max_bytes, backups=3)
    for start in range(0, 60, 4):
        assert {r.outcome for r in sink.send(batch[start:start + 4])} == {Outcome.OK}
    sink.close()
    files = all_files(tmp_path, "asff")
    assert [p.name for p in files] == ["asff.jsonl.3", "asff.jsonl.2", "asff.jsonl.1", "asff.jsonl"]
    assert all(p.stat().st_size <= max_bytes for p in files)
    kept = [fid for p in files for fid in read_ids(p, "asff")]
    sent = [i.finding_id for i in batch]
    # What is kept is exactly the most recent findings, in order, with none lost in between.
    assert kept == sent[-len(kept):]
    assert len(kept) > 3 * 4


def test_rotation_with_no_backups_starts_over(tmp_path: Path) -> None:
    batch = findings(10)
    max_bytes = len(line_for(batch[0].document)) * 3
    sink = JsonlSink(tmp_path, max_bytes=max_bytes, backups=0)
    sink.send(batch)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asff.jsonl"]
    kept = read_ids(tmp_path / "asff.jsonl", "asff")
    assert 1 <= len(kept) <= 3
    assert kept == [i.finding_id for i in batch][-len(kept):]


def test_concurrent_senders_never_interleave_or_lose_lines(tmp_path: Path) -> None:
    threads_n, per_thread = 8, 40
    batches = [findings(per_thread, prefix=f"t{n}", fmt=None) for n in range(threads_n)]
    line_size = max(len(line_for(i.document)) for b in batches for i in b)
    # Rotation on and enough backups that nothing is dropped: ids must survive rotations intact.
    sink = JsonlSink(tmp_path, max_bytes=line_size * 25, backups=1000)
    barrier = threading.Barrier(threads_n)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def run(batch: list[RenderedFinding]) -> None:
        barrier.wait()
        for start in range(0, len(batch), 10):
            results = sink.send(batch[start:start + 10])
            with lock:
                outcomes.extend(r.outcome for r in results)

    workers = [threading.Thread(target=run, args=(b,)) for b in batches]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sink.close()
    assert set(outcomes) == {Outcome.OK} and len(outcomes) == threads_n * per_thread * 2
    for fmt in ("asff", "ocsf"):
        ids = [fid for p in all_files(tmp_path, fmt) for fid in read_ids(p, fmt)]  # every line parses
        expected = [i.finding_id for b in batches for i in b if i.format == fmt]
        assert sorted(ids) == sorted(expected)
        # Each thread's findings stay in the order it sent them.
        for b in batches:
            mine = [i.finding_id for i in b if i.format == fmt]
            wanted = set(mine)
            assert [fid for fid in ids if fid in wanted] == mine


def test_every_batch_is_fsynced_before_it_is_acknowledged(tmp_path: Path) -> None:
    synced: list[tuple[int, int]] = []  # (inode, size on disk) at each fsync

    def recording_fsync(fd: int) -> None:
        os.fsync(fd)
        info = os.fstat(fd)
        synced.append((info.st_ino, info.st_size))

    sink = JsonlSink(tmp_path, fsync=recording_fsync)
    batch = findings(3, fmt=None)
    sink.send(batch)
    asff, ocsf = (tmp_path / "asff.jsonl").stat(), (tmp_path / "ocsf.jsonl").stat()
    assert (asff.st_ino, asff.st_size) in synced and (ocsf.st_ino, ocsf.st_size) in synced
    synced.clear()
    sink.send(findings(2, prefix="second"))  # ASFF only
    assert synced == [((tmp_path / "asff.jsonl").stat().st_ino, (tmp_path / "asff.jsonl").stat().st_size)]
    sink.close()


def test_a_failing_disk_answers_retryable_and_the_next_batch_recovers(tmp_path: Path) -> None:
    broken = threading.Event()
    broken.set()

    def fsync(fd: int) -> None:
        if broken.is_set():
            raise OSError(5, "Input/output error")
        os.fsync(fd)

    sink = JsonlSink(tmp_path, fsync=fsync)
    batch = findings(4, fmt=None)
    results = sink.send(batch)
    assert {r.outcome for r in results} == {Outcome.RETRYABLE}
    assert all("Input/output error" in (r.error or "") for r in results)
    broken.clear()
    again = sink.send(batch)
    assert {r.outcome for r in again} == {Outcome.OK}
    sink.close()
    # Redelivery wrote them again: readers dedupe by id, and every line still parses.
    assert set(read_ids(tmp_path / "asff.jsonl", "asff")) == {i.finding_id for i in batch}


def test_one_format_failing_fails_the_finding_in_every_format(tmp_path: Path) -> None:
    (tmp_path / "ocsf.jsonl").mkdir()  # the OCSF file cannot be opened
    sink = JsonlSink(tmp_path)
    batch = findings(2, fmt=None)
    results = sink.send(batch)
    assert {r.outcome for r in results} == {Outcome.RETRYABLE}
    sink.close()


def test_a_torn_last_line_is_not_glued_to_the_next(tmp_path: Path) -> None:
    (tmp_path / "asff.jsonl").write_bytes(b'{"Id": "complete"}\n{"Id": "torn')
    sink = JsonlSink(tmp_path)
    batch = findings(2)
    sink.send(batch)
    sink.close()
    lines = (tmp_path / "asff.jsonl").read_text().splitlines()
    assert lines[1] == '{"Id": "torn'
    assert [json.loads(line)["Id"] for line in lines[2:]] == [i.finding_id for i in batch]


def test_check_and_settings(tmp_path: Path) -> None:
    target = tmp_path / "findings"
    settings = load_settings(
        environ={
            "CONNECTOR_SINKS": "jsonl",
            "CONNECTOR_JSONL_DIRECTORY": str(target),
            "CONNECTOR_JSONL_MAX_BYTES": "4096",
            "CONNECTOR_JSONL_BACKUPS": "2",
        }
    )
    sink = sink_class("jsonl").from_settings(settings)
    assert isinstance(sink, JsonlSink)
    assert sink.files["asff"].max_bytes == 4096 and sink.files["ocsf"].backups == 2
    sink.check()
    assert target.is_dir()
    blocked = JsonlSink(tmp_path / "a-file" / "below")
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(DeliveryError):
        blocked.check()


def test_a_file_removed_under_the_sink_is_reopened_not_written_into_the_void(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "out")
    assert {r.outcome for r in sink.send(findings(1, prefix="one"))} == {Outcome.OK}
    shutil.rmtree(tmp_path / "out")
    (tmp_path / "out").write_text("a file where the directory was")
    results = sink.send(findings(1, prefix="two"))
    assert {r.outcome for r in results} == {Outcome.RETRYABLE}, "not acknowledged into a deleted file"
    (tmp_path / "out").unlink()
    assert {r.outcome for r in sink.send(findings(1, prefix="two"))} == {Outcome.OK}
    assert [i.rsplit("/", 1)[-1] for i in read_ids(tmp_path / "out" / "asff.jsonl", "asff")] == ["two-00000"]
    sink.close()
