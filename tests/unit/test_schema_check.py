"""The one-sided schema check (connector/schema_check.py) against jsonschema, keyword by keyword:
it never accepts what jsonschema rejects, and on plain JSON values it accepts what jsonschema
accepts (else every finding would take the slow path)."""

from __future__ import annotations

import itertools
from typing import Any

import jsonschema
import pytest

from connector.schema_check import DISPATCH_OVER, compile_check


class Text(str):
    """A str subclass: jsonschema calls it a string; the check leaves it to jsonschema."""


class Table(dict):  # type: ignore[type-arg]
    pass


#: Plain JSON values (as a parser gives them) the check must judge exactly as jsonschema does.
PLAIN: list[Any] = [None, True, False, 0, 1, 2, 99, -5, 10**13, 2.5, "", "a", "abc", "v18", "https://x", "cloud",
                    "x" * 600, [], [1], ["a"], ["", "a"], ["cloud", "host"], ["host"], [{}], [{"uid": "a"}],
                    [None], [None, 1], [1, 2.5], [True, False], [[], [1]], {"a": []}, {"a": [], "b": "x"},
                    {"uid": "a", "name": ""}, {"uid": "", "name": "b"}, {"uid": "a", "name": "b", "x": 1}, {"name": "b"},
                    {}, {"uid": "a"}, {"uid": ""}, {"uid": 1}, {"name": "n"}, {"uid": "a", "extra": 1},
                    {"uid": "a", "name": "b", "type_id": 3}, {"a": {"b": "c"}}, {"a": {"b": ""}}, {"a": "x", "b": "y"}]
#: Values where jsonschema and the check may differ; the check may only be stricter.
TRICKY: list[Any] = [1.0, 3.0, Text("a"), Text(""), Table(uid="a"), Table(), (1,), ("a",), float("nan"),
                     [1, True], [1.0], [Text("a")], [Table()], ["a", Text("")], {"a": Text("x")}, {Text("k"): []},
                     {1: "a"}, {"uid": Text("a")}, [True], {"type_id": True}, {"type_id": 3.0}]

SCHEMAS: list[dict[str, Any]] = [
    {"type": "string"}, {"type": "string", "minLength": 1}, {"type": "string", "minLength": 2, "maxLength": 3},
    {"type": "string", "pattern": "^v[0-9]+"}, {"type": "integer"}, {"type": "number"},
    {"type": "integer", "minimum": 0, "maximum": 99}, {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
    {"type": "boolean"}, {"type": "null"}, {"type": ["string", "null"]}, {"type": "array"}, {"type": "object"},
    {"enum": [0, 1, 2, 3, 99]}, {"enum": ["cloud", "host"]}, {"enum": [None, True, "a", 1.5]}, {"const": 2},
    {"const": "cloud"}, {"const": True}, {"minLength": 1}, {"required": ["uid"]}, {"minimum": 1},
    {"type": "object", "required": ["uid"], "additionalProperties": False,
     "properties": {"uid": {"type": "string", "minLength": 1}, "name": {"type": "string"},
                    "type_id": {"enum": [0, 1, 2, 3, 99]}}},
    {"type": "object", "additionalProperties": False},
    {"type": "object", "required": ["uid", "name"], "additionalProperties": False,  # exactly these keys
     "properties": {"uid": {"type": "string", "minLength": 1}, "name": {"type": "string"}}},
    {"required": ["uid", "name"], "additionalProperties": False, "properties": {"uid": True, "name": True}},
    {"type": "object", "additionalProperties": {"type": "string"}, "propertyNames": {"type": "string", "minLength": 1}},
    {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "object"}},
    {"type": "object", "minProperties": 1, "maxProperties": 2},
    {"type": "object", "additionalProperties": False, "anyOf": [{"required": ["uid"]}, {"required": ["name"]}],
     "properties": {"uid": {"type": "string", "minLength": 1}, "name": {"type": "string", "minLength": 1}}},
    {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    {"type": "array", "maxItems": 1}, {"type": "array", "items": {"enum": ["cloud", "host"]}, "contains": {"const": "cloud"}},
    {"type": "array", "items": {"type": "object", "required": ["uid"]}},
    # Items of a bare type are judged by the set of their types: the same verdicts.
    {"type": "array", "items": {"type": "integer"}}, {"type": "array", "items": {"type": "number"}},
    {"type": "array", "items": {"type": "null"}}, {"type": "array", "items": {"type": "object"}},
    {"type": "array", "items": {"type": "string", "minLength": 0}}, {"items": {"type": "boolean"}},
    {"type": "object", "additionalProperties": {"type": "array"}, "propertyNames": {"type": "string"}},
    {"type": "array", "items": {"type": ["string", "null"]}},
    {"allOf": [{"type": "string"}, {"minLength": 2}]}, {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    # Under a single type the branches' keywords need no type guard (the type test comes first).
    {"type": "string", "anyOf": [{"minLength": 4}, {"pattern": "^a"}]},
    {"type": "object", "allOf": [{"required": ["uid"]}, {"maxProperties": 1}]},
    # A required-only branch of one member is a membership test; of several, a key-set test.
    {"anyOf": [{"required": ["uid"]}, {"required": ["name", "type_id"]}]},
    {"type": "object", "anyOf": [{"required": ["uid"]}, {"required": ["name"]}, {"required": ["a"]}]},
    {"type": "integer", "anyOf": [{"minimum": 50}, {"maximum": 0}]}, {"type": "array", "anyOf": [{"minItems": 2}]},
    {"type": ["string", "null"], "anyOf": [{"minLength": 1}, {"type": "null"}]},
    {"$ref": "#/$defs/name", "$defs": {"name": {"type": "string", "minLength": 1}}},
    {"type": "object", "properties": {"child": {"$ref": "#"}}, "additionalProperties": False},
    {"properties": {"a": False}}, True, False,
    # Keywords the check does not know: never accepted, so always the full validator's verdict.
    {"oneOf": [{"type": "string"}, {"type": "integer"}]}, {"not": {"type": "string"}}, {"type": "string", "format": "email"},
    {"type": "array", "uniqueItems": True}, {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
]
UNKNOWN = {"oneOf", "not", "format", "uniqueItems", "patternProperties"}


def _uses_unknown(schema: Any) -> bool:
    return isinstance(schema, dict) and bool(set(schema) & UNKNOWN)


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_never_accepts_what_jsonschema_rejects_and_accepts_plain_valid_values(index: int) -> None:
    schema = SCHEMAS[index]
    check = compile_check(schema if isinstance(schema, dict) else {"allOf": [schema]})
    reference = jsonschema.Draft202012Validator(schema)
    for value in PLAIN:
        ok = reference.is_valid(value)
        if _uses_unknown(schema):
            assert check(value) is False, (schema, value)
        else:
            assert check(value) == ok, (schema, value)
    for value in TRICKY:
        assert not check(value) or reference.is_valid(value), (schema, value)


def test_nested_objects_combine_every_keyword() -> None:
    schema = next(s for s in SCHEMAS if isinstance(s, dict) and "type_id" in s.get("properties", {}))
    values = [{"uid": uid, **extra} for uid, extra in itertools.product(
        ["a", "", 1, None], [{}, {"name": "n"}, {"name": 1}, {"type_id": 99}, {"type_id": 98}, {"zz": 1}])]
    check = compile_check(schema)
    reference = jsonschema.Draft202012Validator(schema)
    assert sum(map(check, values)) == 3  # uid "a" alone, with a name, with a known type_id
    for value in values:
        assert check(value) == reference.is_valid(value), value


def test_a_remote_reference_is_left_to_the_full_validator() -> None:
    check = compile_check({"type": "object", "properties": {"a": {"$ref": "https://example.com/remote.json"}}})
    assert check({}) is True and check({"a": "x"}) is False


def test_a_document_past_the_recursion_limit_is_only_not_sure() -> None:
    check = compile_check({"type": "object", "properties": {"child": {"$ref": "#"}}, "additionalProperties": False})
    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"child": deep}
    assert check(deep) is False
    assert check({"child": {"child": {}}}) is True


def _members(count: int) -> dict[str, Any]:
    return {f"m{i}": {"type": "string", "minLength": 1} if i % 3 else {"type": "integer", "maximum": 5}
            for i in range(count)}


@pytest.mark.parametrize("extra", [False, True, {"type": "boolean"}], ids=["closed", "open", "typed-extra"])
@pytest.mark.parametrize("typed", [True, False], ids=["object", "untyped"])
@pytest.mark.parametrize("table", [True, False], ids=["table", "in-line"])
def test_an_object_of_many_members_is_judged_member_by_member_as_jsonschema_does(extra: Any, typed: bool,
                                                                                  table: bool) -> None:
    """Past ``DISPATCH_OVER`` members through the table of member checks, below it one look-up per
    member: the same verdicts either way."""
    members = _members(DISPATCH_OVER + 3 if table else DISPATCH_OVER - 3)
    schema: dict[str, Any] = {"properties": {**members, "any": True, "never": False}, "required": ["m1"],
                              "additionalProperties": extra, "minProperties": 1}
    if typed:
        schema["type"] = "object"
    check = compile_check(schema)
    assert ("get = _t" in (check.__doc__ or "")) is table
    reference = jsonschema.Draft202012Validator(schema)
    values: list[Any] = [*PLAIN, *TRICKY]
    for m1, m0, other in itertools.product(["a", "", 1, None, Text("a")], [_MISSING_MEMBER, 3, 6, "x", 3.0, True],
                                            [{}, {"zz": True}, {"zz": "s"}, {"any": [1]}, {"never": 1}, {"m2": ""}]):
        value = {"m1": m1, **({} if m0 is _MISSING_MEMBER else {"m0": m0}), **other}
        values += [value, Table(value)]
    values += [{}, {"m0": 1}, {"m1": "a", 1: "a"}]
    accepted = 0
    for value in values:
        ok = reference.is_valid(value)
        assert not check(value) or ok, (schema, value)
        if ok and type(value) is dict and _plain(value):
            assert check(value), (schema, value)
        accepted += bool(check(value))
    assert accepted >= 4  # the fast path answers the common case (m1 "a", m0 absent or 3, nothing else wrong)


_MISSING_MEMBER = object()


def _plain(value: Any) -> bool:
    """A value as a JSON parser gives it (no subclasses, no floats that equal integers)."""
    if isinstance(value, dict):
        return type(value) is dict and all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return type(value) is list and all(map(_plain, value))
    return type(value) in (str, int, bool, type(None))
