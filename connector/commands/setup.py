"""``connector setup``: install OpenSearch index templates and the ISM policy (idempotent)."""

from __future__ import annotations

import argparse
from typing import Any

from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.errors import ConnectorError


def register(sub: Any) -> None:
    parser = sub.add_parser("setup", help="install OpenSearch index templates and ISM policy (idempotent)")
    parser.add_argument("--no-ism", action="store_true", help="do not install the ISM retention policy")
    add_settings_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from connector.build import opensearch_client
    from connector.sinks.opensearch.setup import install

    settings = settings_or_report("setup", args)
    if settings is None:
        return USAGE_ERROR
    try:
        client = opensearch_client(settings)
        for line in install(client, settings.opensearch.index_prefix, ism=not args.no_ism):
            print(line)
    except ConnectorError as exc:
        report("setup", exc)
        return USAGE_ERROR
    except Exception as exc:  # connection refused, auth errors: one clear line
        report("setup", f"OpenSearch at {settings.opensearch.url}: {exc}")
        return 1
    return 0
