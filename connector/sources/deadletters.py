"""Dead letters as a finite source, for ``connector redrive``.

The letters of a destination (SQS queue, S3 prefix, file) that match the filters are handed to
the runner in batches like any other source: a letter whose record is now delivered — or
dead-lettered again, with its new reason — is acknowledged, which removes it from the
destination; a letter whose sink is still down is released and stays where it was. Letters
that do not match the filters are never touched.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from connector.config import Settings
from connector.deadletters.base import Redrivable, StoredLetter
from connector.errors import ConfigError, ConnectorError, SourceError
from connector.model import SourceMessage

BATCH = 10


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which letters to redrive: by stage, by a regular expression on the reason, by time."""

    stages: frozenset[str] = frozenset()
    reason: re.Pattern[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: StoredLetter) -> bool:
        doc = letter.document
        if self.stages and str(doc.get("stage", "")) not in self.stages:
            return False
        if self.reason is not None and not self.reason.search(str(doc.get("reason", ""))):
            return False
        if self.since or self.until:
            try:
                when = datetime.fromisoformat(str(doc.get("dead_lettered_at", "")).replace("Z", "+00:00"))
            except ValueError:
                return False
            if (self.since and when < self.since) or (self.until and when > self.until):
                return False
        return True


class DeadLetterSource:
    name: ClassVar[str] = "deadletters"
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, destination: Redrivable, letters: LetterFilter | None = None) -> None:
        self.destination = destination
        self.filter = letters or LetterFilter()
        self._letters: Iterator[StoredLetter] = iter(destination.take())
        self._done = False
        self.matched = 0
        self.by_stage: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadLetterSource:
        raise ConfigError("the dead-letter source is built by `connector redrive`, not from settings")

    def open(self) -> None:
        """Read the first letter now, so that a destination that cannot be read (a missing
        bucket or queue, no permission) fails with its reason before anything runs, instead of
        looking like a destination with no letters (and exiting 0)."""
        try:
            first = next(self._letters)
        except StopIteration:
            return
        except ConnectorError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot read dead letters from {self.destination.url}: {exc}") from exc
        self._letters = itertools.chain([first], self._letters)

    def matching(self) -> Iterator[StoredLetter]:
        """The letters the filter selects (and counts), in destination order."""
        for letter in self._letters:
            if self.filter.matches(letter):
                self.matched += 1
                stage = str(letter.document.get("stage") or "(none)")
                self.by_stage[stage] = self.by_stage.get(stage, 0) + 1
                yield letter

    def receive(self) -> list[SourceMessage]:
        batch: list[SourceMessage] = []
        if self._done:
            return batch
        for letter in self.matching():
            batch.append(SourceMessage(id=letter.handle, body=letter.body(), ack_token=letter.handle, source="deadletter",
                                       attributes={"stage": str(letter.document.get("stage", ""))}))
            if len(batch) >= BATCH:
                return batch
        self._done = True
        return batch

    def ack(self, messages: Sequence[SourceMessage]) -> None:
        self.destination.remove([str(m.ack_token) for m in messages])

    def release(self, messages: Sequence[SourceMessage]) -> None:
        """Left in the destination; ``close`` puts back everything not removed."""

    def keep_alive(self, messages: Sequence[SourceMessage]) -> None:
        pass

    @property
    def drained(self) -> bool:
        return self._done

    def check(self) -> None:
        pass

    def close(self) -> None:
        self.destination.restore()
