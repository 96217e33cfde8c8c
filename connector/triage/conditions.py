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

Cost: every condition is compiled at load into one closure, ``check(facts) -> bool``, with its
path walk, operator and expected value (regular expression, set, stripped digits) bound in, so
evaluating a rule per event is a few calls with no dispatch on the operator and no parsing;
``test`` is ``check``, ``describe`` (for ``map --explain``) reads the same values the slow way.
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
        if len(keys) == 1:
            (only,) = keys
            return lambda record: record.get(only) if type(record) is dict or isinstance(record, Mapping) else None
        if len(keys) == 2:
            first, second = keys

            def walk2(record: Mapping[str, Any]) -> Any:
                node = record.get(first) if type(record) is dict or isinstance(record, Mapping) else None
                # dict first: an ABC isinstance check costs more than the lookup (hot path).
                if type(node) is dict:
                    return node.get(second)
                return node.get(second) if node is not None and isinstance(node, Mapping) else None

            return walk2

        def walk(record: Mapping[str, Any]) -> Any:
            node: Any = record
            for key in keys:
                if type(node) is not dict and not isinstance(node, Mapping):
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


class Facts:
    """What conditions are evaluated against: the record, its time, and precomputed facts.

    A plain slotted class (one per event): a dataclass's ``default_factory`` fields cost a call each."""

    __slots__ = ("first_seen", "first_seen_values", "record", "time", "windows")

    def __init__(self, record: Mapping[str, Any], time: datetime) -> None:
        self.record = record
        self.time = time
        #: (field path, days) → the value is new in this account (computed once per event).
        self.first_seen: dict[tuple[str, int], bool] = {}
        #: (field path) → the value tested, for explanations.
        self.first_seen_values: dict[str, str | None] = {}
        #: change window name → whether the event time is in it (each window judged once per
        #: event: a weekly window's time-zone conversion is the dearest step of a rule).
        self.windows: dict[str, bool] = {}


class Condition(Protocol):
    @property
    def check(self) -> Callable[[Facts], bool]:
        """The compiled test (the hot path); ``test`` is the same."""

    def test(self, facts: Facts) -> bool: ...

    def describe(self, facts: Facts) -> str: ...


def _digits(value: str) -> str | None:
    """``value`` without its leading zeros if it is all digits (how ``_same`` compares it)."""
    return value.lstrip("0") if value.isdigit() else None


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != {} and value != []


@dataclass(frozen=True, slots=True)
class FieldTest:
    path: str
    op: str
    expected: Any
    get: Callable[[Mapping[str, Any]], Any]
    other: Callable[[Mapping[str, Any]], Any] | None = None
    pattern: re.Pattern[str] | None = None

    #: The whole test, compiled once: walk, text conversion and operator in one closure.
    check: Callable[[Facts], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", self._compile())

    def _compile(self) -> Callable[[Facts], bool]:
        get, expected, op = self.get, self.expected, self.op
        if op == "exists":
            want = bool(expected)
            return lambda facts: _present(get(facts.record)) is want

        def text_of(facts: Facts) -> str | None:
            value = get(facts.record)
            return value if type(value) is str else as_text(value)

        if op == "equals":
            stripped = _digits(expected)
            if stripped is None:  # ``_same`` is plain equality unless both sides are digits
                return lambda facts: text_of(facts) == expected

            def equals_number(facts: Facts) -> bool:
                text = text_of(facts)
                return text is not None and (text == expected or (text.isdigit() and text.lstrip("0") == stripped))

            return equals_number
        if op == "in":
            exact = frozenset(expected)
            numbers = frozenset(d for d in map(_digits, expected) if d is not None)

            def one_of(facts: Facts) -> bool:
                text = text_of(facts)
                if text is None:
                    return False
                return text in exact or (bool(numbers) and text.isdigit() and text.lstrip("0") in numbers)

            return one_of
        if op == "matches":
            search = self.pattern.search if self.pattern else re.compile(expected).search

            def matches(facts: Facts) -> bool:
                text = text_of(facts)
                return text is not None and search(text[:MAX_TEXT]) is not None

            return matches
        if op == "prefix":
            def prefix(facts: Facts) -> bool:
                text = text_of(facts)
                return text is not None and text.startswith(expected)

            return prefix
        if op == "suffix":
            def suffix(facts: Facts) -> bool:
                text = text_of(facts)
                return text is not None and text.endswith(expected)

            return suffix
        if op == "contains":
            def contains(facts: Facts) -> bool:
                text = text_of(facts)
                return text is not None and expected in text

            return contains
        if op in ("differs_from", "same_as"):
            other, want_same = self.other, op == "same_as"

            def compare(facts: Facts) -> bool:
                text = text_of(facts)
                found = as_text(other(facts.record)) if other and text is not None else None
                return found is not None and _same(text, found) is want_same  # type: ignore[arg-type]

            return compare
        return lambda facts: False

    def test(self, facts: Facts) -> bool:
        return self.check(facts)

    def describe(self, facts: Facts) -> str:
        value = as_text(self.get(facts.record))
        shown = "absent" if value is None else repr(value[:120])
        if self.op in ("differs_from", "same_as"):
            other = as_text(self.other(facts.record)) if self.other else None
            want = f"{self.op} {self.expected} ({'absent' if other is None else repr(other[:120])})"
        else:
            want = f"{self.op} {str(self.expected).lower() if self.op == 'exists' else repr(self.expected)}"
        return f"{self.path} is {shown}, {want}: {'yes' if self.test(facts) else 'no'}"


def all_of(conditions: Sequence[Condition]) -> Callable[[Facts], bool]:
    """One closure testing every condition in order, stopping at the first that fails."""
    checks = tuple(c.check for c in conditions)
    if not checks:
        return lambda facts: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda facts: first(facts) and second(facts)
    if len(checks) == 3:
        one, two, three = checks
        return lambda facts: one(facts) and two(facts) and three(facts)

    def every(facts: Facts) -> bool:
        for check in checks:  # noqa: SIM110 - a loop, not all(genexpr): runs for every rule of every event
            if not check(facts):
                return False
        return True

    return every


def _any_of(conditions: Sequence[Condition]) -> Callable[[Facts], bool]:
    checks = tuple(c.check for c in conditions)

    def some(facts: Facts) -> bool:
        for check in checks:  # noqa: SIM110 - as in all_of
            if check(facts):
                return True
        return False

    return some


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]
    check: Callable[[Facts], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", _any_of(self.conditions))

    def test(self, facts: Facts) -> bool:
        return self.check(facts)

    def describe(self, facts: Facts) -> str:
        inner = " | ".join(c.describe(facts) for c in self.conditions)
        return f"any of [{inner}]: {'yes' if self.test(facts) else 'no'}"


@dataclass(frozen=True, slots=True)
class Not:
    condition: Condition
    check: Callable[[Facts], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        inner = self.condition.check
        object.__setattr__(self, "check", lambda facts: not inner(facts))

    def test(self, facts: Facts) -> bool:
        return self.check(facts)

    def describe(self, facts: Facts) -> str:
        return f"not [{self.condition.describe(facts)}]: {'yes' if self.test(facts) else 'no'}"


@dataclass(frozen=True, slots=True)
class FirstSeen:
    path: str
    days: int
    check: Callable[[Facts], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (self.path, self.days)
        object.__setattr__(self, "check", lambda facts: facts.first_seen.get(key, False))

    def test(self, facts: Facts) -> bool:
        return self.check(facts)

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
    check: Callable[[Facts], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tests, outside = tuple((w.name, w.contains) for w in self.windows), self.outside

        def check(facts: Facts) -> bool:
            judged = facts.windows
            for name, contains in tests:
                inside = judged.get(name)
                if inside is None:
                    inside = judged[name] = contains(facts.time)
                if inside:
                    return not outside  # within one of them
            return outside

        object.__setattr__(self, "check", check)

    def test(self, facts: Facts) -> bool:
        return self.check(facts)

    def describe(self, facts: Facts) -> str:
        where = "outside" if self.outside else "within"
        when = facts.time.strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"eventTime {when} {where} change windows {list(self.names)}: {'yes' if self.test(facts) else 'no'}"


def all_hold(conditions: Sequence[Condition], facts: Facts) -> bool:
    """Whether every condition holds (``map --explain``; the engine uses ``all_of`` closures)."""
    return all(c.check(facts) for c in conditions)
