"""One-sided compiled JSON Schema checks: ``True`` means valid, ``False`` means "ask the full validator".

The full validators (fastjsonschema, jsonschema, botocore's ``ParamValidator``) raise and explain;
on a valid document most of their time goes into generic machinery (an ``isinstance`` chain per
enum member, a set copy and a ``remove`` per property, exceptions inside ``anyOf``). A finding is
valid nearly always, so :func:`compile_check` turns a schema into one plain Python function of
boolean expressions (``type(x) is str``, ``x.keys() <= ALLOWED``, ``x in {…}``) that answers the
common case in a fraction of the time and defers everything else.

The check is *sound, not complete*: it returns ``True`` only for a document the schema accepts
(under both draft-07 and 2020-12 meaning, which agree on every keyword supported here); anything
it is unsure of (a keyword it does not know, a ``str`` subclass, ``1.0`` where an integer is
expected, an enum member that is not a string, integer, boolean or null) makes the node ``False``,
so the caller falls back to the full validator and the verdict is the full validator's. Tests
hold the two to the same verdict over every rendered and damaged finding
(tests/unit/test_schema_check.py, tests/mappings/test_asff_compiled.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: Keywords that do not constrain a document.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "definitions", "$defs",
                          "examples", "default", "deprecated", "readOnly", "writeOnly"})
_STRING = frozenset({"minLength", "maxLength", "pattern"})
_NUMBER = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_OBJECT = frozenset({"properties", "required", "additionalProperties", "propertyNames", "minProperties",
                     "maxProperties"})
_ARRAY = frozenset({"items", "minItems", "maxItems", "contains"})
_OTHER = frozenset({"type", "enum", "const", "anyOf", "allOf", "$ref"})
_KNOWN = _ANNOTATIONS | _STRING | _NUMBER | _OBJECT | _ARRAY | _OTHER

#: The exact type test of each JSON type (subclasses are left to the full validator).
_EXACT = {
    "string": "type({v}) is str",
    "integer": "type({v}) is int",
    "number": "type({v}) in (int, float)",
    "boolean": "type({v}) is bool",
    "null": "{v} is None",
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
}
#: When a schema has no single type, a keyword applies only to instances of its type: these
#: guards are the full validators' own (``isinstance``), so no instance escapes a keyword.
_GUARDS = {
    "string": "not isinstance({v}, str)",
    "number": "(not isinstance({v}, (int, float)) or isinstance({v}, bool))",
    "object": "not isinstance({v}, dict)",
    "array": "not isinstance({v}, list)",
}
#: The exact Python types of each JSON type, as ``_EXACT`` tests them (``bool`` is no integer).
_TYPES = {"string": frozenset({str}), "integer": frozenset({int}), "number": frozenset({int, float}),
          "boolean": frozenset({bool}), "null": frozenset({type(None)}), "object": frozenset({dict}),
          "array": frozenset({list})}
_MISSING = object()
#: An object schema with more named members than this checks the members a document has, through
#: a table, instead of asking for every member the schema names. A look-up of an absent member
#: costs less than a call of a member's check, so only a schema of many members, few of them
#: present (ASFF ``ResourceDetails``: 2 of 300), gains from the table; an OCSF finding has 28 of
#: its 30 top-level members and ASFF's root 24 of 45, which are quicker asked for in line.
DISPATCH_OVER = 48


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.functions: list[str] = []
        self.namespace: dict[str, Any] = {"_M": _MISSING, "_yes": lambda _: True, "_no": lambda _: False}
        self.refs: dict[str, str] = {}
        self.count = 0
        #: ``name = {key: function, ...}`` tables of dispatching objects, bound after every def.
        self.tables: list[str] = []

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"_{prefix}{self.count}"

    def constant(self, value: Any) -> str:
        name = self.name("c")
        self.namespace[name] = value
        return name

    def function(self, schema: Any) -> str:
        """A module-level function ``name(x) -> bool`` for ``schema``."""
        name = self.name("f")
        self.functions.append(f"def {name}(x):\n    return {self.expr(schema, 'x')}\n")
        return name

    def ref(self, pointer: str) -> str:
        if pointer not in self.refs:
            if not pointer.startswith("#"):
                return "False"  # a remote schema: the full validator resolves it
            node: Any = self.root
            for part in (p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/") if p):
                if not isinstance(node, Mapping) or part not in node:
                    return "False"
                node = node[part]
            name = self.name("r")
            self.refs[pointer] = name  # before the body: a schema may refer to itself
            self.functions.append(f"def {name}(x):\n    return {self.expr(node, 'x')}\n")
        return f"{self.refs[pointer]}({{v}})"

    def expr(self, schema: Any, v: str, known: str | None = None) -> str:
        """A boolean expression over the variable ``v``; True only if ``schema`` accepts its value.
        ``known``: the JSON type ``v`` already has exactly (an enclosing schema's single type,
        tested before this expression in the same ``and`` chain), so no keyword needs its guard."""
        if schema is True:
            return "True"
        if schema is False or not isinstance(schema, Mapping):
            return "False"
        keys = set(schema) - _ANNOTATIONS
        if keys - _KNOWN:
            return "False"  # e.g. oneOf, not, if, patternProperties, format, uniqueItems
        types = schema.get("type")
        if types is not None:
            types = [types] if isinstance(types, str) else list(types)
            if not types or any(t not in _EXACT for t in types):
                return "False"
        parts: list[str] = []
        if types is not None:
            parts.append("(" + " or ".join(_EXACT[t].format(v=v) for t in types) + ")")
        single = types[0] if types is not None and len(types) == 1 else None
        exact = single or known
        for kind, group, build in (("string", _STRING, self._string), ("number", _NUMBER, self._number),
                                   ("object", _OBJECT, self._object), ("array", _ARRAY, self._array)):
            if not keys & group:
                continue
            if types is not None and kind not in types and not (kind == "number" and "integer" in types):
                continue  # the keyword cannot apply: the type test already rejects the rest
            checks = build(schema, v)
            if exact == kind or (kind == "number" and exact == "integer"):
                parts.extend(checks)
            else:
                parts.append("(" + _GUARDS[kind].format(v=v) + " or (" + " and ".join(checks or ["True"]) + "))")
        if "enum" in keys:
            parts.append(self._enum(schema["enum"], v))
        if "const" in keys:
            parts.append(self._enum([schema["const"]], v))
        if "allOf" in keys:
            parts.extend(self.expr(sub, v, exact) for sub in schema["allOf"])
        if "anyOf" in keys:
            parts.append("(" + " or ".join(self.expr(sub, v, exact) for sub in schema["anyOf"]) + ")")
        if "$ref" in keys:
            parts.append(self.ref(str(schema["$ref"])).format(v=v))
        return "(" + " and ".join(parts) + ")" if parts else "True"

    def _enum(self, values: Any, v: str) -> str:
        """Strings, integers, booleans and null compared with their type; other members (floats,
        objects, arrays) are never matched here, so such a value goes to the full validator."""
        if not isinstance(values, list):
            return "False"
        options = []
        strings = frozenset(e for e in values if type(e) is str)
        integers = frozenset(e for e in values if type(e) is int)
        if strings:
            options.append(f"(type({v}) is str and {v} in {self.constant(strings)})")
        if integers:
            options.append(f"(type({v}) is int and {v} in {self.constant(integers)})")
        options += [f"{v} is {e!r}" for e in (True, False, None) if any(x is e for x in values)]
        return "(" + " or ".join(options) + ")" if options else "False"

    def _string(self, schema: Mapping[str, Any], v: str) -> list[str]:
        out = []
        if "minLength" in schema:
            n = schema["minLength"]
            out.append(f'{v} != ""' if n == 1 else f"len({v}) >= {int(n)}")
        if "maxLength" in schema:
            out.append(f"len({v}) <= {int(schema['maxLength'])}")
        if "pattern" in schema:
            out.append(f"{self.constant(re.compile(schema['pattern']))}.search({v}) is not None")
        return out

    def _number(self, schema: Mapping[str, Any], v: str) -> list[str]:
        out = []
        for key, op in (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<")):
            if key in schema:
                bound = schema[key]
                if type(bound) not in (int, float):
                    return ["False"]  # draft-04 boolean exclusive bounds: not this compiler's
                out.append(f"{v} {op} {bound!r}")
        return out

    def _dispatch(self, properties: Mapping[str, Any], extra: Any) -> str:
        """A function that checks each member the object *has* through a table of the members'
        checks (``extra`` for the others): for a schema with hundreds of optional members (ASFF's
        ``ResourceDetails``) and a document with two, two look-ups instead of hundreds."""
        table = self.name("t")
        entries = ", ".join(f"{key!r}: {self.function(sub)}" for key, sub in properties.items())
        self.tables.append(f"{table} = {{{entries}}}\n")
        default = "_no" if extra is False else "_yes" if extra is True else self.function(extra)
        name = self.name("d")
        self.functions.append(f"def {name}(x):\n    get = {table}.get\n    for k, w in x.items():\n"
                              f"        if not get(k, {default})(w):\n            return False\n    return True\n")
        return name

    def _object(self, schema: Mapping[str, Any], v: str) -> list[str]:
        out = []
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = frozenset(schema.get("required") or ())
        extra = schema.get("additionalProperties", True)
        if required and extra is False and required == set(properties) and len(properties) <= DISPATCH_OVER:
            # every member named and required, no other: one comparison of the key sets
            out.append(f"{v}.keys() == {self.constant(required)}")
            extra = True
        elif len(required) == 1:
            # jsonschema's own test (``name in instance``); a required-only ``anyOf`` branch
            # (OCSF's "uid or name") becomes ``'uid' in x or 'name' in x``, no key-set view
            out.append(f"{next(iter(required))!r} in {v}")
        elif required:
            out.append(f"{v}.keys() >= {self.constant(required)}")
        if len(properties) > DISPATCH_OVER:
            out.append(f"{self._dispatch(properties, extra)}({v})")
            extra, properties = True, {}  # the table checks every member, named or not
        if extra is False:
            out.append(f"{v}.keys() <= {self.constant(frozenset(properties))}" if properties else f"not {v}")
        elif extra is not True:
            check = self.function(extra)
            if properties:
                out.append(f"all({check}({v}[k]) for k in {v}.keys() - {self.constant(frozenset(properties))})")
            else:
                out.append(self._each(extra, f"{v}.values()", check))
        if "propertyNames" in schema:
            out.append(self._each(schema["propertyNames"], v))
        if "minProperties" in schema:
            out.append(f"len({v}) >= {int(schema['minProperties'])}")
        if "maxProperties" in schema:
            out.append(f"len({v}) <= {int(schema['maxProperties'])}")
        for key, sub in properties.items():
            w = self.name("v")
            body = self.expr(sub, w)
            if body == "True":
                continue
            if key in required:  # present: the keys test above comes first in the chain
                out.append(f"(({w} := {v}[{key!r}]) is not _M and {body})")
            else:
                out.append(f"(({w} := {v}.get({key!r}, _M)) is _M or {body})")
        return out

    def _each(self, schema: Any, items: str, function: str | None = None) -> str:
        """Every value of the iterable ``items`` is accepted by ``schema``. A bare type (strings,
        perhaps non-empty) is one set of the items' exact types, tested in C, not a call per item."""
        keys = set(schema) - _ANNOTATIONS if isinstance(schema, Mapping) else None
        kind = schema.get("type") if keys else None
        if isinstance(kind, str) and kind in _TYPES and (keys == {"type"} or (
                kind == "string" and keys == {"type", "minLength"} and type(schema["minLength"]) is int
                and schema["minLength"] in (0, 1))):
            test = f"{{*map(type, {items})}} <= {self.constant(_TYPES[kind])}"
            return f'({test} and "" not in {items})' if schema.get("minLength") == 1 else test
        return f"all(map({function or self.function(schema)}, {items}))"

    def _array(self, schema: Mapping[str, Any], v: str) -> list[str]:
        out = []
        if "minItems" in schema:
            out.append(f"len({v}) >= {int(schema['minItems'])}")
        if "maxItems" in schema:
            out.append(f"len({v}) <= {int(schema['maxItems'])}")
        if "items" in schema:
            items = schema["items"]
            if not isinstance(items, (Mapping, bool)):
                return ["False"]  # draft-07 tuple form: the full validator's
            if items is not True:
                out.append(self._each(items, v))
        if "contains" in schema:
            out.append(f"any(map({self.function(schema['contains'])}, {v}))")
        return out


def compile_check(schema: Mapping[str, Any]) -> Callable[[Any], bool]:
    """``schema`` as a function that returns True only for documents the schema accepts."""
    compiler = _Compiler(schema)
    inner = compiler.function(schema)
    # Whatever goes wrong in a check (a document nested past the recursion limit) is "not sure".
    compiler.functions.append(f"def check(x):\n    try:\n        return {inner}(x)\n    except Exception:\n"
                              "        return False\n")
    root = "check"
    source = "\n".join(compiler.functions + compiler.tables)
    namespace = dict(compiler.namespace)
    exec(compile(source, f"<schema check {schema.get('$id') or schema.get('title') or ''}>", "exec"), namespace)  # our own generated code, from our own schema
    check: Callable[[Any], bool] = namespace[root]
    check.__doc__ = source  # the generated code, for a reader who wants to see it
    return check
