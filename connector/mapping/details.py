"""Typed ASFF ``Resources[].Details`` for a mapping's resources, declared as data.

A mapping resource may carry ``asff_details``: the members of its ASFF detail type
(``AwsEc2NetworkAcl`` → ``AwsEc2NetworkAclDetails``) whose leaves are single ``"{value}"``
references. At load the declaration is checked against botocore's Security Hub model (each member
must exist; a leaf's type — string, integer, boolean — comes from the model) and every value it
names must have a strict format. When a finding is built each leaf is filled with its value only if
the value is present and matches its format, then converted to the model's type; anything absent or
malformed is left out (an empty structure or list disappears), so ``Details`` holds only what the
record (or the enrichment) actually said, never a placeholder.
See https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_ResourceDetails.html
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from connector.errors import MappingFileError
from connector.mapping.formats import matches

_LEAF = re.compile(r"^\{([A-Za-z][A-Za-z0-9_]*)\}$")
#: botocore shape type → the leaf kinds a value can be converted to.
_SCALARS = {"string": "string", "integer": "integer", "long": "integer", "boolean": "boolean"}


@dataclass(frozen=True, slots=True)
class Leaf:
    name: str  # the value it takes
    kind: str  # "string" | "integer" | "boolean"


#: A compiled declaration: a dict of members, a one-element list (each entry), or a leaf.
DetailsNode = Leaf | dict[str, "DetailsNode"] | list["DetailsNode"]


@lru_cache(maxsize=1)
def _resource_details_shape() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("securityhub").shape_for("ResourceDetails")


def compile_details(asff_type: str, declared: Mapping[str, Any], formats: Mapping[str, str], *,
                    file: str, where: str) -> dict[str, DetailsNode]:
    """The declaration checked against botocore's model of ``ResourceDetails.<asff_type>``."""
    members = _resource_details_shape().members
    if asff_type == "Other" or asff_type not in members:
        raise MappingFileError(file, where, f"ASFF has no typed details for {asff_type!r} (use details_other for Other)")

    def walk(node: Any, shape: Any, path: str) -> DetailsNode:
        kind = shape.type_name
        if kind == "structure":
            if not isinstance(node, Mapping):
                raise MappingFileError(file, path, f"{shape.name} is a structure")
            out: dict[str, DetailsNode] = {}
            for key, value in node.items():
                if key not in shape.members:
                    raise MappingFileError(file, f"{path}.{key}",
                                           f"{shape.name} has no member {key!r} (botocore's Security Hub model)")
                out[key] = walk(value, shape.members[key], f"{path}.{key}")
            return out
        if kind == "list":
            if not isinstance(node, list) or len(node) != 1:
                raise MappingFileError(file, path, f"{shape.name} is a list: declare one entry")
            return [walk(node[0], shape.member, f"{path}[0]")]
        match = _LEAF.match(node) if isinstance(node, str) else None
        if kind not in _SCALARS or match is None:
            raise MappingFileError(file, path, f"a {kind} member takes one value reference, e.g. \"{{vpcId}}\"")
        name = match.group(1)
        if name not in formats:
            raise MappingFileError(file, path, f"value {name!r} has no format (only well-formed values enter Details)")
        return Leaf(name, _SCALARS[kind])

    root = walk(declared, members[asff_type], where)
    assert isinstance(root, dict)
    return root


def _convert(leaf: Leaf, values: Mapping[str, str], formats: Mapping[str, str]) -> Any:
    value = values.get(leaf.name)
    if value is None or not matches(formats.get(leaf.name, ""), value):
        return None
    if leaf.kind == "integer":
        try:
            return int(value)
        except ValueError:
            return None
    if leaf.kind == "boolean":
        return {"true": True, "false": False}.get(value)
    return value


def fill_details(node: DetailsNode | Mapping[str, DetailsNode], values: Mapping[str, str],
                 formats: Mapping[str, str]) -> Any:
    """The declaration with the known, well-formed values; None where nothing is known."""
    if isinstance(node, Leaf):
        return _convert(node, values, formats)
    if isinstance(node, list):
        entry = fill_details(node[0], values, formats)
        return [entry] if entry is not None else None
    out = {key: filled for key, child in node.items() if (filled := fill_details(child, values, formats)) is not None}
    return out or None
