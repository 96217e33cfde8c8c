"""Files source: CloudTrail log files from a local path or ``s3://bucket/prefix``, one message each.

Used by ``connector replay`` (backfill) and by tests. Files are read in name order, which for
CloudTrail's ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`` layout is time order.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence
from urllib.parse import urlparse

from connector.config import Settings
from connector.errors import SourceError
from connector.model import SourceMessage
from connector.sources.base import register

SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".gz")
#: ..._CloudTrail_us-east-1_20261120T1015Z_abcdef.json.gz: the end of the 5-minute delivery window.
NAME_TIME = re.compile(r"_CloudTrail_[a-z0-9-]+_(\d{8}T\d{4})Z_")
#: A file can hold events from well before its name's time (late delivery); be generous.
NAME_SLACK = timedelta(hours=1)


def name_time(name: str) -> datetime | None:
    match = NAME_TIME.search(name)
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M").replace(tzinfo=timezone.utc) if match else None


def outside(name: str, since: datetime | None, until: datetime | None) -> bool:
    """True when a file's name proves none of its events can be in [since, until]."""
    when = name_time(name)
    if when is None:
        return False
    return bool((since and when < since) or (until and when - NAME_SLACK > until))


@register("files")
class FilesSource:
    name: ClassVar[str] = "files"
    iam_actions: ClassVar[tuple[str, ...]] = ("s3:ListBucket", "s3:GetObject")

    def __init__(self, location: str, *, skip: set[str] = frozenset(), since: datetime | None = None,
                 until: datetime | None = None, s3_client: Any = None) -> None:
        self.location = location
        self.since, self.until = since, until
        self.skip = set(skip)
        self.s3 = s3_client
        self._files = iter(self._list())
        self._drained = False
        self.skipped_by_name = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> "FilesSource":
        raise SourceError("the files source is used by `connector replay PATH`, not by `connector run`")

    def _list(self) -> Iterator[str]:
        names: list[str]
        if self.location.startswith("s3://"):
            parsed = urlparse(self.location)
            if self.s3 is None:
                import boto3

                self.s3 = boto3.client("s3")
            names = []
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=parsed.path.lstrip("/")):
                names += [f"s3://{parsed.netloc}/{o['Key']}" for o in page.get("Contents", [])]
        else:
            root = Path(self.location)
            if not root.exists():
                raise SourceError(f"{self.location}: no such file or directory")
            names = [str(root)] if root.is_file() else [str(p) for p in root.rglob("*") if p.is_file()]
        for name in sorted(names):
            if not name.endswith(SUFFIXES) or name in self.skip:
                continue
            if outside(name, self.since, self.until):
                self.skipped_by_name += 1
                continue
            yield name

    def _read(self, name: str) -> bytes:
        if name.startswith("s3://"):
            parsed = urlparse(name)
            return bytes(self.s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read())
        return Path(name).read_bytes()

    def receive(self) -> list[SourceMessage]:
        for name in self._files:
            return [SourceMessage(id=name, body=self._read(name), ack_token=name, source="file")]
        self._drained = True
        return []

    def ack(self, messages: Sequence[SourceMessage]) -> None:
        """Nothing to delete; `connector replay` records finished files in its state file."""

    def release(self, messages: Sequence[SourceMessage]) -> None:
        """A released file is not re-read in this run; replay reports it and a resumed run retries it."""

    def keep_alive(self, messages: Sequence[SourceMessage]) -> None:
        pass

    @property
    def drained(self) -> bool:
        return self._drained

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass
