"""``connector remediate EVENT_FILE | --finding-id ID [--apply [--yes]]``: put back what was removed.

Reads the deletion's CloudTrail record (a file, or the finding's stored record in the JSONL
directory or OpenSearch), reads the removed resource live (the mapping's enrichment, in the
event's account and Region; values stored with the finding fill what is no longer readable),
prints the restore plan with the values, runs every call with EC2 ``DryRun=True``, and applies it
only with ``--apply`` after a confirmation (``--yes`` skips it). Every call is printed and logged.
A plan that needs a value nobody knows is refused (exit 1) and says which.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from connector.commands.common import USAGE_ERROR, add_settings_options, report, settings_or_report
from connector.config import Settings
from connector.errors import ConnectorError


def register(sub: Any) -> None:
    parser = sub.add_parser("remediate", help="restore what a deletion removed: plan, dry run, then --apply")
    parser.add_argument("event", nargs="?", help="file with the deletion's CloudTrail record")
    parser.add_argument("--finding-id", default=None, help="read the record of this finding instead")
    parser.add_argument("--from", dest="source", choices=("jsonl", "opensearch"), default="jsonl",
                        help="where --finding-id is looked up (jsonl.directory or the OpenSearch indexes)")
    parser.add_argument("--apply", action="store_true", help="apply the plan after a successful dry run")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation before applying")
    parser.add_argument("--budget", type=float, default=15.0, help="seconds for the live lookups (default 15, at most 30)")
    add_settings_options(parser)
    parser.set_defaults(func=run)


def _records(doc: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(doc, Mapping) and isinstance(doc.get("Records"), list):
        yield from (r for r in doc["Records"] if isinstance(r, Mapping))
    elif isinstance(doc, Mapping) and isinstance(doc.get("detail"), Mapping):
        yield doc["detail"]
    elif isinstance(doc, Mapping):
        yield doc


def _from_jsonl(settings: Settings, finding_id: str) -> tuple[Mapping[str, Any], Mapping[str, str]] | None:
    directory = Path(settings.jsonl.directory)
    for path in sorted(directory.glob("ocsf.jsonl*")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if finding_id not in line:
                    continue
                doc = json.loads(line)
                if doc.get("finding_info", {}).get("uid") == finding_id:
                    stored = doc.get("unmapped", {}).get("enrichment", {}).get("values", {})
                    return json.loads(doc["raw_data"]), stored
    return None


def _from_opensearch(settings: Settings, finding_id: str) -> tuple[Mapping[str, Any], Mapping[str, str]] | None:
    from connector.build import opensearch_client

    client = opensearch_client(settings)
    hits = client.search(index=f"{settings.opensearch.index_prefix}-ocsf-2004-*", ignore_unavailable=True,
                         body={"query": {"ids": {"values": [finding_id]}}, "size": 1})["hits"]["hits"]
    if not hits:
        return None
    source = hits[0]["_source"]
    return json.loads(source["connector"]["raw_event"]), source.get("unmapped", {}).get("enrichment", {}).get("values", {})


def _confirm(prompt: str) -> bool:
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def run(args: argparse.Namespace) -> int:
    settings = settings_or_report("remediate", args)
    if settings is None:
        return USAGE_ERROR
    if bool(args.event) == bool(args.finding_id):
        report("remediate", "give an event file or --finding-id, not both")
        return USAGE_ERROR
    from connector.build import build_stages
    from connector.enrich.apply import enriched_values
    from connector.enrich.engine import SessionClients
    from connector.enrich.plan import RunLog, build_plan, run_plan
    from connector.events import parse_event

    stored: Mapping[str, str] = {}
    try:
        if args.event:
            record = next(_records(json.loads(Path(args.event).read_text(encoding="utf-8"))), None)
        else:
            found = (_from_jsonl if args.source == "jsonl" else _from_opensearch)(settings, args.finding_id)
            if found is None:
                report("remediate", f"finding {args.finding_id} not found in {args.source}")
                return USAGE_ERROR
            record, stored = found
    except (OSError, ValueError, KeyError) as exc:
        report("remediate", f"cannot read the record: {exc}")
        return USAGE_ERROR
    if record is None:
        report("remediate", "no CloudTrail record in the file")
        return USAGE_ERROR
    sh = settings.securityhub
    # The live lookups are on here whatever the service's setting, with this command's budget.
    live = dataclasses.replace(settings, enrichment=dataclasses.replace(
        settings.enrichment, enabled=True, budget_seconds=min(max(args.budget, 0.1), 30.0)))
    try:
        factory = build_stages(live, prefilter=False).factory
    except ConnectorError as exc:
        report("remediate", exc)
        return USAGE_ERROR
    enricher = factory.enricher
    assert enricher is not None and isinstance(enricher.clients, SessionClients)
    sessions = enricher.clients.sessions
    try:
        event = parse_event(record)
        mapping = factory.mappings.get(event.event_name)
        if mapping is None or mapping.enrichment is None or not mapping.enrichment.restore:
            report("remediate", f"no restore plan for {event.event_name}")
            return USAGE_ERROR
        if event.failed or event.dry_run:
            report("remediate", f"the {event.event_name} call did not go through ({event.error_code}): nothing to restore")
            return 1
        finding = factory.render(record)[0].finding
    except ConnectorError as exc:
        report("remediate", exc)
        return USAGE_ERROR
    finally:
        enricher.close()
    enrichment = finding.enrichment
    assert enrichment is not None
    values = dict(enriched_values(finding, mapping, enrichment))
    for name, value in stored.items():
        values.setdefault(name, value)  # what the finding recorded, where AWS no longer tells
    print(f"{finding.title}\n  finding {finding.id}\n  enrichment: {enrichment.note}")
    if enrichment.blast_radius is not None:
        print(f"  {enrichment.blast_radius.summary}")
    plan = build_plan(mapping.enrichment, values, enrichment.blast_radius, mapping.formats)
    print("Plan:")
    for index, call in enumerate(plan.calls, 1):
        print(f"  [{index}] {call.step.operation} in account {call.account or '?'} Region {call.region or '?'}: "
              f"{call.description}")
    for text in plan.skipped:
        print(f"  skipped: {text}")
    if plan.refused:
        for text in plan.refused:
            report("remediate", f"refused: {text}")
        return 1
    clients: dict[tuple[str, str], Any] = {}

    def client_for(account: str, region: str) -> Any:
        """EC2 in the account and Region a step runs in: own credentials for this process's
        account, the fan-out's role (``assume_role_arn_template``) for the others."""
        if (account, region) not in clients:
            own = account in sh.local_accounts or account == sessions.own_account()
            clients[account, region] = sessions.client("ec2", region=region, account=None if own else account,
                                                       partition=event.partition)
        return clients[account, region]

    try:
        for call in plan.calls:
            client_for(call.account, call.region)
    except ConnectorError as exc:
        report("remediate", f"no credentials for account {call.account}: {exc}")
        return 1
    state = RunLog()
    print("Dry run:")
    run_plan(None, plan, formats=mapping.formats, dry_run=True, state=state, client_for=client_for)
    if state.failed:
        report("remediate", "the dry run failed: nothing applied")
        return 1
    if not args.apply:
        print("Dry run passed. Run again with --apply to restore.")
        return 0
    places = ", ".join(sorted({f"{c.account} {c.region}" for c in plan.calls}))
    if not args.yes and not _confirm(f"Apply {len(plan.calls)} call(s) in {places}? [y/N] "):
        print("Not applied.")
        return 1
    print("Apply:")
    applied = run_plan(None, plan, formats=mapping.formats, dry_run=False, state=state, client_for=client_for)
    if applied.failed:
        report("remediate", "a call failed: the calls before it were applied (see above)")
        return 1
    print("Restored.")
    sys.stdout.flush()
    return 0
