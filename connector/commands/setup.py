"""``connector setup``: install OpenSearch index templates, the ISM policy and (with a Dashboards
URL) the saved objects, idempotently.

The Dashboards URL is ``dashboards_url`` (``CONNECTOR_DASHBOARDS_URL``) or ``--dashboards-url``;
without one the dashboards are not installed and setup says how to install them.
"""

from __future__ import annotations

import argparse
from typing import Any

from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.errors import ConfigError, ConnectorError


def register(sub: Any) -> None:
    parser = sub.add_parser("setup", help="install OpenSearch index templates, ISM policy and dashboards (idempotent)")
    parser.add_argument("--no-ism", action="store_true", help="do not install the ISM retention policy")
    parser.add_argument("--dashboards-url", default=None,
                        help="OpenSearch Dashboards URL for the saved objects (else CONNECTOR_DASHBOARDS_URL)")
    add_settings_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from connector.build import opensearch_client
    from connector.sinks.opensearch.setup import install, install_dashboards

    overrides = {"dashboards_url": args.dashboards_url} if args.dashboards_url else None
    settings = settings_or_report("setup", args, overrides=overrides)
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
    if not settings.dashboards_url:
        print("dashboards: skipped (set CONNECTOR_DASHBOARDS_URL or --dashboards-url to import "
              "deploy/opensearch/dashboards/findings.ndjson)")
        return 0
    try:
        print(install_dashboards(settings.dashboards_url, settings.opensearch))
    except ConfigError as exc:
        report("setup", exc)
        return USAGE_ERROR
    except ConnectorError as exc:
        report("setup", exc)
        return 1
    return 0
