"""``file:///dir``: dead letters as JSON Lines in ``dir/dead-letters.jsonl`` (local use, tests)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from connector.deadletters.base import letter_document, register
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
