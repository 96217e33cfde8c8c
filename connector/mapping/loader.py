"""Load ``mappings/<EventName>.yaml``: YAML → schema → typed ``EventMapping``.

A broken mapping file must stop the service at start-up, not at the first matching event
months later, so every file is validated against ``schemas/mapping.schema.json`` and every
JMESPath expression and template is compiled here. Errors read ``file: $.path: reason``.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jmespath
import jmespath.exceptions
import jsonschema
import yaml

from connector.enrich.spec import EnrichmentSpec, parse_enrichment
from connector.errors import MappingFileError
from connector.mapping.details import DetailsNode, compile_details
from connector.mapping.formats import COMMON_FORMATS
from connector.model import Attack
from connector.paths import mappings_dir, schemas_dir
from connector.resolve.spec import RestoreSpec, parse_restores

if TYPE_CHECKING:
    from connector.mapping.engine import RunbookPlan

#: Values every template may use besides the mapping's own fields (see engine.common_values).
COMMON_VARIABLES = frozenset(
    {
        "region", "account", "partition", "eventID", "eventTime", "eventName", "principal",
        "principalArn", "sourceIP", "userAgent", "errorCode", "errorMessage", "outcome",
        "accessKeyId", "userName", "roleArn", "target",
    }
)
ATTEMPT_FILE = Path("common") / "attempt.yaml"


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    id: str
    asff_type: str
    ocsf_type: str
    arn: str
    role: str
    details_other: Mapping[str, str]
    #: Typed ``Details.<asff_type>`` (connector/mapping/details.py), empty when not declared.
    details: Mapping[str, DetailsNode] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CliSpec:
    description: str
    command: str


@dataclass(frozen=True, slots=True)
class AttemptSpec:
    """``mappings/common/attempt.yaml``: a failed or dry-run call's description and runbook."""

    failed_description: str
    dry_run_description: str
    remediation: Mapping[str, Any]
    cli: tuple[CliSpec, ...]


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One test case derived from the base record (see mappings/cases/common.yaml)."""

    name: str
    number: str
    golden: bool
    set: Mapping[str, Any]
    replace: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CaseSpec:
    """A mapping's ``cases:`` section: what makes its event's records, and what they must name.

    It sits in the mapping file so that a new event brings its own test cases; the golden,
    variant, corpus, CLI and demo code iterate over these instead of a list of events.
    """

    event_id: str
    request: Mapping[str, Any]
    response: Mapping[str, Any] | None
    resource_id: str
    corpus: tuple[str, ...]
    demo_variant: str
    variants: Mapping[str, VariantSpec]


def variant_specs(doc: Mapping[str, Any] | None) -> dict[str, VariantSpec]:
    """``variants:`` (already schema-valid) as typed specs, in file order."""
    return {
        name: VariantSpec(
            name=name, number=spec["number"], golden=bool(spec.get("golden", False)),
            set=dict(spec.get("set") or {}), replace=dict(spec.get("replace") or {}),
        )
        for name, spec in (doc or {}).items()
    }


def _cases(doc: Mapping[str, Any]) -> CaseSpec:
    return CaseSpec(
        event_id=doc["event_id"],
        request=doc["request"],
        response=doc.get("response"),
        resource_id=doc["resource_id"],
        corpus=tuple(doc.get("corpus") or ()),
        demo_variant=doc.get("demo_variant", "success"),
        variants=variant_specs(doc.get("variants")),
    )


@dataclass(frozen=True, slots=True)
class EventMapping:
    """One mapping file, validated and compiled. ``raw`` keeps the YAML for tools and tests."""

    id: str
    version: str
    file: str
    event_name: str
    event_source: str
    fields: Mapping[str, tuple[Any, ...]]  # name → compiled JMESPath expressions
    resources: tuple[ResourceSpec, ...]
    title: str
    failed_title: str | None
    dry_run_title: str | None
    description: str
    asff_types: tuple[str, ...]
    ocsf_types: tuple[str, ...]
    attacks: tuple[Attack, ...]
    severity: Mapping[str, str]
    severity_rationale: str
    information: tuple[str, ...]
    impact: tuple[str, ...]
    remediation: Mapping[str, Any]
    cli: tuple[CliSpec, ...]
    cases: CaseSpec
    raw: Mapping[str, Any]
    #: field → strict value format (mapping's ``event.formats`` plus the common values').
    formats: Mapping[str, str]
    attempt: AttemptSpec
    #: The ``enrichment:`` section (connector/enrich/), or None.
    enrichment: EnrichmentSpec | None = None
    #: The ``restores:`` section (connector/resolve/): the events that undo this deletion.
    restores: tuple[RestoreSpec, ...] = ()
    #: The restore and the attempt runbook compiled (connector/mapping/engine.py ``RunbookPlan``),
    #: set at the mapping's first finding.
    runbooks: tuple[RunbookPlan, RunbookPlan] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def optional_values(self) -> frozenset[str]:
        """Values only the enrichment can supply: absent, the runbook shows their placeholder."""
        return self.enrichment.value_names if self.enrichment else frozenset()


class FieldPath:
    """A JMESPath expression that is only field names (``requestParameters.natGatewayId``),
    evaluated as JMESPath does (each step ``.get`` on the value so far, ``None`` once a step finds
    nothing or a value without fields) without its tree-walking interpreter: most mapping fields
    are such paths, and each record evaluates several of them."""

    __slots__ = ("expression", "parts")

    def __init__(self, expression: str, parts: tuple[str, ...]) -> None:
        self.expression = expression
        self.parts = parts

    def search(self, value: Any) -> Any:
        for part in self.parts:
            try:
                value = value.get(part)
            except AttributeError:  # a list, a string, a number: JMESPath's field gives null
                return None
            if value is None:
                return None
        return value

    def __repr__(self) -> str:
        return f"FieldPath({self.expression!r})"


def _field_names(node: Mapping[str, Any]) -> list[str] | None:
    """The names of a parsed JMESPath of fields only (``field`` / ``subexpression``), else None."""
    if node.get("type") == "field":
        return [node["value"]]
    if node.get("type") == "subexpression":
        names: list[str] = []
        for child in node.get("children", ()):
            sub = _field_names(child)
            if sub is None:
                return None
            names += sub
        return names
    return None


def compile_field(expression: str) -> Any:
    """``jmespath.compile``, or a ``FieldPath`` with the same answers when the expression is only
    field names; raises ``JMESPathError`` as ``jmespath.compile`` does."""
    compiled = jmespath.compile(expression)
    names = _field_names(compiled.parsed)
    return FieldPath(expression, tuple(names)) if names else compiled


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _mapping_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((schemas_dir() / "mapping.schema.json").read_text())
    return schema


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_mapping_schema())


@lru_cache(maxsize=1)
@lru_cache(maxsize=1)
def _attempt_validator() -> jsonschema.Draft202012Validator:
    schema = _mapping_schema()
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/attempt", "$defs": schema["$defs"]})


def _check_formats(remediation: Mapping[str, Any], formats: Mapping[str, str], file: str, where: str) -> None:
    """Every value an executable line uses must declare its strict format (formats.py)."""
    for index, command in enumerate(remediation["cli"]):
        missing = _template_names(command["command"], file, where) - set(formats)
        if missing:
            raise MappingFileError(file, f"{where}.cli[{index}].command",
                                   f"value(s) {sorted(missing)} have no format in event.formats")
    missing = _template_names(remediation["boto3"], file, where) - set(formats)
    if missing:
        raise MappingFileError(file, f"{where}.boto3", f"value(s) {sorted(missing)} have no format in event.formats")


def load_attempt(root: Path) -> AttemptSpec:
    """The directory's ``common/attempt.yaml``, else the shipped one (a mapping directory of one's own
    need not repeat it)."""
    path = root / ATTEMPT_FILE
    if not path.is_file():
        path = mappings_dir() / ATTEMPT_FILE
    doc = read_yaml(path, _attempt_validator())
    _check_templates({"attempt": doc}, set(COMMON_VARIABLES), str(path), sections=("attempt",))
    _check_formats(doc["remediation"], COMMON_FORMATS, str(path), "$.remediation")
    remediation = doc["remediation"]
    return AttemptSpec(
        failed_description=doc["failed_description"],
        dry_run_description=doc["dry_run_description"],
        remediation=remediation,
        cli=tuple(CliSpec(c["description"], c["command"]) for c in remediation["cli"]),
    )


def _common_cases_validator() -> jsonschema.Draft202012Validator:
    """The same schema file, entered at ``$defs/common_cases``: one schema for both files."""
    schema = _mapping_schema()
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/common_cases", "$defs": schema["$defs"]})


def read_yaml(path: Path, validator: jsonschema.Draft202012Validator) -> Any:
    """A YAML file checked against a schema; every failure is a ``MappingFileError`` naming the path."""
    file = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError(file, "$", f"cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise MappingFileError(file, "$", f"not valid YAML: {exc}") from None
    errors = sorted(validator.iter_errors(doc), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = max(errors, key=lambda e: len(e.absolute_path))  # the most specific one
        raise MappingFileError(file, _json_path(err.absolute_path), err.message)
    return doc


def read_common_cases(path: Path) -> dict[str, Any]:
    """``mappings/cases/common.yaml``, validated."""
    doc: dict[str, Any] = read_yaml(path, _common_cases_validator())
    return doc


def _template_names(template: str, file: str, where: str) -> set[str]:
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise MappingFileError(file, where, f"bad template: {exc}") from None


def _check_templates(doc: Mapping[str, Any], allowed: set[str], file: str,
                     sections: tuple[str, ...] = ("finding", "remediation")) -> None:
    """Every ``{name}`` used in any template must be a declared field or a common value."""

    def walk(node: Any, path: list[Any]) -> None:
        if isinstance(node, str):
            unknown = _template_names(node, file, _json_path(path)) - allowed
            if unknown:
                raise MappingFileError(file, _json_path(path), f"unknown template variable(s): {sorted(unknown)}")
        elif isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, [*path, key])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, [*path, index])

    for section in sections:
        walk(doc.get(section), [section])
    for index, resource in enumerate(doc.get("event", {}).get("resources", ())):
        walk(resource, ["event", "resources", index])


def _attack(entry: Mapping[str, Any]) -> Attack:
    sub = entry.get("sub_technique") or {}
    return Attack(
        version=entry["attack_version"],
        tactic_uid=entry["tactic"]["uid"],
        tactic_name=entry["tactic"]["name"],
        technique_uid=entry["technique"]["uid"],
        technique_name=entry["technique"]["name"],
        sub_technique_uid=sub.get("uid"),
        sub_technique_name=sub.get("name"),
    )


def load_mapping_file(path: Path, attempt: AttemptSpec | None = None) -> EventMapping:
    file = str(path)
    doc = read_yaml(path, _validator())
    event = doc["event"]
    if path.stem != event["name"]:
        raise MappingFileError(file, "$.event.name", f"{event['name']!r} must match the file name {path.stem!r}")
    fields: dict[str, tuple[Any, ...]] = {}
    for name, expressions in event["fields"].items():
        compiled = []
        for index, expression in enumerate(expressions):
            try:
                compiled.append(compile_field(expression))
            except jmespath.exceptions.JMESPathError as exc:
                raise MappingFileError(file, f"$.event.fields.{name}[{index}]", f"bad JMESPath: {exc}") from None
        fields[name] = tuple(compiled)
    declared = dict(event.get("formats") or {})
    unknown = set(declared) - set(fields)
    if unknown:
        raise MappingFileError(file, "$.event.formats", f"format(s) for undeclared field(s) {sorted(unknown)}")
    formats = {**COMMON_FORMATS, **declared}
    enrichment = parse_enrichment(doc.get("enrichment"), file=file, fields=set(fields),
                                  common=set(COMMON_VARIABLES), formats=formats)
    enriched = enrichment.value_names if enrichment else frozenset()
    if enrichment:
        formats.update(enrichment.formats)
    _check_templates(doc, set(fields) | COMMON_VARIABLES | enriched, file)
    finding = doc["finding"]
    remediation = doc["remediation"]
    _check_formats(remediation, formats, file, "$.remediation")
    return EventMapping(
        id=doc["id"],
        version=doc["version"],
        file=file,
        event_name=event["name"],
        event_source=event["source"],
        fields=fields,
        resources=tuple(
            ResourceSpec(
                id=r["id"], asff_type=r["asff_type"], ocsf_type=r["ocsf_type"], arn=r["arn"],
                role=r.get("role", "target"), details_other=dict(r.get("details_other") or {}),
                details=compile_details(r["asff_type"], r["asff_details"], formats, file=file,
                                        where=f"$.event.resources[{index}].asff_details") if r.get("asff_details") else {},
            )
            for index, r in enumerate(event["resources"])
        ),
        title=finding["title"],
        failed_title=finding.get("failed_title"),
        dry_run_title=finding.get("dry_run_title"),
        description=finding["description"],
        asff_types=tuple(finding["asff_types"]),
        ocsf_types=tuple(finding["ocsf_types"]),
        attacks=tuple(_attack(a) for a in finding["attacks"]),
        severity={k: v for k, v in finding["severity"].items() if k not in ("rationale", "calibration")},
        severity_rationale=finding["severity"]["rationale"],
        information=tuple(doc["information"]),
        impact=tuple(doc["impact"]),
        remediation=remediation,
        cli=tuple(CliSpec(c["description"], c["command"]) for c in remediation["cli"]),
        cases=_cases(doc["cases"]),
        raw=doc,
        formats=formats,
        attempt=attempt or load_attempt(path.parent),
        enrichment=enrichment,
        restores=parse_restores(doc.get("restores"), file=file, values=set(fields) | COMMON_VARIABLES | enriched),
    )


def load_mappings(directory: str | Path | None = None) -> dict[str, EventMapping]:
    """Every ``*.yaml`` in the directory, keyed by event name. Fails on the first broken file."""
    root = Path(directory) if directory else mappings_dir()
    files = sorted(root.glob("*.yaml"))
    if not files:
        raise MappingFileError(str(root), "$", "no mapping files (*.yaml) found")
    mappings: dict[str, EventMapping] = {}
    attempt = load_attempt(root)
    for path in files:
        mapping = load_mapping_file(path, attempt)
        if mapping.event_name in mappings:
            raise MappingFileError(str(path), "$.event.name", f"{mapping.event_name} is mapped twice")
        mappings[mapping.event_name] = mapping
    ids = [m.id for m in mappings.values()]
    if len(set(ids)) != len(ids):
        raise MappingFileError(str(root), "$.id", "mapping ids must be unique")
    return mappings
