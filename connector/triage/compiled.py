"""A rule's conditions compiled into one Python function, for the per-event hot path.

``all_of(conditions)`` (conditions.py) calls one closure per condition, and each closure calls a
path getter: three or four calls per condition, a hundred per event for a dozen rules, and it
shows in a pipeline whose other stages evict the interpreter's caches between events. Here a rule
becomes a single function in which every field test is inlined: its dict walk, text conversion
and operator are straight-line code, so a rule costs one call. Conditions that are not field tests
(``any``, ``not``, ``first_seen``, the change windows) are called as their compiled closures.

The generated source contains only this module's template text and generated names (``k0``,
``e0``, ...): every value from the rules file (keys, expected values, regular expressions, getters)
is bound through the function's globals, never written into the source, so a rules file cannot
inject code. The semantics are those of ``FieldTest.check``; tests/unit/test_triage.py checks the
two agree on every record variant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from connector.triage.conditions import _DOTTED, MAX_TEXT, Condition, Facts, FieldTest, _digits, _same, as_text

T = TypeVar("T")


def _get(node: Any, key: str) -> Any:
    """One step of a walk below the record, for a node that is not a plain dict."""
    return node.get(key) if isinstance(node, Mapping) else None


def _read(test: FieldTest, n: str, names: dict[str, Any]) -> list[str]:
    """Lines that leave the tested value in ``v``."""
    if not _DOTTED.match(test.path):  # JMESPath: its compiled search
        names[f"g{n}"] = test.get
        return [f"v = g{n}(rec)"]
    keys = test.path.split(".")
    lines = []
    for depth, key in enumerate(keys):
        names[f"k{n}_{depth}"] = key
        if depth == 0:
            lines.append(f"v = rec.get(k{n}_0)")
        else:  # dict first: an ABC isinstance check costs more than the lookup
            lines.append(f"v = v.get(k{n}_{depth}) if type(v) is dict else (None if v is None else _get(v, k{n}_{depth}))")
    return lines


def _as_text_lines(fail: str) -> list[str]:
    return ["if type(v) is not str:", "    v = as_text(v)", "    if v is None:", f"        {fail}"]


def _field(test: FieldTest, n: str, names: dict[str, Any], fail: str) -> list[str]:
    """The lines of one field test: ``fail`` (a statement) unless it holds."""
    lines = _read(test, n, names)
    op, expected = test.op, test.expected
    names[f"e{n}"] = expected
    if op == "exists":
        present = "(v is not None and v != '' and v != {} and v != [])"
        return [*lines, f"if {present} is not {bool(expected)}:", f"    {fail}"]
    lines += _as_text_lines(fail)
    if op == "equals":
        stripped = _digits(expected)
        if stripped is None:
            holds = f"v == e{n}"
        else:
            names[f"s{n}"] = stripped
            holds = f"v == e{n} or (v.isdigit() and v.lstrip('0') == s{n})"
    elif op == "in":
        names[f"x{n}"] = frozenset(expected)
        numbers = frozenset(d for d in map(_digits, expected) if d is not None)
        names[f"d{n}"] = numbers
        holds = f"v in x{n}" + (f" or (v.isdigit() and v.lstrip('0') in d{n})" if numbers else "")
    elif op == "matches":
        assert test.pattern is not None  # the loader compiles every pattern
        names[f"r{n}"] = test.pattern.search
        holds = f"r{n}(v[:MAX_TEXT]) is not None"
    elif op == "prefix":
        holds = f"v.startswith(e{n})"
    elif op == "suffix":
        holds = f"v.endswith(e{n})"
    elif op == "contains":
        holds = f"e{n} in v"
    elif op in ("differs_from", "same_as"):
        names[f"o{n}"] = test.other
        lines += [f"o = o{n}(rec)", "if type(o) is not str:", "    o = as_text(o)", "    if o is None:", f"        {fail}"]
        holds = f"_same(v, o) is {op == 'same_as'}"
    else:
        holds = "False"
    return [*lines, f"if not ({holds}):", f"    {fail}"]


def _conditions(conditions: Sequence[Condition], prefix: str, names: dict[str, Any], fail: str) -> list[str]:
    lines: list[str] = []
    for index, condition in enumerate(conditions):
        n = f"{prefix}_{index}"
        if isinstance(condition, FieldTest):
            lines += _field(condition, n, names, fail)
        else:
            names[f"c{n}"] = condition.check
            lines += [f"if not c{n}(facts):", f"    {fail}"]
    return lines


def _build(name: str, body: list[str], names: dict[str, Any]) -> Any:
    names.update({"as_text": as_text, "_same": _same, "_get": _get, "MAX_TEXT": MAX_TEXT})
    source = f"def {name}(facts):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, f"<triage {name}>", "exec"), names)  # template text only: see the module docstring
    return names[name]


def compile_rule(conditions: Sequence[Condition]) -> Callable[[Facts], bool]:
    """One function that holds when every condition holds (tested in order, stopping early)."""
    names: dict[str, Any] = {}
    rule: Callable[[Facts], bool] = _build("rule", [
        "rec = facts.record", *_conditions(conditions, "0", names, "return False"), "return True"], names)
    return rule


def compile_rules(rules: Sequence[tuple[Sequence[Condition], T]]) -> Callable[[Facts], list[T]]:
    """One function for a whole rule list: the values (``T``) of the rules that hold, in order.

    Each rule is a ``while True`` block that ``break``s at its first failing condition, so a rule
    set costs one call per event whatever its size."""
    names: dict[str, Any] = {}
    body = ["rec = facts.record", "out = []"]
    for index, (conditions, value) in enumerate(rules):
        names[f"value{index}"] = value
        block = [*_conditions(conditions, str(index), names, "break"), f"out.append(value{index})", "break"]
        body += ["while True:", *(f"    {line}" for line in block)]
    matched: Callable[[Facts], list[T]] = _build("matched", [*body, "return out"], names)
    return matched
