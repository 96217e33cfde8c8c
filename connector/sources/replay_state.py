"""The resume state of ``connector replay``: which files are finished, one SQLite row per file.

A replay of an organisation trail can cover 100,000s of files. Rewriting a JSON list after
every file made the state cost grow with the replay (O(n) per file: 124 ms a write at 100k
files); an indexed SQLite table costs O(1) per file. The database is in WAL mode: a commit
appends to the log instead of rewriting pages in place, and a reader (an operator's
``sqlite3``, a test) never blocks the replay.

Durability: ``synchronous=NORMAL`` in WAL mode makes every commit survive the process being
killed (SIGKILL, OOM) at any point; only a power loss can drop the last commits, which costs a
redelivery of those files (finding ids are stable), never a loss. A file is marked finished
only after its findings are in every sink (the runner acknowledges after delivery).

Each batch of finished files also adds one row of totals (files, records, findings, dead
letters, bytes) in the same transaction, so a resumed replay reports the totals of the whole
backfill, not just of its last run. Only the thread that opened the state uses it (the runner
lists and acknowledges on its loop thread); SQLite checks that.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from connector.errors import ConfigError

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS finished (name TEXT PRIMARY KEY, finished_at REAL)",
    "CREATE TABLE IF NOT EXISTS batches (files INTEGER, records INTEGER, findings INTEGER,"
    " dead_lettered INTEGER, bytes INTEGER, finished_at REAL)",
)


@dataclass(frozen=True, slots=True)
class Totals:
    """What finished files held, summed over every run of a replay."""

    files: int = 0
    records: int = 0
    findings: int = 0
    dead_lettered: int = 0
    bytes: int = 0


class ReplayState:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            legacy = self._legacy_names()
            if legacy is not None:  # a JSON state file from an earlier version: replaced below
                self.path.unlink()
            self._db = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"replay state {self.path} is unusable ({exc}); delete it to start over") from None
        if legacy is not None:
            self.mark_finished(legacy)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None)  # transactions are explicit
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        for statement in _SCHEMA:
            db.execute(statement)
        return db

    def _legacy_names(self) -> list[str] | None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with open(self.path, "rb") as handle:
            head = handle.read(16)
        if head.startswith(b"SQLite format 3"):
            return None
        try:
            return [str(n) for n in json.loads(self.path.read_text()).get("finished", [])]
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"replay state {self.path} is unreadable ({exc}); delete it to start over") from None

    def is_finished(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM finished WHERE name = ?", (name,)).fetchone() is not None

    def mark_finished(self, names: Iterable[str], totals: Totals | None = None) -> None:
        """Record finished files (and what they held) in one durable transaction."""
        now = time.time()
        rows = [(n, now) for n in names]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO finished (name, finished_at) VALUES (?, ?)", rows)
            if totals is not None:
                db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                           (totals.files, totals.records, totals.findings, totals.dead_lettered, totals.bytes, now))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM finished").fetchone()[0])

    def totals(self) -> Totals:
        """The sums over every batch recorded so far (files from an old JSON state count as files only)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(records), 0), COALESCE(SUM(findings), 0), COALESCE(SUM(dead_lettered), 0),"
            " COALESCE(SUM(bytes), 0) FROM batches"
        ).fetchone()
        return Totals(self.count(), int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def close(self) -> None:
        self._db.close()
