"""``connector config``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from connector.config import load_settings, masked
from connector.errors import ConnectorError


def register(sub: Any) -> None:
    parser = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    parser.add_argument("--config", default=None, help="YAML settings file (else CONNECTOR_CONFIG_FILE)")
    parser.add_argument("--json", action="store_true", help="JSON instead of YAML")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(config_file=args.config)
    except ConnectorError as exc:
        print(f"connector config: {exc}", file=sys.stderr)
        return 2
    data = masked(settings)
    print(json.dumps(data, indent=2) if args.json else yaml.safe_dump(data, sort_keys=False), end="")
    return 0
