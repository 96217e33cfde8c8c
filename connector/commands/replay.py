"""``connector replay PATH|s3://bucket/prefix [--since] [--until] [--state FILE] [--workers N]``: backfill.

Every CloudTrail log file (plain or gzip, local or in S3) is a message of the files source:
listed lazily, fetched by ``--workers`` threads ahead of the pipeline, and run through the
composition root's pipeline by the same runner loop as ``connector run --once``
(``settings.max_in_flight`` batches decoded and delivered at a time). When a batch is
settled, its finished files and their totals are committed to the resume state (SQLite, one
row per file, after the findings are in every sink), so a replay killed at any point resumes
where it stopped, and its summary covers the whole backfill.

Output: on a terminal a progress bar (files, records, findings, bytes, rate, ETA); otherwise a
JSON log line every ``--progress-seconds``. Logging is the product's JSON logging at the
configured level, except that the per-batch and per-finding lines of the service are shown only
at DEBUG (a backfill of millions of records would drown its own failures); every failure is
logged with its reason. Exit 0 when every file was finished; 2 for a location with nothing to
replay (missing bucket or directory, empty or mistyped prefix) or bad options, as one line on
stderr; 1 for a listing that broke off, files left to retry, or a state that could not be written.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.commands.query import parse_time
from connector.errors import ConnectorError
from connector.model import SourceMessage
from connector.sources.replay_state import ReplayState, Totals

if TYPE_CHECKING:
    from connector.pipeline import BatchResult
    from connector.sources.files import FilesSource

log = logging.getLogger(__name__)

#: Loggers whose INFO lines are per batch or per finding: shown during a replay only at DEBUG.
CHATTY = ("connector.pipeline", "connector.runtime.runner")


def register(sub: Any) -> None:
    parser = sub.add_parser("replay", help="backfill findings from CloudTrail log files (local or S3)")
    parser.add_argument("location", help="a file, a directory, or s3://bucket/prefix")
    parser.add_argument("--since", help="only events at or after (ISO 8601, or 7d / 12h ago)")
    parser.add_argument("--until", help="only events at or before")
    parser.add_argument("--state", default=".connector-replay-state.sqlite", help="resume file (default: %(default)s)")
    parser.add_argument("--sinks", help="comma list overriding CONNECTOR_SINKS, e.g. jsonl")
    parser.add_argument("--workers", type=int, default=8, help="files fetched at once (default: %(default)s)")
    parser.add_argument("--progress-seconds", type=float, default=10.0,
                        help="seconds between progress log lines when stderr is not a terminal (default: %(default)s)")
    add_settings_options(parser)
    parser.set_defaults(func=run)


class _BarStream:
    """A log stream that writes above the progress bar instead of through it."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def write(self, text: str) -> None:
        if text.strip():
            self.bar.write(text.rstrip("\n"), file=sys.stderr)

    def flush(self) -> None:
        sys.stderr.flush()


class Progress:
    """Counts of this run, committed to the resume state batch by batch, and shown as they grow.

    ``observe`` is the runner's batch observer (its loop thread, the thread that owns the state).
    """

    def __init__(self, source: FilesSource, state: ReplayState, *, every: float, tty: bool) -> None:
        self.source = source
        self.state = state
        self.files = self.records = self.findings = self.dead = self.failed = self.bytes = 0
        self.state_error: str | None = None
        self.every = every
        self.started = time.monotonic()
        self._shown = self.started
        self.bar: Any = None
        if tty:
            try:
                from tqdm import tqdm
            except ImportError:  # an install without it: log lines, as off a terminal
                return
            self.bar = tqdm(unit="file", file=sys.stderr, dynamic_ncols=True, smoothing=0.05, mininterval=0.5)
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(_BarStream(self.bar))

    def observe(self, batch: Sequence[SourceMessage], result: BatchResult | None) -> None:
        done = result.done if result is not None else ()
        retry = batch if result is None else result.retry
        totals = Totals(
            files=len(done),
            records=(result.findings + result.skipped + result.dead_lettered) if result is not None else 0,
            findings=result.findings if result is not None else 0,
            dead_lettered=result.dead_lettered if result is not None else 0,
            bytes=self.source.settled_bytes(done),
        )
        self.source.settled_bytes(retry)
        if done:
            try:  # after delivery, never before: a file is finished once its findings are in every sink
                self.state.mark_finished((m.id for m in done), totals)
            except Exception as exc:
                self.state_error = f"cannot write the replay state {self.state.path}: {exc}"
                log.error("%s; these %d files will be read again", self.state_error, len(done))
        self.files += totals.files
        self.failed += len(retry)
        self.records += totals.records
        self.findings += totals.findings
        self.dead += totals.dead_lettered
        self.bytes += totals.bytes
        self.show()

    # -- figures ---------------------------------------------------------------------------------
    def remaining(self) -> int | None:
        """Files still to settle (an upper bound while files finished earlier are still being listed),
        or None until the background count of the listing is done."""
        source = self.source
        if not source.counting_done:
            return None
        return max(0, source.counted - source.finished_earlier - self.files - self.failed - len(source.unreadable))

    def figures(self) -> dict[str, Any]:
        elapsed = max(1e-6, time.monotonic() - self.started)
        remaining = self.remaining()
        files_per_s = (self.files + self.failed) / elapsed
        return {
            "files": self.files, "files_failed": self.failed + len(self.source.unreadable),
            "files_remaining": remaining, "files_listed": self.source.listed, "listing_done": self.source.listing_done,
            "records": self.records, "findings": self.findings, "dead_lettered": self.dead, "bytes": self.bytes,
            "seconds": round(elapsed, 1), "files_per_s": round(files_per_s, 1), "records_per_s": round(self.records / elapsed),
            "bytes_per_s": round(self.bytes / elapsed),
            "eta_seconds": round(remaining / files_per_s) if remaining is not None and files_per_s > 0 else None,
        }

    def show(self) -> None:
        if self.bar is not None:
            bar = self.bar
            remaining = self.remaining()
            if remaining is not None:
                bar.total = self.files + self.failed + len(self.source.unreadable) + remaining
            elapsed = max(1e-6, time.monotonic() - self.started)
            bar.set_postfix_str(f"{self.records:,} records, {self.findings:,} findings, {self.bytes / 1e6:,.1f} MB, "
                                f"{self.records / elapsed:,.0f} rec/s", refresh=False)
            bar.update(self.files + self.failed + len(self.source.unreadable) - bar.n)
            return
        now = time.monotonic()
        if now - self._shown >= self.every:
            self._shown = now
            log.info("replay progress", extra=self.figures())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(sys.stderr)
            self.bar = None


def _window(text: str | None) -> datetime | None:
    return datetime.fromisoformat(parse_time(text).replace("Z", "+00:00")) if text else None


def _quiet_service_lines() -> None:
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.DEBUG:
        for name in CHATTY:
            logging.getLogger(name).setLevel(max(logging.WARNING, root.getEffectiveLevel()))
    log.setLevel(min(logging.INFO, root.getEffectiveLevel()))  # progress and the summary are the output


def run(args: argparse.Namespace) -> int:
    from connector.build import build_pipeline, build_runner
    from connector.sources.files import FilesSource

    overrides = {"sinks": [s.strip() for s in args.sinks.split(",") if s.strip()]} if args.sinks else None
    settings = settings_or_report("replay", args, overrides=overrides)
    if settings is None:
        return USAGE_ERROR
    _quiet_service_lines()
    state: ReplayState | None = None
    try:
        if args.workers < 1:
            raise ConnectorError(f"--workers must be at least 1, not {args.workers}")
        since, until = _window(args.since), _window(args.until)
        if since and until and since > until:
            raise ConnectorError(f"--since {args.since} is after --until {args.until}")
        state = ReplayState(args.state)
        source = FilesSource(args.location, since=since, until=until, state=state, ack_to_state=False,
                             workers=args.workers)
        # The location given on the command line is trusted: its large files arrive as S3 references.
        trusted = (args.location,) if args.location.startswith("s3://") else ()
        pipeline = build_pipeline(settings, since=since, until=until, trusted_locations=trusted)
    except ConnectorError as exc:
        if state is not None:
            state.close()
        report("replay", exc)
        return USAGE_ERROR
    source.count_ahead()
    progress = Progress(source, state, every=args.progress_seconds, tty=sys.stderr.isatty())
    runner = build_runner(settings, source, pipeline, once=True, observer=progress.observe, stop_on_release=False)
    try:
        code = runner.run()
    except KeyboardInterrupt:
        progress.close()
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        source.close()
        pipeline.close()
    progress.close()
    return _summary(args.location, source, progress, state, code)


def _summary(location: str, source: FilesSource, progress: Progress, state: ReplayState, code: int) -> int:
    try:
        whole = state.totals()
    finally:
        state.close()
    retry = progress.failed + len(source.unreadable)
    figures = progress.figures()
    figures.update(files_finished_earlier=source.finished_earlier, files_outside_window=source.skipped_by_name,
                   total_files=whole.files, total_records=whole.records, total_findings=whole.findings,
                   total_dead_lettered=whole.dead_lettered, total_bytes=whole.bytes, exit_code=code)
    text = (f"replay: {progress.files} files read ({source.finished_earlier} finished earlier, "
            f"{source.skipped_by_name} outside the window), {progress.records} records, {progress.findings} findings, "
            f"{progress.dead} dead-lettered, {retry} files to retry; whole backfill: {whole.files} files, "
            f"{whole.records} records, {whole.findings} findings")
    log.log(logging.WARNING if retry else logging.INFO, text, extra=figures)
    for name, why in source.unreadable[:10]:
        log.warning("to retry: %s: %s", name, why)
    if source.error:
        report("replay", source.error)
        return 1
    if source.listed == 0:
        report("replay", f"no CloudTrail log files under {location}")
        return USAGE_ERROR
    if progress.state_error:
        report("replay", progress.state_error)
        return 1
    return 1 if code or retry else 0
