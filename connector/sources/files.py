"""Files source: CloudTrail log files from a local path or ``s3://bucket/prefix``, one message each.

Used by ``connector replay`` (backfill) and by tests. Files are read in name order, which for
CloudTrail's ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`` layout is time order.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from connector.config import Settings
from connector.envelopes import STREAM_CHUNK, STREAM_OVER_BYTES
from connector.errors import SourceError
from connector.model import SourceMessage
from connector.sources.base import register
from connector.sources.replay_state import ReplayState

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".gz")
#: ..._CloudTrail_us-east-1_20261120T1015Z_abcdef.json.gz: the end of the 5-minute delivery window.
NAME_TIME = re.compile(r"_CloudTrail_[a-z0-9-]+_(\d{8}T\d{4})Z_")
#: A file can hold events from well before its name's time (late delivery); be generous.
NAME_SLACK = timedelta(hours=1)


def name_time(name: str) -> datetime | None:
    match = NAME_TIME.search(name)
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M").replace(tzinfo=UTC) if match else None


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

    def __init__(self, location: str, *, skip: AbstractSet[str] = frozenset(), since: datetime | None = None,
                 until: datetime | None = None, s3_client: Any = None, state: ReplayState | None = None) -> None:
        self.location = location
        self.since, self.until = since, until
        self.skip = set(skip)
        self.s3 = s3_client
        #: Acknowledged files are recorded here (``connector replay``'s resume state).
        self.state = state
        self._drained = False
        self.skipped_by_name = 0
        self.finished_earlier = 0
        self.listed = 0
        self.bytes_read = 0
        #: Files that could not be read, with why; and a listing error that ended the run.
        self.unreadable: list[tuple[str, str]] = []
        self.error: str | None = None
        self._files = self._list()
        if not location.startswith("s3://"):
            self._check_local()

    def _check_local(self) -> None:
        if not Path(self.location).exists():
            raise SourceError(f"{self.location}: no such file or directory")

    @classmethod
    def from_settings(cls, settings: Settings) -> FilesSource:
        raise SourceError("the files source is used by `connector replay PATH`, not by `connector run`")

    def _list(self) -> Iterator[str]:
        """Names in order, streamed: S3 lists keys in order a page at a time, so the first file
        is read before the whole listing is built."""
        names: Iterator[str]
        if self.location.startswith("s3://"):
            names = self._s3_names()
        else:
            root = Path(self.location)
            names = iter([str(root)] if root.is_file() else sorted(str(p) for p in root.rglob("*") if p.is_file()))
        for name in names:
            if not name.endswith(SUFFIXES) or name in self.skip:
                continue
            self.listed += 1
            if self.state is not None and self.state.is_finished(name):
                self.finished_earlier += 1
                continue
            if outside(name, self.since, self.until):
                self.skipped_by_name += 1
                continue
            yield name

    def _s3_names(self) -> Iterator[str]:
        parsed = urlparse(self.location)
        if self.s3 is None:
            import boto3

            self.s3 = boto3.client("s3")
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=parsed.path.lstrip("/")):
                for obj in page.get("Contents", []):
                    yield f"s3://{parsed.netloc}/{obj['Key']}"
        except Exception as exc:  # NoSuchBucket, AccessDenied, no credentials: one clear reason
            raise SourceError(f"cannot list {self.location}: {exc}") from exc

    def _message(self, name: str) -> SourceMessage:
        """The file as a message; a large one as a reference that the decoder streams, so a
        200 MB log file costs a window of memory, not its size."""
        if name.startswith("s3://"):
            parsed = urlparse(name)
            bucket, key = parsed.netloc, parsed.path.lstrip("/")
            response = self.s3.get_object(Bucket=bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            self.bytes_read += size
            if size > STREAM_OVER_BYTES:  # read again as chunks when decoded; the reference is a CloudTrail S3 notice
                response["Body"].close()
                reference = json.dumps({"s3Bucket": bucket, "s3ObjectKey": [key]}).encode()
                s3 = self.s3
                return SourceMessage(id=name, body=reference, ack_token=name, source="file",
                                     chunks=lambda: s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(STREAM_CHUNK))
            return SourceMessage(id=name, body=bytes(response["Body"].read()), ack_token=name, source="file")
        path = Path(name)
        size = path.stat().st_size
        self.bytes_read += size
        if size > STREAM_OVER_BYTES:
            reference = json.dumps({"file": name, "bytes": size}).encode()
            return SourceMessage(id=name, body=reference, ack_token=name, source="file", chunks=lambda: _file_chunks(path))
        return SourceMessage(id=name, body=path.read_bytes(), ack_token=name, source="file")

    def receive(self) -> list[SourceMessage]:
        try:
            for name in self._files:
                try:
                    message = self._message(name)
                except Exception as exc:
                    self.unreadable.append((name, str(exc)))
                    log.error("cannot read %s: %s", name, exc)
                    continue
                return [message]
        except SourceError as exc:
            self.error = str(exc)
            self._drained = True
            raise
        self._drained = True
        return []

    def ack(self, messages: Sequence[SourceMessage]) -> None:
        """Nothing to delete; a finished file is recorded in the resume state, if there is one."""
        if self.state is not None:
            self.state.mark_finished(m.id for m in messages)

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


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(STREAM_CHUNK):
            yield chunk
