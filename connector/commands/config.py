"""``connector config``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from connector.commands.common import USAGE_ERROR, add_settings_options, settings_or_report
from connector.config import masked


def register(sub: Any) -> None:
    parser = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    add_settings_options(parser)
    parser.add_argument("--json", action="store_true", help="JSON instead of YAML")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_or_report("config", args, configure_logging=False)
    if settings is None:
        return USAGE_ERROR
    data = masked(settings)
    print(json.dumps(data, indent=2) if args.json else yaml.safe_dump(data, sort_keys=False), end="")
    return 0
