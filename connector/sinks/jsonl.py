"""JSONL file sink: findings as JSON Lines on local disk, for demos and air-gapped sites.

Layout: one file per format in ``jsonl.directory`` — ``asff.jsonl`` (ASFF documents, one per
line, as BatchImportFindings takes them) and ``ocsf.jsonl`` (OCSF 1.8.0 Detection Findings).
When a file would grow past ``jsonl.max_bytes`` it is rotated like logrotate does:
``asff.jsonl`` → ``asff.jsonl.1`` → ... → ``asff.jsonl.<backups>``, the oldest deleted
(``max_bytes`` 0 never rotates; ``backups`` 0 keeps only the current file).

Durability: a batch is written, flushed and ``fsync``-ed before ``send`` answers OK, so an
acknowledged source record is on disk; a rename during rotation is followed by an fsync of the
directory. A write or fsync error answers RETRYABLE for the batch's findings (the source
redelivers them). Thread-safe: one lock per file; one process per directory.

Reading the files — **dedupe by id**. Delivery is at-least-once: a source record redelivered
after a crash or a failure of another sink is written again, so the same finding can appear
more than once (in one file or across rotated files). Its id is stable — ASFF ``Id``, OCSF
``finding_info.uid``, the same value for both — so keep the last line per id. A crash in the
middle of a write can leave a torn last line; the sink starts a fresh line before appending,
and readers should skip a line that does not parse.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from connector.config import Settings
from connector.errors import DeliveryError
from connector.model import FORMATS, DeliveryResult, FindingFormat, Outcome, RenderedFinding
from connector.sinks.base import register

_SEVERITY = {Outcome.OK: 0, Outcome.PERMANENT: 1, Outcome.RETRYABLE: 2}


def line_for(document: Mapping[str, Any]) -> bytes:
    """One compact JSON line (UTF-8, no ASCII escaping so text stays readable)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8") + b"\n"


class RotatingFile:
    """An append-only file rotated by size; every method is called under ``lock``."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int, fsync: Callable[[int], None]) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.lock = threading.Lock()
        self._fsync = fsync
        self._handle: Any = None
        self._size = 0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "ab")  # noqa: SIM115 - kept open across writes, closed on rotate/close
        size = handle.tell()
        if size:
            # A crash mid-write leaves a torn line: start a fresh one rather than glue onto it.
            with open(self.path, "rb") as tail:
                tail.seek(size - 1)
                if tail.read(1) != b"\n":
                    handle.write(b"\n")
                    size += 1
        self._handle, self._size = handle, size

    def _sync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        """Close (synced), shift the backups, start an empty current file."""
        handle = self._handle
        handle.flush()
        self._fsync(handle.fileno())
        handle.close()
        self._handle = None
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
            oldest.unlink(missing_ok=True)
            for number in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{number}")
                if older.exists():
                    older.rename(self.path.with_name(f"{self.path.name}.{number + 1}"))
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._sync_dir()
        self._open()

    def _still_ours(self) -> bool:
        """The path still names the open file. Someone may have moved or deleted it (logrotate,
        an operator, a directory removed): writing on would "deliver" into an unlinked inode
        that nobody can read, so the findings would be acknowledged and lost."""
        try:
            on_disk = os.stat(self.path)
        except OSError:
            return False
        open_file = os.fstat(self._handle.fileno())
        return (on_disk.st_dev, on_disk.st_ino) == (open_file.st_dev, open_file.st_ino)

    def write_batch(self, lines: Sequence[bytes]) -> None:
        """Append the lines, rotating between lines as needed, then flush and fsync."""
        if self._handle is not None and not self._still_ours():
            self.close()
        if self._handle is None:
            self._open()
        try:
            for line in lines:
                if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                self._handle.write(line)
                self._size += len(line)
            self._handle.flush()
            self._fsync(self._handle.fileno())
        except BaseException:
            # The file's state is unknown (a partial line?): reopen, repairing the tail, next time.
            self.close()
            raise

    def close(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:
                pass
            self._handle = None


@register("jsonl")
class JsonlSink:
    name: ClassVar[str] = "jsonl"
    formats: ClassVar[tuple[FindingFormat, ...]] = FORMATS
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backups: int = 10,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        self.directory = Path(directory)
        self.files = {
            fmt: RotatingFile(self.directory / f"{fmt}.jsonl", max_bytes=max_bytes, backups=backups, fsync=fsync)
            for fmt in FORMATS
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> JsonlSink:
        js = settings.jsonl
        return cls(js.directory, max_bytes=js.max_bytes, backups=js.backups)

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        by_format: dict[FindingFormat, list[RenderedFinding]] = {}
        outcome: dict[str, tuple[Outcome, str | None]] = {}

        def note(finding_id: str, result: Outcome, error: str | None) -> None:
            # The worst outcome over a finding's formats: a finding is held only when all are.
            current = outcome.get(finding_id)
            if current is None or _SEVERITY[result] > _SEVERITY[current[0]]:
                outcome[finding_id] = (result, error)

        for item in batch:
            if item.format in self.files:
                by_format.setdefault(item.format, []).append(item)
            else:
                note(item.finding_id, Outcome.PERMANENT, f"jsonl: unknown format {item.format!r}")
        for fmt, items in by_format.items():
            try:
                lines = [line_for(item.document) for item in items]
            except (TypeError, ValueError) as exc:  # not JSON-serialisable: a bug, not a disk problem
                for item in items:
                    note(item.finding_id, Outcome.PERMANENT, f"jsonl: cannot serialise: {exc}")
                continue
            target = self.files[fmt]
            try:
                with target.lock:
                    target.write_batch(lines)
            except OSError as exc:
                for item in items:
                    note(item.finding_id, Outcome.RETRYABLE, f"jsonl {target.path}: {exc}")
                continue
            for item in items:
                note(item.finding_id, Outcome.OK, None)
        return [DeliveryResult(item.finding_id, *outcome[item.finding_id]) for item in batch]

    def check(self) -> None:
        """The directory exists (created if needed) and is writable."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"jsonl directory {self.directory}: {exc}") from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise DeliveryError(f"jsonl directory {self.directory} is not writable")

    def close(self) -> None:
        for target in self.files.values():
            with target.lock:
                target.close()
