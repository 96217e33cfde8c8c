"""Enrichment: read what the deleted resource was and what its deletion broke, within a budget.

Contract: ``Enricher.enrich(event, mapping, values)`` returns an ``Enrichment`` (or None when the
mapping declares none, or the call did not go through) in at most ``budget_seconds``, whatever
AWS does: the lookups run on a worker thread and the caller waits only the budget. A lookup that
fails, is throttled by our own rate limit, or is still running when the budget is spent leaves
its values unknown, and the enrichment says which and why; the finding is delivered anyway
(``status`` ``partial`` or ``unenriched``). Nothing here raises.

Calls go to the event's account and Region, with this process's credentials for its own
account and through the per-account role of the Security Hub fan-out otherwise
(``connector.sinks.securityhub.credentials.SessionCache``). Answers are cached (cachetools TTL)
per account, Region, operation and parameters, so a burst of deletions in one VPC reads its
route tables once.

What to call and which values to read is data (``enrichment.lookups`` in the mapping file,
``connector/enrich/spec.py``); this module knows no event.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import jmespath
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cachetools import TTLCache

from connector.enrich.spec import BlastSpec, EnrichmentSpec, template_names
from connector.mapping.formats import matches
from connector.model import BlastRadius, CloudTrailEvent, Enrichment, EnrichmentStatus, RouteImpact
from connector.sinks.securityhub.credentials import SessionCache
from connector.sinks.securityhub.ratelimit import RateLimiter

#: Read actions the lookups need (deploy/ grants them; the member role too, for other accounts).
IAM_ACTIONS: tuple[str, ...] = (
    "ec2:DescribeNatGateways", "ec2:DescribeNetworkAcls", "ec2:DescribeVpcPeeringConnections",
    "ec2:DescribeRouteTables", "ec2:DescribeSubnets", "ec2:DescribeInstances",
    "config:GetResourceConfigHistory",
)
VALUE_MAX = 256


class ClientProvider(Protocol):
    def client(self, service: str, *, account: str, region: str, partition: str) -> Any: ...


class SessionClients:
    """Clients in the event's account and Region: own credentials for this process's account (and
    ``local_accounts``), the assumed role of ``SessionCache`` for the others."""

    def __init__(self, sessions: SessionCache, *, local_accounts: tuple[str, ...] = (), timeout: float = 2.0) -> None:
        self.sessions = sessions
        self.local_accounts = local_accounts
        self.config = Config(connect_timeout=timeout, read_timeout=timeout,
                             retries={"total_max_attempts": 1, "mode": "standard"})

    def client(self, service: str, *, account: str, region: str, partition: str) -> Any:
        if account in self.local_accounts or account == self.sessions.own_account():
            return self.sessions.client(service, region=region, config=self.config)
        if not self.sessions.role_arn_template:
            # Our own credentials would read another account's namesake or nothing: say so instead.
            raise LookupFailed(f"no role to read account {account} (set enrichment.assume_role_arn_template "
                               "or securityhub.assume_role_arn_template)")
        return self.sessions.client(service, region=region, account=account, partition=partition, config=self.config)


class LookupFailed(Exception):
    """A read call that gave no answer (its reason goes into the enrichment's problems)."""


def as_text(value: Any) -> str | None:
    """An answer value as one bounded line; a list of scalars becomes space-separated items."""
    if value is None or value == "" or isinstance(value, dict):
        return None
    if isinstance(value, list):
        items = [t for v in value if not isinstance(v, (dict, list)) and (t := as_text(v))]
        return " ".join(items) or None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = " ".join(str(value).split())
    return text[:VALUE_MAX] or None


def _literal(value: str) -> str:
    """A value as a JMESPath raw string literal (already format-checked; escaped regardless)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@lru_cache(maxsize=512)
def _compiled(expression: str) -> Any:
    return jmespath.compile(expression)


def render_params(node: Any, values: Mapping[str, str], formats: Mapping[str, str]) -> Any:
    """Call parameters with ``{name}`` filled by values that match their strict format.

    Raises KeyError naming the first value that is unknown or malformed."""
    if isinstance(node, str):
        names = template_names(node)
        for name in names:
            value = values.get(name)
            if value is None or not matches(formats.get(name, ""), value):
                raise KeyError(name)
        return node.format_map({n: values[n] for n in names}) if names else node
    if isinstance(node, Mapping):
        return {key: render_params(value, values, formats) for key, value in node.items()}
    if isinstance(node, list):
        return [render_params(value, values, formats) for value in node]
    return node


def decode_json(node: Any, path: str) -> None:
    """Replace the JSON-encoded string at ``path`` (``a[].b``: every item of list ``a``) by what it
    encodes, in place (Config's ``configuration`` is a JSON string)."""
    key, _, rest = path.partition(".")
    many = key.endswith("[]")
    key = key.removesuffix("[]")
    if not isinstance(node, dict) or key not in node:
        return
    if not rest:
        if isinstance(node[key], str):
            try:
                node[key] = json.loads(node[key])
            except ValueError:
                pass
        return
    children = node[key] if many and isinstance(node[key], list) else [node[key]]
    for child in children:
        decode_json(child, rest)


@dataclass
class _Run:
    """One enrichment in progress; the worker writes, the caller snapshots (under ``lock``)."""

    values: dict[str, str]
    found: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    blast: BlastRadius | None = None
    lookups_ok: int = 0
    closed: bool = False
    endpoint: tuple[str, str, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, name: str, value: str) -> None:
        with self.lock:
            if not self.closed:
                self.found[name] = value
                self.values[name] = value

    def problem(self, text: str) -> None:
        with self.lock:
            if not self.closed:
                self.problems.append(text)


class Enricher:
    """Runs a mapping's ``enrichment`` for one event, bounded by ``budget_seconds``."""

    def __init__(
        self,
        clients: ClientProvider,
        *,
        budget_seconds: float = 2.0,
        cache_ttl_seconds: float = 300.0,
        cache_max_entries: int = 4096,
        rate_per_second: float = 20.0,
        burst: int = 40,
        workers: int = 4,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.budget = budget_seconds
        self._cache: TTLCache[tuple[str, ...], Any] = TTLCache(maxsize=cache_max_entries, ttl=cache_ttl_seconds)
        self._cache_lock = threading.Lock()
        self._limiter = RateLimiter(rate_per_second, burst)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="enrich")
        self._clock = clock
        #: (account, Region, service) → until when it is skipped after a failure or a hang.
        self._down: dict[tuple[str, str, str], float] = {}
        self.cooldown = cooldown_seconds
        self.calls = 0

    def mark_down(self, endpoint: tuple[str, str, str]) -> None:
        with self._cache_lock:
            self._down[endpoint] = self._clock() + self.cooldown

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the contract ------------------------------------------------------------------------
    def enrich(self, event: CloudTrailEvent, spec: EnrichmentSpec | None, values: Mapping[str, str],
               formats: Mapping[str, str]) -> Enrichment | None:
        if spec is None or event.failed or event.dry_run:
            return None
        run = _Run(values=dict(values))
        deadline = self._clock() + self.budget
        try:
            future = self._pool.submit(self._run, run, event, spec, formats, deadline)
            future.result(timeout=self.budget)
        except FutureTimeout:
            run.problem(f"enrichment budget of {self.budget:g} s spent before every lookup answered")
            if run.endpoint is not None:
                self.mark_down(run.endpoint)
        except Exception as exc:
            run.problem(f"enrichment failed: {type(exc).__name__}: {exc}"[:300])
        with run.lock:
            run.closed = True
            found = dict(run.found)
            problems = tuple(dict.fromkeys(run.problems))
            blast = run.blast
            complete = run.lookups_ok == len(spec.lookups) and (spec.blast_radius is None or blast is not None)
        status: EnrichmentStatus = "enriched" if complete and not problems else "partial" if found or blast else "unenriched"
        return Enrichment(status=status, values=found, blast_radius=blast, problems=problems, calls=tuple(run.calls))

    # -- the worker --------------------------------------------------------------------------
    def _run(self, run: _Run, event: CloudTrailEvent, spec: EnrichmentSpec, formats: Mapping[str, str],
             deadline: float) -> None:
        for lookup in spec.lookups:
            try:
                params = render_params(lookup.params, run.values, formats)
            except KeyError as exc:
                run.problem(f"{lookup.operation} not called: value {exc.args[0]} unknown or malformed")
                continue
            try:
                answer = self.call(event, lookup.service, lookup.operation, params, deadline, run)
            except LookupFailed as exc:
                run.problem(str(exc))
                continue
            for path in lookup.decode_json:
                decode_json(answer, path)
            got = 0
            for name, expression in lookup.values.items():
                try:
                    filled = expression.format_map({n: _literal(run.values[n]) for n in template_names(expression)})
                except KeyError:
                    continue
                text = as_text(_compiled(filled).search(answer))
                if text is not None:
                    run.put(name, text)
                    got += 1
            if got:
                with run.lock:
                    run.lookups_ok += 1
            else:
                run.problem(f"{lookup.operation} answered without {', '.join(lookup.values)}")
        if spec.blast_radius is not None:
            try:
                blast = self._blast(run, event, spec.blast_radius, deadline)
            except LookupFailed as exc:
                run.problem(str(exc))
                return
            with run.lock:
                if not run.closed:
                    run.blast = blast

    def call(self, event: CloudTrailEvent, service: str, operation: str, params: Mapping[str, Any],
             deadline: float, run: _Run | None = None) -> Any:
        """One read call in the event's account and Region (cached; rate-limited within the budget)."""
        key = (event.account_id, event.region, service, operation, json.dumps(params, sort_keys=True, default=str))
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is not None:
            return json.loads(cached)
        endpoint = (event.account_id, event.region, service)
        with self._cache_lock:
            down_until = self._down.get(endpoint, 0.0)
        if down_until > self._clock():
            # It failed or hung moments ago: later findings go out at once instead of each
            # spending its whole budget on the same outage.
            raise LookupFailed(f"{operation} not called: {service} in {event.region} did not answer "
                               f"in the last {self.cooldown:g} s")
        bucket = self._limiter.bucket(endpoint)
        wait = bucket.try_acquire()
        if wait > 0:
            if self._clock() + wait >= deadline:
                raise LookupFailed(f"{operation} not called: rate limit, no token within the budget")
            time.sleep(wait)
            bucket.try_acquire()
        if self._clock() >= deadline:
            raise LookupFailed(f"{operation} not called: budget spent")
        if run is not None:
            with run.lock:
                run.calls.append(f"{service}:{operation}")
                run.endpoint = endpoint
        self.calls += 1
        try:
            client = self.clients.client(service, account=event.account_id, region=event.region, partition=event.partition)
            answer = getattr(client, xform_name(operation))(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise LookupFailed(f"{operation} failed: {error.get('Code', 'error')}: {error.get('Message', '')}"[:300]) from None
        except (BotoCoreError, OSError) as exc:
            self.mark_down(endpoint)
            raise LookupFailed(f"{operation} failed: {type(exc).__name__}: {exc}"[:300]) from None
        except LookupFailed:
            raise
        except Exception as exc:
            raise LookupFailed(f"{operation} not called: {exc}"[:300]) from None
        answer = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
        text = json.dumps(answer, default=str)
        with self._cache_lock:
            self._cache[key] = text
        result: Any = json.loads(text)
        return result

    # -- blast radius ------------------------------------------------------------------------
    def _blast(self, run: _Run, event: CloudTrailEvent, spec: BlastSpec, deadline: float) -> BlastRadius:
        tables: list[RouteImpact] = []
        subnets: list[str] = []
        if spec.route_filter and spec.route_target:
            target = run.values.get(spec.route_target)
            if not target:
                raise LookupFailed(f"blast radius not read: value {spec.route_target} unknown")
            answer = self.call(event, "ec2", "DescribeRouteTables",
                               {"Filters": [{"Name": spec.route_filter, "Values": [target]}]}, deadline, run)
            for table in answer.get("RouteTables", []):
                tables.append(self._route_impact(run, event, table, target, deadline))
            subnets = list(dict.fromkeys(s for t in tables for s in t.subnets))
        elif spec.subnets_value:
            if spec.subnets_value not in run.values:
                raise LookupFailed(f"blast radius not read: value {spec.subnets_value} unknown")
            subnets = run.values[spec.subnets_value].split()
        instances = self._running_instances(run, event, subnets, deadline) if subnets else 0
        counts = {
            "routeTableCount": str(len(tables)), "subnetCount": str(len(subnets)), "instanceCount": str(instances),
            "routeTableIds": " ".join(t.route_table_id for t in tables) or "none", "subnetIds": " ".join(subnets) or "none",
        }
        for name in ("routeTableIds", "subnetIds"):
            if counts[name] != "none":
                run.put(name, counts[name])

        class _Values(dict[str, str]):
            def __missing__(self, key: str) -> str:
                return "(unknown)"

        summary = spec.summary.format_map(_Values({**run.values, **counts}))
        return BlastRadius(tuple(tables), tuple(subnets), instances, summary)

    def _route_impact(self, run: _Run, event: CloudTrailEvent, table: Mapping[str, Any], target: str,
                      deadline: float) -> RouteImpact:
        routes = [r for r in table.get("Routes", []) if target in r.values()]
        destinations = tuple(
            str(r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock") or r.get("DestinationPrefixListId"))
            for r in routes
        )
        associations = table.get("Associations", [])
        main = any(a.get("Main") for a in associations)
        subnets = [a["SubnetId"] for a in associations if a.get("SubnetId")]
        vpc = str(table.get("VpcId", ""))
        if main and vpc:
            # The main table serves every subnet of the VPC without an explicit association.
            every = self.call(event, "ec2", "DescribeRouteTables", {"Filters": [{"Name": "vpc-id", "Values": [vpc]}]},
                              deadline, run)
            explicit = {a.get("SubnetId") for t in every.get("RouteTables", []) for a in t.get("Associations", [])}
            in_vpc = self.call(event, "ec2", "DescribeSubnets", {"Filters": [{"Name": "vpc-id", "Values": [vpc]}]},
                               deadline, run)
            subnets += [s["SubnetId"] for s in in_vpc.get("Subnets", []) if s["SubnetId"] not in explicit]
        return RouteImpact(str(table.get("RouteTableId")), vpc, destinations, tuple(dict.fromkeys(subnets)), main)

    def _running_instances(self, run: _Run, event: CloudTrailEvent, subnets: list[str], deadline: float) -> int:
        answer = self.call(event, "ec2", "DescribeInstances", {"Filters": [
            {"Name": "subnet-id", "Values": subnets[:200]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]}, deadline, run)
        return sum(len(r.get("Instances", [])) for r in answer.get("Reservations", []))
