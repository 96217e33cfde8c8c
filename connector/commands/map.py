"""``connector map [PATH|-] --format asff|ocsf``: records or any captured envelope → findings (JSON Lines).

The same decode/select/map/validate code the service runs, offline: a bare record, a JSON array,
JSON Lines, a CloudTrail log file (plain or gzip), EventBridge, SNS, SQS/Kinesis/Lambda shapes.
Findings go to stdout, one per line; anything else to stderr. Exit 1 if any record was invalid.
``--explain`` prints instead, for each record, the mapping, every context and suppression rule with
each condition's value and verdict, and the resulting severity (``--rules FILE`` tries a rules file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from connector.build import build_stages, s3_client
from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.envelopes import DecodeFailure, Skipped
from connector.errors import ConnectorError
from connector.model import FORMATS
from connector.triage import MemorySightings
from connector.triage.explain import explain


def register(sub: Any) -> None:
    parser = sub.add_parser("map", help="turn CloudTrail records or envelopes into findings (JSON Lines on stdout)")
    parser.add_argument("path", nargs="?", default="-", help="input file, or - for stdin (default)")
    parser.add_argument("--format", choices=FORMATS, default="asff")
    parser.add_argument("--mappings", default=None, help="mapping directory (default: the bundled mappings/)")
    parser.add_argument("--s3", action="store_true", help="fetch objects named by S3 notifications (uses your AWS credentials)")
    parser.add_argument("--pretty", action="store_true", help="indent the JSON (no longer one finding per line)")
    parser.add_argument("--explain", action="store_true",
                        help="instead of findings, print for each record the mapping, the context and suppression "
                             "rules that matched and why, and the resulting severity")
    parser.add_argument("--rules", default=None,
                        help="triage rules file to use (default: the triage.rules_file setting; 'none' for no triage)")
    add_settings_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_or_report("map", args)
    if settings is None:
        return USAGE_ERROR
    try:
        # No byte prefilter here: offline, every malformed part must be reported, not skipped unseen.
        # Sightings in memory: an offline run must not write into the service's first-seen table.
        stages = build_stages(settings, mappings_dir=args.mappings, s3=s3_client() if args.s3 else None, prefilter=False,
                              triage_rules=args.rules, first_seen=MemorySightings())
    except ConnectorError as exc:
        report("map", exc)
        return USAGE_ERROR
    try:
        body = sys.stdin.buffer.read() if args.path == "-" else Path(args.path).read_bytes()
    except OSError as exc:
        report("map", f"cannot read {args.path}: {exc.strerror or exc}")
        return USAGE_ERROR
    factory, decoder, selector = stages.factory, stages.decoder, stages.selector
    origin = "stdin" if args.path == "-" else args.path
    written = skipped = invalid = 0
    out = sys.stdout
    for item in decoder.decode(body, origin=origin):
        if isinstance(item, Skipped):
            skipped += item.count
            continue
        if isinstance(item, DecodeFailure):
            invalid += 1
            print(f"invalid: {item.origin}: {item.error}", file=sys.stderr)
            continue
        if not selector.matches(item.record):
            skipped += 1
            continue
        if args.explain:
            try:
                out.write(explain(factory, item.record, origin=item.origin) + "\n\n")
                written += 1
            except ConnectorError as exc:
                invalid += 1
                print(f"invalid: {item.origin}: {exc}", file=sys.stderr)
            continue
        try:
            rendered = factory.render(item.record, origin=item.origin)
        except ConnectorError as exc:
            invalid += 1
            print(f"invalid: {item.origin}: {exc}", file=sys.stderr)
            continue
        for finding in rendered:
            if finding.format == args.format:
                out.write(json.dumps(finding.document, indent=2 if args.pretty else None, ensure_ascii=False) + "\n")
                written += 1
    out.flush()
    what = "records explained" if args.explain else "findings"
    print(f"connector map: {written} {what}, {skipped} other events skipped, {invalid} invalid", file=sys.stderr)
    return 1 if invalid else 0
