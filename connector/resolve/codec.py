"""Rendered findings to JSON and back, for the shared resolution store.

An open finding waits in DynamoDB until its restore arrives, maybe in another replica or after
a restart, which then sends its resolved update: that replica needs the finding exactly as it
was rendered (the enrichment it had may no longer be readable: a deleted NAT gateway is gone
from DescribeNatGateways after about an hour). The codec follows the model's type hints
(frozen dataclasses, tuples, mappings, ``datetime``, ``Severity``), so a new field of
``connector/model.py`` needs no change here; decoding builds only model types, never code
(no pickle: the table is shared state, not trusted input for an interpreter).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import gzip
import json
import types
import typing
from datetime import datetime
from typing import Any

from connector import model
from connector.model import RenderedFinding


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, typing.Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(model))


def _decode(hint: Any, data: Any) -> Any:
    if hint is Any or data is None:
        return data
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(options[0], data) if len(options) == 1 else data
    if origin is typing.Literal:
        return data
    if origin is tuple:
        args = typing.get_args(hint)
        return tuple(_decode(args[0], v) for v in data) if args and args[-1] is Ellipsis else tuple(data)
    if origin in (dict, typing.Mapping, typing.get_origin(typing.Mapping[str, Any])):
        value_hint = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {k: _decode(value_hint, v) for k, v in data.items()}
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            hints = _hints(hint)
            # Only the constructor's fields: a derived one (``init=False``, e.g. the event's
            # ``time_text``) is made again by the class, not passed in.
            return hint(**{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(hint)
                           if f.init and f.name in data})
        if issubclass(hint, datetime):
            return datetime.fromisoformat(data)
        if issubclass(hint, enum.Enum):
            return hint(data)
    return data


def dumps(rendered: list[RenderedFinding]) -> bytes:
    """The renderings of one finding, gzip-compressed JSON (a DynamoDB item holds 400 KB)."""
    return gzip.compress(json.dumps([_encode(r) for r in rendered], separators=(",", ":")).encode(), 6)


def loads(blob: bytes) -> list[RenderedFinding]:
    return [_decode(RenderedFinding, item) for item in json.loads(gzip.decompress(blob))]
