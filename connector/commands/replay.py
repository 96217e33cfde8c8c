"""``connector replay PATH|s3://bucket/prefix [--since] [--until] [--state FILE]``: backfill.

Every CloudTrail log file (plain or gzip, local or in S3) goes through the same pipeline and
sinks as the service. A state file records each file once all its findings are delivered, so an
interrupted replay resumes where it stopped (finished files are skipped). Progress (files,
records, findings) goes to stderr; a summary ends the run. Exit 0 when every file was finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from connector.commands.query import parse_time
from connector.config import load_settings
from connector.errors import ConnectorError
from connector.model import SourceMessage


def register(sub: Any) -> None:
    parser = sub.add_parser("replay", help="backfill findings from CloudTrail log files (local or S3)")
    parser.add_argument("location", help="a file, a directory, or s3://bucket/prefix")
    parser.add_argument("--since", help="only events at or after (ISO 8601, or 7d / 12h ago)")
    parser.add_argument("--until", help="only events at or before")
    parser.add_argument("--state", default=".connector-replay-state.json", help="resume file (default: %(default)s)")
    parser.add_argument("--sinks", help="comma list overriding CONNECTOR_SINKS, e.g. jsonl")
    parser.set_defaults(func=run)


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.files = self.records = self.findings = self.dead = self.failed = 0
        self.tty = sys.stderr.isatty()
        self._shown = 0.0

    def show(self, final: bool = False) -> None:
        if not final and time.monotonic() - self._shown < 0.5 and self.files < self.total:
            return
        self._shown = time.monotonic()
        done = self.files / self.total if self.total else 1.0
        bar = "#" * int(done * 30)
        line = (f"[{bar:<30}] {self.files}/{self.total} files, {self.records} records, "
                f"{self.findings} findings, {self.dead} dead-lettered")
        print(("\r" + line) if self.tty else line, end="\n" if (final or not self.tty) else "", file=sys.stderr, flush=True)


def _load_state(path: Path) -> set[str]:
    if not path.exists():
        return set()
    try:
        return set(json.loads(path.read_text()).get("finished", []))
    except (ValueError, OSError) as exc:
        raise ConnectorError(f"replay state {path} is unreadable ({exc}); delete it to start over") from None


def _save_state(path: Path, finished: set[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"finished": sorted(finished)}))
    tmp.replace(path)  # atomic: a crash never leaves half a state file


def run(args: argparse.Namespace) -> int:
    from connector.pipeline import Pipeline
    from connector.sources.files import FilesSource

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        from datetime import datetime

        since_dt = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
        until_dt = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
        overrides = {"sinks": [s.strip() for s in args.sinks.split(",")]} if args.sinks else None
        settings = load_settings(overrides=overrides)
        state_path = Path(args.state)
        finished = _load_state(state_path)
        source = FilesSource(args.location, skip=finished, since=since_dt, until=until_dt)
        names = list(source._files)
        pipeline = Pipeline.from_settings(settings, since=since_dt, until=until_dt)
    except ConnectorError as exc:
        print(f"connector replay: {exc}", file=sys.stderr)
        return 2
    progress = Progress(len(names))
    resumed = len(finished)
    try:
        for name in names:
            message = SourceMessage(id=name, body=source._read(name), ack_token=name, source="file")
            result = pipeline.handle([message])
            progress.files += 1
            progress.findings += result.findings
            progress.dead += result.dead_lettered
            progress.records += result.findings + result.skipped + result.dead_lettered
            if result.done:
                finished.add(name)
                _save_state(state_path, finished)
            else:
                progress.failed += 1
            progress.show()
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        pipeline.close()
    progress.show(final=True)
    print(
        f"replay: {progress.files} files read ({resumed} finished earlier, {source.skipped_by_name} outside the window), "
        f"{progress.records} records, {progress.findings} findings, {progress.dead} dead-lettered, "
        f"{progress.failed} files to retry",
        file=sys.stderr,
    )
    return 0 if progress.failed == 0 else 1
