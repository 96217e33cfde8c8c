"""Match conditions of triage rules: pure data on event fields, compiled once at load time.

A rule's ``match`` is a list of conditions that must all hold. A condition is one of

- a field test: ``{field: <path>, <op>: <value>}`` with op ``equals``, ``in``, ``matches``
  (regular expression, searched), ``prefix``, ``suffix``, ``contains``, ``exists`` (bool),
  ``differs_from`` / ``same_as`` (another field's path: both present and different / equal);
- ``{any: [conditions]}`` and ``{not: condition}``;
- ``{first_seen: {field: <path>, days: N}}``: the value has not been seen in this account on
  any of the N days before the event's day (see ``firstseen.py``);
- ``{outside_windows: [names]}`` / ``{within_windows: [names]}``: the event time against the
  file's declared change windows (``windows.py``).

Paths are dotted field names of the CloudTrail record (``userIdentity.sessionContext.attributes
.mfaAuthenticated``), read with plain dict lookups; anything else is compiled as JMESPath. Values
are compared as text: booleans as ``true``/``false``, numbers as written; two digit strings
compare by value, because exporters drop the leading zeros of account ids. Record values are
attacker-influenced: only the first ``MAX_TEXT`` characters are tested by a regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import jmespath

from connector.triage.windows import ChangeWindow

MAX_TEXT = 2048
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def compile_path(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """A getter for a dotted path (fast dict walk) or a JMESPath expression."""
    if _DOTTED.match(path):
        keys = tuple(path.split("."))

        def walk(record: Mapping[str, Any]) -> Any:
            node: Any = record
            for key in keys:
                # dict first: an ABC isinstance check costs more than the lookup (hot path).
                if not isinstance(node, dict) and not isinstance(node, Mapping):
                    return None
                node = node.get(key)
            return node

        return walk
    expression = jmespath.compile(path)  # raises JMESPathError: the loader reports it with its path
    return expression.search  # type: ignore[no-any-return]


def as_text(value: Any) -> str | None:
    """A scalar record value as the text conditions compare; ``None`` for absent or structured."""
    if type(value) is str:
        return value
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    if a.isdigit() and b.isdigit():
        return a.lstrip("0") == b.lstrip("0")
    return a == b


@dataclass(slots=True)
class Facts:
    """What conditions are evaluated against: the record, its time, and precomputed facts."""

    record: Mapping[str, Any]
    time: datetime
    #: (field path, days) → the value is new in this account (computed once per event).
    first_seen: dict[tuple[str, int], bool] = field(default_factory=dict)
    #: (field path) → the value tested, for explanations.
    first_seen_values: dict[str, str | None] = field(default_factory=dict)


class Condition(Protocol):
    def test(self, facts: Facts) -> bool: ...

    def describe(self, facts: Facts) -> str: ...


@dataclass(frozen=True, slots=True)
class FieldTest:
    path: str
    op: str
    expected: Any
    get: Callable[[Mapping[str, Any]], Any]
    other: Callable[[Mapping[str, Any]], Any] | None = None
    pattern: re.Pattern[str] | None = None

    #: The operator on a present value, chosen once (the hot path does no string dispatch).
    check: Callable[[str, Mapping[str, Any]], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", self._checker())

    def _checker(self) -> Callable[[str, Mapping[str, Any]], bool]:
        expected, op = self.expected, self.op
        if op == "equals":
            return lambda text, _: text == expected or _same(text, expected)
        if op == "matches":
            search = self.pattern.search if self.pattern else re.compile(expected).search
            return lambda text, _: search(text[:MAX_TEXT]) is not None
        if op == "in":
            exact = frozenset(expected)
            return lambda text, _: text in exact or any(_same(text, item) for item in expected)
        if op == "prefix":
            return lambda text, _: text.startswith(expected)
        if op == "suffix":
            return lambda text, _: text.endswith(expected)
        if op == "contains":
            return lambda text, _: expected in text
        if op in ("differs_from", "same_as"):
            other, want = self.other, op == "same_as"

            def compare(text: str, record: Mapping[str, Any]) -> bool:
                found = as_text(other(record)) if other else None
                return found is not None and _same(text, found) is want

            return compare
        return lambda text, _: False  # exists: decided in test()

    def test(self, facts: Facts) -> bool:
        value = self.get(facts.record)
        if self.op == "exists":
            present = value is not None and value != "" and value != {} and value != []
            return present is bool(self.expected)
        text = as_text(value)
        return text is not None and self.check(text, facts.record)

    def describe(self, facts: Facts) -> str:
        value = as_text(self.get(facts.record))
        shown = "absent" if value is None else repr(value[:120])
        if self.op in ("differs_from", "same_as"):
            other = as_text(self.other(facts.record)) if self.other else None
            want = f"{self.op} {self.expected} ({'absent' if other is None else repr(other[:120])})"
        else:
            want = f"{self.op} {str(self.expected).lower() if self.op == 'exists' else repr(self.expected)}"
        return f"{self.path} is {shown}, {want}: {'yes' if self.test(facts) else 'no'}"


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]

    def test(self, facts: Facts) -> bool:
        return any(c.test(facts) for c in self.conditions)

    def describe(self, facts: Facts) -> str:
        inner = " | ".join(c.describe(facts) for c in self.conditions)
        return f"any of [{inner}]: {'yes' if self.test(facts) else 'no'}"


@dataclass(frozen=True, slots=True)
class Not:
    condition: Condition

    def test(self, facts: Facts) -> bool:
        return not self.condition.test(facts)

    def describe(self, facts: Facts) -> str:
        return f"not [{self.condition.describe(facts)}]: {'yes' if self.test(facts) else 'no'}"


@dataclass(frozen=True, slots=True)
class FirstSeen:
    path: str
    days: int

    def test(self, facts: Facts) -> bool:
        return facts.first_seen.get((self.path, self.days), False)

    def describe(self, facts: Facts) -> str:
        value = facts.first_seen_values.get(self.path)
        shown = "absent" if value is None else repr(value[:120])
        return (f"{self.path} is {shown}, not seen in this account in the {self.days} days before: "
                f"{'yes' if self.test(facts) else 'no'}")


@dataclass(frozen=True, slots=True)
class Windows:
    names: tuple[str, ...]
    windows: tuple[ChangeWindow, ...]
    outside: bool

    def test(self, facts: Facts) -> bool:
        within = any(w.contains(facts.time) for w in self.windows)
        return within is not self.outside

    def describe(self, facts: Facts) -> str:
        where = "outside" if self.outside else "within"
        when = facts.time.strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"eventTime {when} {where} change windows {list(self.names)}: {'yes' if self.test(facts) else 'no'}"


def all_hold(conditions: Sequence[Condition], facts: Facts) -> bool:
    for condition in conditions:  # noqa: SIM110 - a loop, not all(genexpr): runs for every rule of every event
        if not condition.test(facts):
            return False
    return True
