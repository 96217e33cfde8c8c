"""``connector findings``: query the findings in OpenSearch, as a table or JSON lines.

(The module is ``query`` so that "findings" names one thing in the code: what the mappings make.)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.errors import ConnectorError
from connector.model import FORMATS

FILTERS = {
    "event": "connector.event_name",
    "account": "connector.account",
    "region": "connector.region",
    "principal": "connector.principal",
    "resource": "connector.resource_ids",
    "severity": "connector.severity",
    "status": "connector.status",
}


def parse_time(text: str, now: datetime | None = None) -> str:
    """``1h``, ``30m``, ``7d`` (ago) or an ISO 8601 time → ISO 8601 UTC."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return (now - timedelta(**{unit: int(match.group(1))})).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConnectorError(f"cannot read time {text!r}: use 1h, 30m, 7d or an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_query(args: argparse.Namespace) -> dict[str, Any]:
    must: list[dict[str, Any]] = []
    if args.since or args.until:
        bounds = {}
        if args.since:
            bounds["gte"] = parse_time(args.since)
        if args.until:
            bounds["lte"] = parse_time(args.until)
        must.append({"range": {"connector.event_time": bounds}})
    for option, field in FILTERS.items():
        value = getattr(args, option)
        if value:
            must.append({"term": {field: value.upper() if option in ("severity", "status") else value}})
    return {"query": {"bool": {"filter": must}}, "sort": [{"connector.event_time": {"order": "desc"}}], "size": args.limit}


def register(sub: Any) -> None:
    parser = sub.add_parser("findings", help="query findings in OpenSearch")
    parser.add_argument("--since", help="e.g. 1h, 7d or an ISO 8601 time (event time)")
    parser.add_argument("--until", help="e.g. 30m or an ISO 8601 time")
    for option in FILTERS:
        parser.add_argument(f"--{option}")
    parser.add_argument("--format", choices=FORMATS, default="asff", help="which index to read")
    parser.add_argument("--json", action="store_true", help="print the documents as JSON lines")
    parser.add_argument("--limit", type=int, default=100)
    add_settings_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from connector.build import opensearch_client

    settings = settings_or_report("findings", args, configure_logging=False)
    if settings is None:
        return USAGE_ERROR
    try:
        client = opensearch_client(settings)
        index = f"{settings.opensearch.index_prefix}-{args.format}"
        hits = client.search(index=index, body=build_query(args), ignore_unavailable=True)["hits"]["hits"]
    except ConnectorError as exc:
        report("findings", exc)
        return USAGE_ERROR
    except Exception as exc:
        report("findings", f"query failed: {exc}")
        return 1
    if args.json:
        for hit in hits:
            print(json.dumps(hit["_source"]))
        return 0
    rows = [
        (c.get("event_time", ""), c.get("event_name", ""), c.get("account", ""), c.get("region", ""),
         str(c.get("principal", ""))[:32], ",".join(c.get("resource_ids", []))[:32], c.get("severity", ""), c.get("outcome", ""))
        for c in (hit["_source"].get("connector", {}) for hit in hits)
    ]
    headers = ("TIME", "EVENT", "ACCOUNT", "REGION", "PRINCIPAL", "RESOURCE", "SEVERITY", "OUTCOME")
    widths = [max(len(str(r[i])) for r in [*rows, headers]) for i in range(len(headers))]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    print(f"{len(rows)} finding(s)", file=sys.stderr)
    return 0
