"""The restore plan of a finding: the mapping's ``enrichment.restore`` steps filled with its values.

Contract: ``build_plan`` is pure. Every value a step needs must be known and match its strict
format (``connector/mapping/formats.py``); a value that only an earlier step produces (the new
gateway's id) is filled when that step ran. A plan with an unknown required value is refused,
and says which. ``run_plan`` sends the calls: first every call with EC2 ``DryRun=True`` (an
``DryRunOperation`` answer means it would succeed), then, only when asked, for real, logging
each call and its answer. Parameter types (integer rule numbers, boolean ``Egress``, lists of
security groups) follow botocore's model of the operation, not the mapping's strings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath
from botocore import xform_name
from botocore.exceptions import ClientError, WaiterError

from connector.enrich.spec import EnrichmentSpec, RestoreStep
from connector.mapping.formats import matches
from connector.model import BlastRadius

log = logging.getLogger("connector.remediate")
TEMPLATE = re.compile(r"\{([A-Za-z][A-Za-z0-9_.]*)\}")
#: The per-route values of ``for_each: route`` steps, and their formats.
ROUTE_FORMATS = {"route.routeTableId": "route-table-id", "route.destination": "ipv4-cidr"}
#: Write actions the restore steps may call (deploy/ grants them to the operator's policy).
IAM_ACTIONS: tuple[str, ...] = (
    "ec2:CreateNatGateway", "ec2:ReplaceRoute", "ec2:CreateNetworkAclEntry", "ec2:CreateVpcPeeringConnection",
    "ec2:AcceptVpcPeeringConnection", "ec2:CreateNetworkInterface", "ec2:AttachNetworkInterface",
    "ec2:AttachInternetGateway",
)


@dataclass(frozen=True, slots=True)
class PlannedCall:
    description: str
    step: RestoreStep
    #: Values of this call (route values for ``for_each``); outputs of earlier steps are added when run.
    values: Mapping[str, str]
    #: Values from earlier steps' outputs this call still waits for.
    pending: tuple[str, ...] = ()
    #: Where it runs (the step's ``account``/``region``; the event's by default); "" when unknown.
    account: str = ""
    region: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    calls: tuple[PlannedCall, ...]
    refused: tuple[str, ...]
    skipped: tuple[str, ...] = ()


def _names(node: Any) -> set[str]:
    if isinstance(node, str):
        return set(TEMPLATE.findall(node))
    if isinstance(node, Mapping):
        return {n for v in node.values() for n in _names(v)}
    if isinstance(node, list):
        return {n for v in node for n in _names(v)}
    return set()


def _valid(name: str, values: Mapping[str, str], formats: Mapping[str, str]) -> bool:
    value = values.get(name)
    if value is None:
        return False
    if name == "route.destination":
        return matches("ipv4-cidr", value) or matches("ipv6-cidr", value)
    return matches({**formats, **ROUTE_FORMATS}.get(name, ""), value)


def _fill(text: str, values: Mapping[str, str]) -> str:
    return TEMPLATE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def build_plan(spec: EnrichmentSpec, values: Mapping[str, str], blast: BlastRadius | None,
               formats: Mapping[str, str]) -> Plan:
    outputs: set[str] = set()
    calls: list[PlannedCall] = []
    refused: list[str] = []
    skipped: list[str] = []
    for step in spec.restore:
        rows: list[dict[str, str]] = [dict(values)]
        if step.for_each == "route":
            routes = [(t.route_table_id, d) for t in (blast.route_tables if blast else ()) for d in t.destinations]
            if blast is None:
                skipped.append(f"{step.operation}: the route tables to repoint are unknown (the blast radius "
                               "was not read); list them with aws ec2 describe-route-tables")
            rows = [{**values, "route.routeTableId": table, "route.destination": dest} for table, dest in routes]
            if blast is not None and not rows:
                skipped.append(f"{step.operation}: no route table routes through the removed resource")
        for row in rows:
            description = _fill(step.description, row)
            if step.when:
                names = set(step.when) | _names(list(step.when.values()))
                if any(n not in row for n in names) or any(row[k] != _fill(v, row) for k, v in step.when.items()):
                    skipped.append(f"{description} (not applicable)")
                    continue
            needed: set[str] = set()
            for param, node in step.params.items():
                names = _names(node)
                if param in step.omit_when_absent and any(n not in row and n not in outputs for n in names):
                    continue
                needed |= names
            pending = tuple(sorted(n for n in needed if n in outputs))
            for name in sorted(needed - outputs):
                if not _valid(name, row, formats):
                    why = "unknown" if name not in row else f"malformed ({formats.get(name, 'no format')} expected)"
                    refused.append(f"{step.operation}: required value {name} is {why}")
            # Where the call runs: an account and a Region in their strict formats, or refused.
            where = {"account": _fill(step.account, row), "region": _fill(step.region, row)}
            for key, kind in (("account", "account-id"), ("region", "region")):
                if not matches(kind, where[key]):
                    refused.append(f"{step.operation}: the {key} it runs in ({getattr(step, key)}) is unknown")
                    where[key] = ""
            calls.append(PlannedCall(description, step, row, pending, where["account"], where["region"]))
        outputs |= set(step.outputs)
    return Plan(tuple(calls), tuple(dict.fromkeys(refused)), tuple(skipped))


def _coerce(shape: Any, node: Any, values: Mapping[str, str]) -> Any:
    """The mapping's parameter with values filled, typed as the operation's model says."""
    kind = shape.type_name
    if kind == "structure":
        return {k: _coerce(shape.members[k], v, values) for k, v in node.items()}
    if kind == "list":
        out: list[Any] = []
        for item in node:
            match = TEMPLATE.fullmatch(item) if isinstance(item, str) else None
            if match and " " in values.get(match.group(1), ""):
                out += [_coerce(shape.member, part, {}) for part in values[match.group(1)].split(" ")]
            else:
                out.append(_coerce(shape.member, item, values))
        return out
    text = _fill(node, values) if isinstance(node, str) else node
    if kind == "integer" or kind == "long":
        return int(text)
    if kind == "boolean":
        return text is True or str(text).lower() == "true"
    return text


def call_params(client: Any, call: PlannedCall, outputs: Mapping[str, str]) -> dict[str, Any]:
    values = {**call.values, **outputs}
    model = client.meta.service_model.operation_model(call.step.operation).input_shape
    params: dict[str, Any] = {}
    for param, node in call.step.params.items():
        names = _names(node)
        if param in call.step.omit_when_absent and any(n not in values for n in names):
            continue
        params[param] = _coerce(model.members[param], node, values)
    return params


@dataclass
class RunLog:
    lines: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    failed: bool = False

    def say(self, text: str, echo: Callable[[str], None]) -> None:
        self.lines.append(text)
        log.info(text)
        echo(text)


def run_plan(client: Any, plan: Plan, *, formats: Mapping[str, str], dry_run: bool, state: RunLog,
             echo: Callable[[str], None] = print, wait_seconds: float = 300.0,
             client_for: Callable[[str, str], Any] | None = None) -> RunLog:
    """Send the plan's calls (``DryRun=True`` first when ``dry_run``); stop at the first failure.

    ``client_for(account, region)``: the EC2 client of the account and Region a call runs in
    (a cross-account peering is requested by one side and accepted by the other); without it
    every call goes through ``client``."""
    for index, call in enumerate(plan.calls):
        if client_for is not None:
            client = client_for(call.account, call.region)
        if index in state.done:
            continue
        waiting = [n for n in call.pending if n not in state.outputs]
        if waiting:
            state.say(f"  [{index + 1}] {call.step.operation}: checked when applied (needs {', '.join(waiting)} "
                      "from an earlier step)", echo)
            continue
        params = call_params(client, call, state.outputs)
        method = getattr(client, xform_name(call.step.operation))
        if dry_run:
            params["DryRun"] = True
        where = f" in {call.account} {call.region}" if call.account else ""
        state.say(f"  [{index + 1}] {'dry run ' if dry_run else ''}{call.step.operation}{where} {params}", echo)
        try:
            answer = method(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if dry_run and code == "DryRunOperation":
                state.say(f"      would succeed ({code})", echo)
                continue
            state.say(f"      FAILED: {code}: {exc.response.get('Error', {}).get('Message', '')}", echo)
            state.failed = True
            return state
        if dry_run:
            # The endpoint ignored DryRun (some emulators do): the call took effect; do not repeat it.
            state.say("      the endpoint did not honour DryRun: the call took effect", echo)
        state.done.add(index)
        for name, expression in call.step.outputs.items():
            value = jmespath.search(expression, answer)
            if isinstance(value, str) and matches(formats.get(name, ""), value):
                state.outputs[name] = value
                state.say(f"      {name} = {value}", echo)
            else:
                state.say(f"      FAILED: the answer has no valid {name}", echo)
                state.failed = True
                return state
        if call.step.wait and not dry_run:
            ids = [v for k, v in state.outputs.items() if k in call.step.outputs]
            waiter = client.get_waiter(call.step.wait)
            id_param = waiter.config.operation and _waiter_id_param(client, waiter.config.operation)
            try:
                waiter.wait(**{id_param: ids}, WaiterConfig={"Delay": 5, "MaxAttempts": max(1, int(wait_seconds / 5))})
                state.say(f"      {call.step.wait}: done", echo)
            except WaiterError as exc:
                state.say(f"      FAILED waiting for {call.step.wait}: {exc}", echo)
                state.failed = True
                return state
    return state


def _waiter_id_param(client: Any, operation: str) -> str:
    """The list-of-ids parameter of a Describe operation (``NatGatewayIds``)."""
    shape = client.meta.service_model.operation_model(operation).input_shape
    return str(next(name for name, member in shape.members.items() if name.endswith("Ids") and member.type_name == "list"))

