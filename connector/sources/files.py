"""Files source: CloudTrail log files from a local path or ``s3://bucket/prefix``, one message each.

Used by ``connector replay`` (backfill) and by tests. Files are listed in name order, which for
CloudTrail's ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`` layout is time order.

At organisation scale (100,000s of files) three things matter, and each is bounded:

- **The listing is streamed**: S3 lists 1,000 keys a page, and the next page is asked for only
  when the files before it have been handed out, so the first file is read while the listing
  has barely started and memory does not grow with the bucket. The first page is read when the
  source is made, so a missing bucket or an empty (mistyped) prefix is one clear error at once.
- **Fetches are concurrent**: a pool of ``workers`` threads reads files (``GetObject`` or
  disk) ahead of the pipeline, at most ``prefetch`` files ahead, so network latency overlaps
  with decoding and delivery instead of adding to it. ``receive`` hands out whichever fetches
  have finished. Decoding and delivery run in the runner's workers (``max_in_flight``).
- **Finishing a file costs O(1)**: an acknowledged file is one row in the SQLite resume state
  (``replay_state.py``), committed only after its findings are in every sink (the runner
  acknowledges after delivery), so a replay killed at any point resumes without reprocessing a
  finished file; the files in flight at the kill are read again (finding ids are stable).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
#: How long ``receive`` waits for a fetch to finish before answering "nothing yet" (the run loop
#: has nothing else to do meanwhile than settle batches, which can wait that long).
RECEIVE_WAIT_SECONDS = 5.0
#: S3 error codes that mean "nothing to replay there" rather than trouble reading it.
_NOT_THERE = {"NoSuchBucket": "bucket does not exist", "NoSuchKey": "no such key"}


def name_time(name: str) -> datetime | None:
    match = NAME_TIME.search(name)
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M").replace(tzinfo=UTC) if match else None


def outside(name: str, since: datetime | None, until: datetime | None) -> bool:
    """True when a file's name proves none of its events can be in [since, until]."""
    when = name_time(name)
    if when is None:
        return False
    return bool((since and when < since) or (until and when - NAME_SLACK > until))


def split_s3(location: str) -> tuple[str, str]:
    parsed = urlparse(location)
    return parsed.netloc, parsed.path.lstrip("/")


def s3_reason(exc: Exception) -> str:
    """A botocore error as a short reason: ``bucket does not exist (NoSuchBucket)``."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = _NOT_THERE.get(code) or str(error.get("Message") or exc)
        return f"{message} ({code})" if code else message
    return str(exc)


def _walk(root: Path) -> Iterator[str]:
    """Files under ``root`` in name order, one directory at a time (streamed, like S3)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        log.error("cannot list %s: %s", root, exc)
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
        elif entry.is_file():
            yield entry.path


@register("files")
class FilesSource:
    name: ClassVar[str] = "files"
    iam_actions: ClassVar[tuple[str, ...]] = ("s3:ListBucket", "s3:GetObject")

    def __init__(
        self,
        location: str,
        *,
        skip: AbstractSet[str] = frozenset(),
        since: datetime | None = None,
        until: datetime | None = None,
        s3_client: Any = None,
        state: ReplayState | None = None,
        ack_to_state: bool = True,
        workers: int = 8,
        prefetch: int | None = None,
    ) -> None:
        self.location = location
        self.since, self.until = since, until
        self.skip = set(skip)
        self.s3 = s3_client
        #: Finished files are skipped when listed; acknowledged files are recorded here unless
        #: ``ack_to_state`` is False (``connector replay`` records them with the batch's totals).
        self.state = state
        self.ack_to_state = ack_to_state
        self.workers = max(1, workers)
        self.prefetch = max(self.workers, prefetch if prefetch is not None else 2 * self.workers)
        self.skipped_by_name = 0
        self.finished_earlier = 0
        #: Files listed so far (any state), and whether the listing has ended.
        self.listed = 0
        self.listing_done = False
        self.bytes_read = 0
        #: Bytes of each file handed out and not yet acknowledged or released.
        self.sizes: dict[str, int] = {}
        #: Files that could not be read, with why; and a listing error that ended the run.
        self.unreadable: list[tuple[str, str]] = []
        self.error: str | None = None
        self._pending: deque[Future[tuple[SourceMessage, int]]] = deque()
        self._names_of: dict[Future[tuple[SourceMessage, int]], str] = {}
        self._pool: ThreadPoolExecutor | None = None
        #: Names in the window counted by a second listing that runs ahead (for an ETA).
        self.counted = 0
        self.counting_done = False
        self._counter: threading.Thread | None = None
        self._closed = threading.Event()
        if location.startswith("s3://"):
            self._names = self._s3_names()
        else:
            if not Path(location).exists():
                raise SourceError(f"{location}: no such file or directory")
            root = Path(location)
            self._names = iter([str(root)]) if root.is_file() else _walk(root)
        self._names = self._first_log_file()
        self._files = self._wanted()

    def _first_log_file(self) -> Iterator[str]:
        """The names, after checking now that at least one looks like a log file: a location
        with nothing to replay is an error before anything starts, not a backfill of nothing."""
        skipped: list[str] = []
        for name in self._names:
            skipped.append(name)
            if name.endswith(SUFFIXES) and name not in self.skip:
                return itertools.chain(skipped, self._names)
            if len(skipped) > 10_000:  # far in and still none: let the listing go on lazily
                return itertools.chain(skipped, self._names)
        raise SourceError(f"no CloudTrail log files under {self.location} (names ending in {', '.join(SUFFIXES)})")

    @classmethod
    def from_settings(cls, settings: Settings) -> FilesSource:
        raise SourceError("the files source is used by `connector replay PATH`, not by `connector run`")

    # -- listing -------------------------------------------------------------------------------
    def _wanted(self) -> Iterator[str]:
        """The listed names still to read: log-file names, not finished earlier, inside the window."""
        for name in self._names:
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

    def _s3_client(self) -> Any:
        if self.s3 is None:
            import boto3
            from botocore.config import Config

            # One pooled connection per fetch worker, plus one for the listing.
            self.s3 = boto3.client("s3", config=Config(max_pool_connections=self.workers + 2))
        return self.s3

    def _s3_names(self) -> Iterator[str]:
        """Keys a page at a time. The first page is read now (by the constructor's caller's
        thread), so a missing bucket or an empty prefix fails before anything starts."""
        bucket, prefix = split_s3(self.location)
        if not bucket:
            raise SourceError(f"{self.location}: no bucket name (expected s3://bucket/prefix)")
        pages = self._pages(bucket, prefix)
        try:
            first = next(pages)
        except StopIteration:
            first = {}
        except Exception as exc:  # NoSuchBucket, AccessDenied, no credentials: one clear reason
            raise SourceError(f"cannot list {self.location}: {s3_reason(exc)}") from None
        if not first.get("Contents"):
            raise SourceError(self._nothing_under(bucket, prefix))
        return self._keys(bucket, first, pages)

    def _pages(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self._s3_client().get_paginator("list_objects_v2")
        return iter(paginator.paginate(Bucket=bucket, Prefix=prefix))

    def _keys(self, bucket: str, first: dict[str, Any], pages: Iterator[dict[str, Any]]) -> Iterator[str]:
        page: dict[str, Any] | None = first
        while page is not None:
            for obj in page.get("Contents", []):
                yield f"s3://{bucket}/{obj['Key']}"
            page = next(pages, None)  # the next request, only now that this page is handed out

    def _nothing_under(self, bucket: str, prefix: str) -> str:
        """No object under the prefix: say what the bucket does hold at its top, a likely typo's fix."""
        hint = ""
        try:
            top = self._s3_client().list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=20)
            prefixes = [p["Prefix"] for p in top.get("CommonPrefixes", [])]
            if prefixes:
                hint = "; the bucket's top-level prefixes are " + ", ".join(prefixes)
        except Exception as exc:  # the hint is a courtesy; its failure is not the error
            log.debug("could not list the top of %s: %s", bucket, exc)
        return f"no objects under {self.location} (is the prefix right?){hint}"

    def count_ahead(self) -> None:
        """Count the files to replay in a background listing, so progress can give an ETA.

        The listing that feeds the workers stays lazy (a page only when needed); this one only
        counts, holding no names: one more ``ListObjectsV2`` per 1,000 files, against 1,000
        ``GetObject``. Finished files (resume) are known only as the main listing reaches them,
        so until then the remaining count is an upper bound.
        """
        if self._counter is None:
            self._counter = threading.Thread(target=self._count, name="count-files", daemon=True)
            self._counter.start()

    def _count(self) -> None:
        try:
            if self.location.startswith("s3://"):
                bucket, prefix = split_s3(self.location)
                names: Iterator[str] = (f"s3://{bucket}/{obj['Key']}" for page in self._pages(bucket, prefix)
                                        for obj in page.get("Contents", []))
            else:
                root = Path(self.location)
                names = iter([str(root)]) if root.is_file() else _walk(root)
            for name in names:
                if self._closed.is_set():
                    return
                if name.endswith(SUFFIXES) and name not in self.skip and not outside(name, self.since, self.until):
                    self.counted += 1
        except Exception as exc:  # only the ETA is lost; the main listing reports its own errors
            log.warning("counting the files under %s failed (no ETA): %s", self.location, s3_reason(exc))
            return
        self.counting_done = True

    # -- fetching --------------------------------------------------------------------------------
    def _fetch(self, name: str) -> tuple[SourceMessage, int]:
        """The file as a message, and its size; a large one as a reference that the decoder
        streams, so a 200 MB log file costs a window of memory, not its size. Runs in a worker."""
        if name.startswith("s3://"):
            bucket, key = split_s3(name)
            s3 = self._s3_client()
            try:
                response = s3.get_object(Bucket=bucket, Key=key)
            except Exception as exc:
                raise SourceError(s3_reason(exc)) from None
            size = int(response.get("ContentLength") or 0)
            if size > STREAM_OVER_BYTES:  # read again as chunks when decoded; the reference is a CloudTrail S3 notice
                response["Body"].close()
                reference = json.dumps({"s3Bucket": bucket, "s3ObjectKey": [key]}).encode()
                return SourceMessage(id=name, body=reference, ack_token=name, source="file",
                                     chunks=lambda: s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(STREAM_CHUNK)), size
            return SourceMessage(id=name, body=bytes(response["Body"].read()), ack_token=name, source="file"), size
        path = Path(name)
        size = path.stat().st_size
        if size > STREAM_OVER_BYTES:
            reference = json.dumps({"file": name, "bytes": size}).encode()
            return SourceMessage(id=name, body=reference, ack_token=name, source="file", chunks=lambda: _file_chunks(path)), size
        return SourceMessage(id=name, body=path.read_bytes(), ack_token=name, source="file"), size

    def _fill(self) -> None:
        """Top the window of fetches up to ``prefetch``, listing (lazily) as far as that needs."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fetch")
        while not self.listing_done and len(self._pending) < self.prefetch:
            try:
                name = next(self._files, None)
            except Exception as exc:  # a page after the first failed (after botocore's retries)
                self.error = f"listing {self.location} stopped: {s3_reason(exc)}"
                log.error("%s", self.error)
                name = None
            if name is None:
                self.listing_done = True
                break
            future = self._pool.submit(self._fetch, name)
            self._pending.append(future)
            self._names_of[future] = name

    def receive(self) -> list[SourceMessage]:
        """The files whose fetch has finished (in listing order among those), after waiting a
        moment for the first; [] when none finished yet or, once ``drained``, for good."""
        self._fill()
        if not self._pending:
            return []
        if not any(f.done() for f in self._pending):
            wait(self._pending, timeout=RECEIVE_WAIT_SECONDS, return_when=FIRST_COMPLETED)
        done = [f for f in self._pending if f.done()]
        messages: list[SourceMessage] = []
        for future in done:
            self._pending.remove(future)
            name = self._names_of.pop(future)
            try:
                message, size = future.result()
            except Exception as exc:
                self.unreadable.append((name, str(exc)))
                log.error("cannot read %s: %s", name, exc)
                continue
            self.bytes_read += size
            self.sizes[name] = size
            messages.append(message)
        self._fill()
        return messages

    # -- settling --------------------------------------------------------------------------------
    def settled_bytes(self, messages: Sequence[SourceMessage]) -> int:
        """The bytes of these files, forgotten (they are acknowledged or released)."""
        return sum(self.sizes.pop(m.id, 0) for m in messages)

    def ack(self, messages: Sequence[SourceMessage]) -> None:
        """Nothing to delete; a finished file is recorded in the resume state, if there is one."""
        if self.state is not None and self.ack_to_state:
            self.state.mark_finished(m.id for m in messages)

    def release(self, messages: Sequence[SourceMessage]) -> None:
        """A released file is not re-read in this run; replay reports it and a resumed run retries it."""

    def keep_alive(self, messages: Sequence[SourceMessage]) -> None:
        pass

    @property
    def drained(self) -> bool:
        return self.listing_done and not self._pending

    @property
    def ahead(self) -> int:
        """Files fetched or being fetched and not yet handed out."""
        return len(self._pending)

    def check(self) -> None:
        pass

    def close(self) -> None:
        self._closed.set()
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(STREAM_CHUNK):
            yield chunk
