"""``connector replay PATH|s3://bucket/prefix [--since] [--until] [--state FILE]``: backfill.

Every CloudTrail log file (plain or gzip, local or in S3) is a message of the files source,
run through the composition root's pipeline by the same runner loop as ``connector run
--once`` (``settings.max_in_flight`` files at a time). A file acknowledged by the runner is
recorded in the resume state (SQLite, O(1) per file), so an interrupted replay resumes where
it stopped. Progress goes to stderr; a summary ends the run. Exit 0 when every file was
finished; non-zero for a listing error, an empty or mistyped prefix, or files left to retry.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.commands.query import parse_time
from connector.errors import ConnectorError
from connector.model import SourceMessage

if TYPE_CHECKING:
    from connector.pipeline import BatchResult


def register(sub: Any) -> None:
    parser = sub.add_parser("replay", help="backfill findings from CloudTrail log files (local or S3)")
    parser.add_argument("location", help="a file, a directory, or s3://bucket/prefix")
    parser.add_argument("--since", help="only events at or after (ISO 8601, or 7d / 12h ago)")
    parser.add_argument("--until", help="only events at or before")
    parser.add_argument("--state", default=".connector-replay-state.sqlite", help="resume file (default: %(default)s)")
    parser.add_argument("--sinks", help="comma list overriding CONNECTOR_SINKS, e.g. jsonl")
    add_settings_options(parser)
    parser.set_defaults(func=run)


class Progress:
    """Files, records, findings and dead letters so far; a bar on a TTY, a line at most every 0.5 s otherwise."""

    def __init__(self) -> None:
        self.files = self.records = self.findings = self.dead = self.failed = 0
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self._shown = 0.0

    def observe(self, batch: Sequence[SourceMessage], result: BatchResult | None) -> None:
        self.files += len(batch)
        if result is None:
            self.failed += len(batch)
        else:
            self.findings += result.findings
            self.dead += result.dead_lettered
            self.records += result.findings + result.skipped + result.dead_lettered
            self.failed += len(result.retry)
        self.show()

    def show(self, final: bool = False) -> None:
        if not final and time.monotonic() - self._shown < 0.5:
            return
        self._shown = time.monotonic()
        rate = self.records / max(1e-6, self._shown - self.started)
        line = (f"{self.files} files, {self.records} records, {self.findings} findings, "
                f"{self.dead} dead-lettered, {rate:,.0f} records/s")
        print(("\r" + line) if self.tty else line, end="\n" if (final or not self.tty) else "", file=sys.stderr, flush=True)


def _window(text: str | None) -> datetime | None:
    return datetime.fromisoformat(parse_time(text).replace("Z", "+00:00")) if text else None


def run(args: argparse.Namespace) -> int:
    from connector.build import build_pipeline, build_runner
    from connector.sources.files import FilesSource
    from connector.sources.replay_state import ReplayState

    overrides = {"sinks": [s.strip() for s in args.sinks.split(",") if s.strip()]} if args.sinks else None
    settings = settings_or_report("replay", args, overrides=overrides)
    if settings is None:
        return USAGE_ERROR
    try:
        since, until = _window(args.since), _window(args.until)
        if since and until and since > until:
            raise ConnectorError(f"--since {args.since} is after --until {args.until}")
        state = ReplayState(args.state)
        source = FilesSource(args.location, since=since, until=until, state=state)
        # The location given on the command line is trusted: its large files arrive as S3 references.
        trusted = (args.location,) if args.location.startswith("s3://") else ()
        pipeline = build_pipeline(settings, since=since, until=until, trusted_locations=trusted)
    except ConnectorError as exc:
        report("replay", exc)
        return USAGE_ERROR
    progress = Progress()
    runner = build_runner(settings, source, pipeline, once=True, observer=progress.observe, stop_on_release=False)
    try:
        code = runner.run()
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        pipeline.close()
        state.close()
    progress.show(final=True)
    print(
        f"replay: {progress.files} files read ({source.finished_earlier} finished earlier, "
        f"{source.skipped_by_name} outside the window), {progress.records} records, {progress.findings} findings, "
        f"{progress.dead} dead-lettered, {progress.failed + len(source.unreadable)} files to retry",
        file=sys.stderr,
    )
    if source.error:
        report("replay", source.error)
        return 1
    if source.listed == 0:
        report("replay", f"no CloudTrail log files under {args.location}")
        return 1
    return 1 if code or progress.failed or source.unreadable else 0
