"""``file:///dir``: dead letters as JSON Lines in ``dir/dead-letters.jsonl`` (local use, tests)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from connector.deadletters.base import StoredLetter, letter_document, register
from connector.errors import DeliveryError
from connector.model import DeadLetter


@register("file")
class FileDeadLetters:
    scheme: ClassVar[str] = "file"
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, url: str) -> None:
        self.url = url
        self.directory = Path(urlparse(url).path)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._taken: Path | None = None
        self._kept: dict[str, str] = {}

    def check(self) -> None:
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise DeliveryError(f"dead-letter directory {self.directory} is missing or not writable")

    def put(self, letters: Sequence[DeadLetter]) -> None:
        with self._lock, open(self.directory / "dead-letters.jsonl", "a", encoding="utf-8") as out:
            for letter in letters:
                out.write(json.dumps(letter_document(letter), sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def read(self) -> list[dict[str, Any]]:
        path = self.directory / "dead-letters.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    # -- redrive -----------------------------------------------------------------------------
    def take(self) -> Iterator[StoredLetter]:
        """Every stored letter, once. The file is moved aside first, so letters written while a
        redrive runs (those that fail again) land in a fresh file; ``restore`` puts back the rest."""
        path = self.directory / "dead-letters.jsonl"
        if not path.exists():
            return
        with self._lock:
            self._taken = self.directory / f"dead-letters.redrive-{os.getpid()}.jsonl"
            path.replace(self._taken)
            self._kept = {}
        for number, line in enumerate(self._taken.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                self._kept[str(number)] = line
                yield StoredLetter(str(number), json.loads(line))

    def remove(self, handles: Sequence[str]) -> None:
        for handle in handles:
            self._kept.pop(handle, None)

    def restore(self) -> None:
        """Put back every letter not removed (not selected, or its sink still down)."""
        if self._taken is None:
            return
        with self._lock, open(self.directory / "dead-letters.jsonl", "a", encoding="utf-8") as out:
            for line in self._kept.values():
                out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._taken.unlink()
        self._taken = None
