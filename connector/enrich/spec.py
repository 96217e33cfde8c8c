"""A mapping's ``enrichment:`` section, typed and checked when the mapping loads.

The section declares, as data, which read calls describe the removed resource and which values
they fill (``lookups``), how to find what the deletion broke (``blast_radius``), how the values
change the severity (``severity``), extra runbook commands that only make sense once the values
are known (``cli``) and the calls that put the resource back (``restore``, for
``connector remediate``). One generic engine (``connector/enrich/engine.py``) runs every
mapping's section; nothing in code names an event.

Templates (``"{name}"``) in call parameters and value expressions may use the event's fields,
the common values and the values of earlier lookups; each value used there must declare its
strict format, and an event value enters a call only when it matches it (values are
attacker-influenced).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions

from connector.errors import MappingFileError

SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
#: Values the blast radius adds for its summary and for ``restore`` steps.
BLAST_VALUES = frozenset({"routeTableCount", "subnetCount", "instanceCount", "routeTableIds", "subnetIds"})


@dataclass(frozen=True, slots=True)
class LookupSpec:
    """One read call and the values it fills (JMESPath over the answer, templates allowed)."""

    id: str
    service: str
    operation: str
    params: Mapping[str, Any]
    decode_json: tuple[str, ...]
    values: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class BlastSpec:
    route_filter: str | None
    route_target: str | None
    subnets_value: str | None
    summary: str
    severity_reason: str | None


@dataclass(frozen=True, slots=True)
class SeverityRule:
    when: Mapping[str, str]
    severity: str
    reason: str


@dataclass(frozen=True, slots=True)
class RestoreStep:
    """One write call of the restore plan. ``for_each: route`` repeats it per blackholed route
    (``{route.routeTableId}``, ``{route.destination}``); ``when`` skips it unless values equal."""

    description: str
    operation: str
    params: Mapping[str, Any]
    outputs: Mapping[str, str]
    for_each: str | None
    when: Mapping[str, str]
    omit_when_absent: tuple[str, ...]
    wait: str | None
    #: Where the call runs: templates over the values, the event's account and Region by default.
    account: str = "{account}"
    region: str = "{region}"


@dataclass(frozen=True, slots=True)
class EnrichmentSpec:
    lookups: tuple[LookupSpec, ...]
    formats: Mapping[str, str]
    blast_radius: BlastSpec | None
    severity: tuple[SeverityRule, ...]
    cli: tuple[tuple[str, str], ...]
    restore: tuple[RestoreStep, ...]

    @property
    def value_names(self) -> frozenset[str]:
        """Every value the lookups and the plan may supply."""
        names = {name for lookup in self.lookups for name in lookup.values}
        names |= {name for step in self.restore for name in step.outputs}
        return frozenset(names)


def template_names(template: str) -> set[str]:
    return {name.split(".")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def _walk_strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, Mapping):
        return [s for value in node.values() for s in _walk_strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _walk_strings(value)]
    return []


def parse_enrichment(doc: Mapping[str, Any] | None, *, file: str, fields: set[str], common: set[str],
                     formats: Mapping[str, str]) -> EnrichmentSpec | None:
    """The (schema-valid) section as a spec; every template name and expression checked."""
    if not doc:
        return None
    # Imported here: the mapping loader imports this module while connector.mapping initialises.
    from connector.mapping.formats import known_format

    where = "$.enrichment"
    own_formats = dict(doc.get("formats") or {})
    for name, kind in own_formats.items():
        if not known_format(kind):
            raise MappingFileError(file, f"{where}.formats.{name}", f"unknown format {kind!r}")
    all_formats = {**formats, **own_formats}
    known = set(fields) | set(common)
    lookups = []
    for index, entry in enumerate(doc.get("lookups") or ()):
        at = f"{where}.lookups[{index}]"
        for text in _walk_strings(entry.get("params") or {}):
            _check_names(text, known, all_formats, file, f"{at}.params", need_format=True)
        for name, expression in entry["values"].items():
            _check_names(expression, known, all_formats, file, f"{at}.values.{name}", need_format=True)
            try:
                jmespath.compile(expression.format_map({n: "'x'" for n in template_names(expression)}))
            except (jmespath.exceptions.JMESPathError, ValueError) as exc:
                raise MappingFileError(file, f"{at}.values.{name}", f"bad JMESPath: {exc}") from None
        lookups.append(LookupSpec(
            id=entry["id"], service=entry["service"], operation=entry["operation"],
            params=dict(entry.get("params") or {}), decode_json=tuple(entry.get("decode_json") or ()),
            values=dict(entry["values"]),
        ))
        known |= set(entry["values"])
    for name in known - set(fields) - set(common):
        if name not in all_formats:
            raise MappingFileError(file, f"{where}.formats", f"value {name!r} has no format")
    blast = None
    if doc.get("blast_radius"):
        b = doc["blast_radius"]
        _check_names(b["summary"], known | BLAST_VALUES, all_formats, file, f"{where}.blast_radius.summary")
        for key in ("route_target", "subnets"):
            if b.get(key) and b[key] not in known:
                raise MappingFileError(file, f"{where}.blast_radius.{key}", f"unknown value {b[key]!r}")
        blast = BlastSpec(b.get("route_filter"), b.get("route_target"), b.get("subnets"), b["summary"],
                          b.get("severity_reason"))
    rules = []
    for index, rule in enumerate(doc.get("severity") or ()):
        unknown = set(rule["when"]) - known
        if unknown:
            raise MappingFileError(file, f"{where}.severity[{index}].when", f"unknown value(s) {sorted(unknown)}")
        rules.append(SeverityRule(dict(rule["when"]), rule["severity"], rule["reason"]))
    cli = []
    for index, command in enumerate(doc.get("cli") or ()):
        _check_names(command["command"], known, all_formats, file, f"{where}.cli[{index}].command", need_format=True)
        _check_names(command["description"], known | BLAST_VALUES, all_formats, file, f"{where}.cli[{index}].description")
        cli.append((command["description"], command["command"]))
    steps = []
    plan_known = known | BLAST_VALUES | {"route"}
    for index, step in enumerate(doc.get("restore") or ()):
        at = f"{where}.restore[{index}]"
        for text in _walk_strings(step.get("params") or {}):
            _check_names(text, plan_known, all_formats, file, f"{at}.params")
        for name in step.get("when") or {}:
            if name not in plan_known:
                raise MappingFileError(file, f"{at}.when", f"unknown value {name!r}")
        for key in ("account", "region"):
            if key in step:
                _check_names(step[key], plan_known, all_formats, file, f"{at}.{key}", need_format=True)
        steps.append(RestoreStep(
            description=step["description"], operation=step["operation"], params=dict(step.get("params") or {}),
            outputs=dict(step.get("outputs") or {}), for_each=step.get("for_each"), when=dict(step.get("when") or {}),
            omit_when_absent=tuple(step.get("omit_when_absent") or ()), wait=step.get("wait"),
            account=step.get("account", "{account}"), region=step.get("region", "{region}"),
        ))
        plan_known |= set(step.get("outputs") or {})
        for name in step.get("outputs") or {}:
            if name not in all_formats:
                raise MappingFileError(file, f"{at}.outputs.{name}", f"value {name!r} has no format")
    return EnrichmentSpec(tuple(lookups), own_formats, blast, tuple(rules), tuple(cli), tuple(steps))


def _check_names(text: str, known: set[str], formats: Mapping[str, str], file: str, where: str,
                 *, need_format: bool = False) -> None:
    try:
        names = template_names(text)
    except ValueError as exc:
        raise MappingFileError(file, where, f"bad template: {exc}") from None
    unknown = names - known
    if unknown:
        raise MappingFileError(file, where, f"unknown template variable(s): {sorted(unknown)}")
    if need_format:
        missing = {n for n in names if n not in formats}
        if missing:
            raise MappingFileError(file, where, f"value(s) {sorted(missing)} have no format")
