"""``connector run [--once] [--config FILE]``: the long-running service (or one drain)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from connector.commands.common import settings_or_report
from connector.errors import ConnectorError
from connector.runtime import logs


def register(sub: Any) -> None:
    parser = sub.add_parser("run", help="consume the configured source and deliver findings")
    parser.add_argument("--once", action="store_true", help="drain what the source holds now, then exit")
    parser.add_argument("--config", default=None, help="YAML settings file (else CONNECTOR_CONFIG_FILE)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_or_report("run", config_file=args.config)
    if settings is None:
        return 2
    logs.configure(settings.log_level, secrets=[settings.opensearch.password])
    from connector.runtime import service

    try:
        return service.run(settings, once=args.once)
    except ConnectorError as exc:
        print(f"connector run: {exc}", file=sys.stderr)
        return 2
