"""The resume state of ``connector replay``: which files are finished, one SQLite row per file.

A replay of an organisation trail can cover 100,000s of files. Rewriting a JSON list after
every file made the state cost grow with the replay (O(n) per file); an indexed SQLite table
costs O(1) per file, and each commit is durable, so a replay killed at any point resumes
without reprocessing a finished file. Only the thread that opened the state uses it (the
runner acknowledges on its loop thread).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from connector.errors import ConfigError


class ReplayState:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            legacy = self._legacy_names()
            self._db = sqlite3.connect(str(self.path) if legacy is None else ":memory:")
            self._db.execute("CREATE TABLE IF NOT EXISTS finished (name TEXT PRIMARY KEY)")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"replay state {self.path} is unusable ({exc}); delete it to start over") from None
        if legacy is not None:
            # A JSON state file from an earlier version: carry its names over, then replace it.
            self._db.close()
            self.path.unlink()
            self._db = sqlite3.connect(str(self.path))
            self._db.execute("CREATE TABLE IF NOT EXISTS finished (name TEXT PRIMARY KEY)")
            self.mark_finished(legacy)

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

    def mark_finished(self, names: Iterable[str]) -> None:
        with self._db:  # one transaction, committed (durable) on exit
            self._db.executemany("INSERT OR IGNORE INTO finished (name) VALUES (?)", [(n,) for n in names])

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM finished").fetchone()[0])

    def close(self) -> None:
        self._db.close()
