"""``connector findings``: answer SOC questions from the findings in OpenSearch.

Filters (each takes a comma-separated list; any value matches, case-insensitively):
``--principal`` matches a name (``alice``, ``root``, a role or session name), an ARN (an IAM role
ARN also matches the sessions of that role) or a 12-digit account id (the principal's account);
``--event``, ``--account``, ``--region``, ``--resource`` (id or ARN), ``--severity`` (checked
against the severity labels), ``--since``/``--until`` (an empty range is an error).

The listing pages with ``search_after`` in a point in time (sorted by event time, then finding id
as the tie-breaker, so no page repeats or skips a finding), so ``--limit`` may exceed the
10,000-hit result window; the total that matched is printed (stderr) whatever the limit.
``--count-by event|account|principal|severity|day`` counts instead of listing, through a
composite aggregation of terms (or a daily date histogram), paged so every bucket is exact.
``--output table|json|csv``: a table for people, JSON lines or CSV for tools.

(The module is ``query`` so that "findings" names one thing in the code: what the mappings make.)
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.errors import ConnectorError
from connector.model import FORMATS, Severity

PAGE_SIZE = 1000
KEEP_ALIVE = "2m"
SORT = [{"connector.event_time": {"order": "desc"}}, {"connector.finding_id": {"order": "asc"}}]
COUNT_BY = {
    "event": "connector.event_name",
    "account": "connector.account",
    "principal": "connector.principal_arn",
    "severity": "connector.severity",
    "day": "connector.event_time",
}
STATUSES = ("NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED")
LIST_COLUMNS = ("time", "event", "account", "region", "principal", "principal_arn", "resource", "severity", "outcome", "finding_id")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# ---- arguments -----------------------------------------------------------------------------------

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


def _values(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected a value")
    return values


def _choices(options: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [v.upper() for v in _values(text)]
        unknown = [v for v in values if v not in options]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))}: choose from {', '.join(options)}")
        return values
    return parse


def _time(text: str) -> str:
    try:
        return parse_time(text)
    except ConnectorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def register(sub: Any) -> None:
    parser = sub.add_parser("findings", help="query, count and export findings in OpenSearch")
    parser.add_argument("--since", type=_time, help="e.g. 1h, 7d or an ISO 8601 time (event time)")
    parser.add_argument("--until", type=_time, help="e.g. 30m or an ISO 8601 time")
    parser.add_argument("--principal", type=_values, help="name, ARN or account id of who made the call")
    parser.add_argument("--event", type=_values, help="event name, e.g. DeleteNatGateway (any case)")
    parser.add_argument("--account", type=_values, help="account the event happened in")
    parser.add_argument("--region", type=_values)
    parser.add_argument("--resource", type=_values, help="resource id or ARN")
    parser.add_argument("--severity", type=_choices([s.name for s in Severity]), help="e.g. high,critical")
    parser.add_argument("--status", type=_choices(STATUSES))
    parser.add_argument("--format", choices=FORMATS, default="asff", help="which index to read")
    parser.add_argument("--count-by", choices=tuple(COUNT_BY), help="count findings per value instead of listing them")
    parser.add_argument("--output", choices=("table", "json", "csv"), default=None, help="default: table")
    parser.add_argument("--json", action="store_true", help="same as --output json")
    parser.add_argument("--limit", type=_positive, default=100, help="findings to list (paged past 10,000)")
    add_settings_options(parser)
    parser.set_defaults(func=run)


# ---- the query -----------------------------------------------------------------------------------

def _wildcard_escape(text: str) -> str:
    return re.sub(r"([\\*?])", r"\\\1", text)


def _term(field: str, value: str) -> dict[str, Any]:
    return {"term": {field: {"value": value, "case_insensitive": True}}}


def _wildcard(field: str, pattern: str) -> dict[str, Any]:
    return {"wildcard": {field: {"value": pattern, "case_insensitive": True}}}


def _any(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def principal_clauses(value: str) -> list[dict[str, Any]]:
    """Everything a SOC may mean by a principal (see the module docstring)."""
    if re.fullmatch(r"\d{1,12}", value):  # the principal's account: it is in the ARN
        return [_wildcard("connector.principal_arn", f"arn:*:*::{value.zfill(12)}:*")]
    if value.lower().startswith("arn:"):
        clauses = [_term("connector.principal_arn", value)]
        role = re.fullmatch(r"arn:([\w-]+):iam::(\d{12}):role/(?:[^/]+/)*([^/]+)", value)
        if role:  # a role's sessions: arn:aws:sts::<account>:assumed-role/<name>/<session>
            partition, account, name = role.groups()
            clauses.append(_wildcard("connector.principal_arn",
                                     f"arn:{partition}:sts::{account}:assumed-role/{_wildcard_escape(name)}/*"))
        return clauses
    escaped = _wildcard_escape(value)
    return [
        _term("connector.principal", value),                      # alice, an ARN shown as the name
        _wildcard("connector.principal", f"{escaped} (*"),         # root (111122223333)
        _wildcard("connector.principal", f"{escaped}/*"),          # RoleName/session
        _wildcard("connector.principal_arn", f"*/{escaped}"),      # user/alice, assumed-role/Role/session
        _wildcard("connector.principal_arn", f"*:{escaped}"),      # arn:aws:iam::111122223333:root
        _term("connector.principal_arn", value),                  # cloudformation.amazonaws.com
    ]


def build_query(args: argparse.Namespace) -> dict[str, Any]:
    """The ``query`` part of the search body for the command's filters."""
    must: list[dict[str, Any]] = []
    if args.since or args.until:
        bounds = {}
        if args.since:
            bounds["gte"] = args.since
        if args.until:
            bounds["lte"] = args.until
        must.append({"range": {"connector.event_time": bounds}})
    if args.principal:
        must.append(_any([c for v in args.principal for c in principal_clauses(v)]))
    if args.account:
        must.append(_any([_term("connector.account", v.zfill(12) if v.isdigit() else v) for v in args.account]))
    for option, field in (("event", "connector.event_name"), ("region", "connector.region"),
                          ("severity", "connector.severity"), ("status", "connector.status")):
        if getattr(args, option):
            must.append(_any([_term(field, v) for v in getattr(args, option)]))
    if args.resource:
        must.append(_any([_term(f, v) for v in args.resource for f in ("connector.resource_ids", "connector.resource_arns")]))
    return {"bool": {"filter": must}}


def _open_pit(client: Any, index: str) -> str | None:
    """A point in time on ``index``, or None where there is none (then search_after alone, whose
    tie-breaker still keeps pages apart)."""
    from opensearchpy.exceptions import TransportError

    try:
        answer = client.transport.perform_request("POST", f"/{index}/_search/point_in_time", params={"keep_alive": KEEP_ALIVE})
    except TransportError:
        return None
    pit = answer.get("pit_id")
    return str(pit) if pit else None


def _close_pit(client: Any, pit: str) -> None:
    try:
        client.transport.perform_request("DELETE", "/_search/point_in_time", body={"pit_id": [pit]})
    except Exception:  # it expires by itself after KEEP_ALIVE
        pass


def search(client: Any, index: str, query: dict[str, Any], limit: int) -> tuple[int, Iterator[dict[str, Any]]]:
    """The total that matched, and the first ``limit`` hits, page by page."""
    pit = _open_pit(client, index)

    def page(size: int, after: list[Any] | None, total: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query, "sort": SORT, "size": size, "track_total_hits": total}
        if after is not None:
            body["search_after"] = after
        if pit:
            body["pit"] = {"id": pit, "keep_alive": KEEP_ALIVE}
            return dict(client.search(body=body))
        return dict(client.search(index=index, body=body, ignore_unavailable=True))

    try:
        first = page(min(limit, PAGE_SIZE), None, True)
    except BaseException:
        if pit:
            _close_pit(client, pit)
        raise
    total = int(first["hits"]["total"]["value"])

    def hits() -> Iterator[dict[str, Any]]:
        try:
            answer, left = first, limit
            while True:
                batch = answer["hits"]["hits"]
                yield from batch[:left]
                left -= len(batch)
                if left <= 0 or len(batch) < min(left + len(batch), PAGE_SIZE):
                    return
                answer = page(min(left, PAGE_SIZE), batch[-1]["sort"], False)
        finally:
            if pit:
                _close_pit(client, pit)

    return total, hits()


def count_by(client: Any, index: str, query: dict[str, Any], key: str) -> tuple[int, list[tuple[str, int]]]:
    """The total, and (value, count) for every value of ``key``: most first (days in order)."""
    field = COUNT_BY[key]
    if key == "day":
        # A plain date histogram: days are few (the retention is 400), and OpenSearch 2.19 fails a
        # composite date histogram asked for the page after its last bucket (HTTP 500).
        histogram = {"date_histogram": {"field": field, "calendar_interval": "1d", "format": "yyyy-MM-dd", "min_doc_count": 1}}
        body = {"size": 0, "query": query, "track_total_hits": True, "aggs": {"by": histogram}}
        answer = client.search(index=index, body=body, ignore_unavailable=True)
        days = answer.get("aggregations", {}).get("by", {}).get("buckets", [])
        return int(answer["hits"]["total"]["value"]), [(str(b["key_as_string"]), int(b["doc_count"])) for b in days]
    sources = [{"key": {"terms": {"field": field, "missing_bucket": True}}}]
    if key == "principal":  # no ARN (an Identity Center user): the principal's name instead
        sources.append({"name": {"terms": {"field": "connector.principal", "missing_bucket": True}}})
    counts: dict[str, int] = {}
    after: dict[str, Any] | None = None
    total = 0
    while True:  # composite: every bucket, exactly, a page at a time
        composite: dict[str, Any] = {"size": PAGE_SIZE, "sources": sources}
        if after:
            composite["after"] = after
        body = {"size": 0, "query": query, "track_total_hits": after is None, "aggs": {"by": {"composite": composite}}}
        answer = client.search(index=index, body=body, ignore_unavailable=True)
        if after is None:
            total = int(answer["hits"]["total"]["value"])
        agg = answer.get("aggregations", {}).get("by", {})
        page = agg.get("buckets", [])
        for bucket in page:
            label = bucket["key"]["key"] if bucket["key"]["key"] is not None else bucket["key"].get("name")
            label = "(none)" if label is None else str(label)
            counts[label] = counts.get(label, 0) + int(bucket["doc_count"])
        after = agg.get("after_key")
        if len(page) < PAGE_SIZE or not after:
            break
    return total, sorted(counts.items(), key=lambda b: (-b[1], b[0]))


# ---- output --------------------------------------------------------------------------------------

def _printable(value: object) -> str:
    """CloudTrail values are attacker-influenced: no terminal control sequences in the table."""
    return _UNPRINTABLE.sub("?", str(value))


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _row(source: dict[str, Any]) -> tuple[str, ...]:
    c = source.get("connector", {})
    return (c.get("event_time", ""), c.get("event_name", ""), c.get("account", ""), c.get("region", ""), c.get("principal", ""),
            c.get("principal_arn", ""), ",".join(c.get("resource_ids", [])), c.get("severity", ""), c.get("outcome", ""),
            c.get("finding_id", ""))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], widest: int = 48) -> None:
    cells = [[_printable(v)[:widest] for v in row] for row in rows]
    widths = [max(len(str(r[i])) for r in [*cells, headers]) for i in range(len(headers))]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def write_counts(output: str, key: str, buckets: list[tuple[str, int]]) -> None:
    if output == "json":
        for value, n in buckets:
            print(json.dumps({key: value, "count": n}))
    elif output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([key, "count"])
        writer.writerows([_cell(value), n] for value, n in buckets)
    else:
        _table((key, "count"), buckets, widest=120)


def write_hits(output: str, hits: Iterator[dict[str, Any]]) -> int:
    shown = 0
    if output == "json":
        for hit in hits:
            print(json.dumps(hit["_source"]))
            shown += 1
    elif output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(LIST_COLUMNS)
        for hit in hits:
            writer.writerow([_cell(v) for v in _row(hit["_source"])])
            shown += 1
    else:
        rows = [_row(hit["_source"]) for hit in hits]
        shown = len(rows)
        columns = [i for i, name in enumerate(LIST_COLUMNS) if name not in ("principal_arn", "finding_id")]
        _table([LIST_COLUMNS[i] for i in columns], [[r[i] for i in columns] for r in rows], widest=40)
    return shown


def run(args: argparse.Namespace) -> int:
    from connector.build import opensearch_client

    if args.since and args.until and args.since > args.until:
        report("findings", f"--since ({args.since}) is after --until ({args.until}): the time range is empty")
        return USAGE_ERROR
    output = args.output or ("json" if args.json else "table")
    settings = settings_or_report("findings", args, configure_logging=False)
    if settings is None:
        return USAGE_ERROR
    index = f"{settings.opensearch.index_prefix}-{args.format}"
    try:
        client = opensearch_client(settings)
        query = build_query(args)
        if args.count_by:
            total, buckets = count_by(client, index, query, args.count_by)
            write_counts(output, args.count_by, buckets)
            print(f"{total} finding(s), {len(buckets)} {args.count_by} value(s)", file=sys.stderr)
            return 0
        total, hits = search(client, index, query, args.limit)
        shown = write_hits(output, hits)
    except ConnectorError as exc:
        report("findings", exc)
        return USAGE_ERROR
    except Exception as exc:
        report("findings", f"query of {index} at {settings.opensearch.url} failed: {exc}")
        return 1
    more = f" (--limit {args.limit}; raise it to see more)" if shown < total else ""
    print(f"showing {shown} of {total} finding(s){more}", file=sys.stderr)
    return 0
