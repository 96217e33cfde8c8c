"""``connector redrive [FROM] [--stage S] [--reason REGEX] [--since] [--until] [--dry-run]``.

Moves dead letters back through the pipeline once the cause is fixed (a sink back up, a mapping
corrected): the letters of ``FROM`` (default: the configured ``dead_letter`` destination; an SQS
queue URL, ``s3://bucket/prefix`` or ``file:///dir``) that match the filters are decoded,
mapped and delivered again by the same runner as ``run --once``. What is delivered is removed;
what fails again is dead-lettered again with its new reason (and the old letter removed); what
cannot be delivered now (a sink still down) stays. ``--dry-run`` only counts what would go.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from typing import Any

from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.commands.query import parse_time
from connector.errors import ConnectorError


def register(sub: Any) -> None:
    parser = sub.add_parser("redrive", help="send dead letters through the pipeline again")
    parser.add_argument("source", nargs="?", help="dead-letter URL (default: the configured dead_letter)")
    parser.add_argument("--stage", action="append", default=[], help="only letters of this stage (repeatable)")
    parser.add_argument("--reason", help="only letters whose reason matches this regular expression")
    parser.add_argument("--since", help="only letters written at or after (ISO 8601, or 7d / 12h ago)")
    parser.add_argument("--until", help="only letters written at or before")
    parser.add_argument("--dry-run", action="store_true", help="count the letters that would be redriven, change nothing")
    add_settings_options(parser)
    parser.set_defaults(func=run)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(parse_time(text).replace("Z", "+00:00")) if text else None


def run(args: argparse.Namespace) -> int:
    from connector.build import build_pipeline, build_runner
    from connector.deadletters import dead_letter_kind
    from connector.deadletters.base import Redrivable
    from connector.sources.deadletters import DeadLetterSource, LetterFilter

    settings = settings_or_report("redrive", args)
    if settings is None:
        return USAGE_ERROR
    url = args.source or settings.dead_letter
    try:
        if not url:
            raise ConnectorError("no dead letters to read: give FROM or set CONNECTOR_DEAD_LETTER")
        try:
            pattern = re.compile(args.reason) if args.reason else None
        except re.error as exc:
            raise ConnectorError(f"--reason {args.reason!r} is not a regular expression: {exc}") from None
        letters = LetterFilter(frozenset(args.stage), pattern, _time(args.since), _time(args.until))
        destination = dead_letter_kind(url)(url)
        if not isinstance(destination, Redrivable):
            raise ConnectorError(f"{url}: this dead-letter destination cannot be read back")
        source = DeadLetterSource(destination, letters)
    except (ConnectorError, ValueError) as exc:
        report("redrive", exc)
        return USAGE_ERROR
    try:
        source.open()
    except ConnectorError as exc:  # a missing bucket or queue is not "no letters"
        report("redrive", exc)
        return 1
    if args.dry_run:
        try:
            for _ in source.matching():
                pass
        finally:
            source.close()
        stages = ", ".join(f"{stage}: {count}" for stage, count in sorted(source.by_stage.items())) or "none"
        print(f"redrive --dry-run: {source.matched} letters would be redriven from {url} ({stages})", file=sys.stderr)
        return 0
    pipeline = build_pipeline(settings)
    runner = build_runner(settings, source, pipeline, once=True, stop_on_release=False)
    try:
        code = runner.run()
    finally:
        source.close()
        pipeline.close()
    print(f"redrive: {source.matched} letters from {url}: {runner.acked} handled (delivered, or dead-lettered again "
          f"with the new reason), {len(runner.outstanding)} left in place", file=sys.stderr)
    return code
