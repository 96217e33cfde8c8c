"""``connector setup``: install OpenSearch index templates and the ISM policy (idempotent)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from connector.config import load_settings
from connector.errors import ConnectorError


def register(sub: Any) -> None:
    parser = sub.add_parser("setup", help="install OpenSearch index templates and ISM policy (idempotent)")
    parser.add_argument("--no-ism", action="store_true", help="do not install the ISM retention policy")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from connector.sinks.opensearch.client import make_client
    from connector.sinks.opensearch.setup import install

    try:
        settings = load_settings()
        client = make_client(settings.opensearch)
        for line in install(client, settings.opensearch.index_prefix, ism=not args.no_ism):
            print(line)
    except ConnectorError as exc:
        print(f"connector setup: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # connection refused, auth errors: one clear line
        print(f"connector setup: OpenSearch at {load_settings().opensearch.url}: {exc}", file=sys.stderr)
        return 1
    return 0
