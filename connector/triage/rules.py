"""Load a triage rules file: YAML → ``schemas/triage-rules.schema.json`` → typed, compiled rules.

A broken rules file stops the service at start-up, like a broken mapping file: every error reads
``file: $.path: reason`` (``MappingFileError``), and every regular expression, path and window
name is compiled or resolved here. Dates stay text while loading (YAML's implicit timestamps
would turn ``until: 2027-01-31`` into a ``date`` the schema cannot check).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath.exceptions
import jsonschema
import jsonschema.exceptions
import yaml

from connector.errors import MappingFileError
from connector.model import Severity
from connector.paths import schemas_dir
from connector.triage.conditions import AnyOf, Condition, FieldTest, FirstSeen, Not, Windows, compile_path
from connector.triage.windows import DAYS, ChangeWindow, parse_clock, parse_time

FIELD_OPS = ("equals", "in", "matches", "prefix", "suffix", "contains", "exists", "differs_from", "same_as")


class _TextDates(yaml.SafeLoader):
    """``yaml.SafeLoader`` without the implicit timestamp type."""


_TextDates.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class ContextRule:
    id: str
    reason: str
    match: tuple[Condition, ...]
    steps: int
    at_least: Severity | None
    at_most: Severity | None


@dataclass(frozen=True, slots=True)
class SuppressionRule:
    id: str
    reason: str
    owner: str
    until: datetime | None
    match: tuple[Condition, ...]

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One rules file, validated and compiled."""

    file: str
    context: tuple[ContextRule, ...] = ()
    suppress: tuple[SuppressionRule, ...] = ()
    #: Every distinct (field, days) a ``first_seen`` condition asks about: computed for every event,
    #: whichever rules match, so a sighting is recorded even when a rule stops at an earlier condition.
    first_seen: tuple[tuple[str, int], ...] = ()

    def expired(self, now: datetime) -> tuple[SuppressionRule, ...]:
        return tuple(rule for rule in self.suppress if not rule.active(now))


def _json_path(path: Sequence[Any]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((schemas_dir() / "triage-rules.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _read(path: Path) -> Any:
    file = str(path)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_TextDates)  # a SafeLoader subclass
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError(file, "$", f"cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise MappingFileError(file, "$", f"not valid YAML: {exc}") from None
    errors = list(_validator().iter_errors(doc))
    if errors:
        # The deepest error inside oneOf/anyOf branches names what is actually wrong.
        err = jsonschema.exceptions.best_match(errors, key=lambda e: (-len(e.absolute_path),))
        while err.context:
            err = max(err.context, key=lambda e: len(e.absolute_path))
        raise MappingFileError(file, _json_path(list(err.absolute_path)), err.message)
    return doc


class _Compiler:
    def __init__(self, file: str, windows: Mapping[str, ChangeWindow]) -> None:
        self.file = file
        self.windows = windows
        self.first_seen: dict[tuple[str, int], None] = {}

    def fail(self, where: Sequence[Any], reason: str) -> MappingFileError:
        return MappingFileError(self.file, _json_path(where), reason)

    def path(self, text: str, where: Sequence[Any]) -> Any:
        try:
            return compile_path(text)
        except jmespath.exceptions.JMESPathError as exc:
            raise self.fail(where, f"bad field path: {exc}") from None

    def conditions(self, items: Sequence[Mapping[str, Any]], where: list[Any]) -> tuple[Condition, ...]:
        return tuple(self.condition(item, [*where, i]) for i, item in enumerate(items))

    def condition(self, doc: Mapping[str, Any], where: list[Any]) -> Condition:
        if "any" in doc:
            return AnyOf(self.conditions(doc["any"], [*where, "any"]))
        if "not" in doc:
            return Not(self.condition(doc["not"], [*where, "not"]))
        if "first_seen" in doc:
            spec = doc["first_seen"]
            self.path(spec["field"], [*where, "first_seen", "field"])
            self.first_seen[(spec["field"], spec["days"])] = None
            return FirstSeen(spec["field"], spec["days"])
        for key in ("outside_windows", "within_windows"):
            if key in doc:
                names = tuple(doc[key])
                for index, name in enumerate(names):
                    if name not in self.windows:
                        raise self.fail([*where, key, index], f"no change window {name!r} in change_windows")
                return Windows(names, tuple(self.windows[n] for n in names), outside=key == "outside_windows")
        op = next(k for k in FIELD_OPS if k in doc)
        expected = doc[op]
        get = self.path(doc["field"], [*where, "field"])
        if op == "matches":
            try:
                pattern = re.compile(expected)
            except re.error as exc:
                raise self.fail([*where, "matches"], f"bad regular expression: {exc}") from None
            return FieldTest(doc["field"], op, expected, get, pattern=pattern)
        if op in ("differs_from", "same_as"):
            return FieldTest(doc["field"], op, expected, get, other=self.path(expected, [*where, op]))
        if op == "in":
            expected = tuple(_scalar(v) for v in expected)
        elif op != "exists":
            expected = _scalar(expected)
        return FieldTest(doc["field"], op, expected, get)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _moment(text: str, file: str, where: str, *, end_of_day: bool = False) -> datetime:
    try:
        return parse_time(text, end_of_day=end_of_day)
    except ValueError as exc:
        raise MappingFileError(file, where, f"not a date or date-time: {exc}") from None


def _windows(doc: Mapping[str, Any], file: str) -> dict[str, ChangeWindow]:
    out: dict[str, ChangeWindow] = {}
    for name, spec in doc.items():
        where = f"$.change_windows.{name}"
        if "from" in spec:
            begins = _moment(spec["from"], file, f"{where}.from")
            ends = _moment(spec["to"], file, f"{where}.to", end_of_day=True)
            if ends <= begins:
                raise MappingFileError(file, f"{where}.to", "the window ends before it begins")
            out[name] = ChangeWindow(name, begins=begins, ends=ends)
            continue
        try:
            zone = ZoneInfo(spec.get("timezone", "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            raise MappingFileError(file, f"{where}.timezone", f"unknown time zone {spec.get('timezone')!r}") from None
        if spec["start"] == spec["end"]:
            raise MappingFileError(file, f"{where}.end", "start and end are the same minute (an empty window)")
        out[name] = ChangeWindow(
            name, days=frozenset(DAYS.index(d) for d in spec["days"]),
            start=parse_clock(spec["start"]), end=parse_clock(spec["end"]), zone=zone,
        )
    return out


def _unique(rules: Sequence[Mapping[str, Any]], file: str, section: str, seen: set[str]) -> None:
    for index, rule in enumerate(rules):
        if rule["id"] in seen:
            raise MappingFileError(file, f"$.{section}[{index}].id", f"rule id {rule['id']!r} is used twice")
        seen.add(rule["id"])


def load_rules(path: str | Path) -> RuleSet:
    """A rules file, validated and compiled; ``MappingFileError`` (``file: $.path: reason``) if broken."""
    file = str(path)
    doc = _read(Path(path))
    compiler = _Compiler(file, _windows(doc.get("change_windows") or {}, file))
    seen: set[str] = set()
    _unique(doc.get("context") or (), file, "context", seen)
    _unique(doc.get("suppress") or (), file, "suppress", seen)
    context = []
    for index, rule in enumerate(doc.get("context") or ()):
        steps = int(rule.get("raise", 0)) - int(rule.get("lower", 0))
        at_least = Severity[rule["at_least"]] if "at_least" in rule else None
        at_most = Severity[rule["at_most"]] if "at_most" in rule else None
        if at_least is not None and at_most is not None and at_least > at_most:
            raise MappingFileError(file, f"$.context[{index}].at_most", "at_most is below at_least")
        context.append(ContextRule(rule["id"], rule["reason"], compiler.conditions(rule["match"], ["context", index, "match"]),
                                   steps, at_least, at_most))
    suppress = []
    for index, rule in enumerate(doc.get("suppress") or ()):
        until = _moment(rule["until"], file, f"$.suppress[{index}].until", end_of_day=True) if "until" in rule else None
        suppress.append(SuppressionRule(rule["id"], rule["reason"], rule["owner"], until,
                                        compiler.conditions(rule["match"], ["suppress", index, "match"])))
    return RuleSet(file, tuple(context), tuple(suppress), tuple(compiler.first_seen))
