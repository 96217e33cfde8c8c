"""``connector run [--once] [--config FILE]``: the long-running service (or one drain)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from connector.commands.common import USAGE_ERROR, add_settings_options, settings_or_report
from connector.errors import ConnectorError


def register(sub: Any) -> None:
    parser = sub.add_parser("run", help="consume the configured source and deliver findings")
    parser.add_argument("--once", action="store_true", help="drain what the source holds now, then exit")
    add_settings_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_or_report("run", args)
    if settings is None:
        return USAGE_ERROR
    from connector.runtime import service

    try:
        return service.run(settings, once=args.once)
    except ConnectorError as exc:  # logging is configured: the line joins the service's JSON stream
        logging.getLogger("connector.commands.run").error("connector run: %s", exc)
        return USAGE_ERROR
