"""The ``_bulk`` request body and its answer, written here rather than by opensearch-py's helpers.

Why not ``helpers.streaming_bulk``: it serialises every action with the standard library's
``json`` (then encodes each line again to measure it, joins, and encodes the body once more),
which was most of the sink's own CPU on a 2-core node (bench/opensearch_bulk.py). Here each
item is serialised once, with orjson, to the two bytes lines it is sent as; the same bytes are
measured for the request size limit, joined into the body, and kept for a retry of just the items
that failed, which then are not serialised again.

The answer's ``items`` come in the order of the request (the bulk API's contract), so the
outcome of the n-th line pair is the n-th item; no lookup by index and id.
https://docs.opensearch.org/latest/api-reference/document-apis/bulk/
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import orjson

from connector.errors import ConnectorError

#: Items per request at most; the byte limit (``opensearch.bulk_max_bytes``) usually cuts first.
CHUNK_ITEMS = 5000


class EncodeError(ConnectorError):
    """A document that cannot be written as JSON (the finding id says which)."""


def _default(value: object) -> object:
    """What orjson does not know and opensearch-py's serializer did: decimals, sets."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, sort_keys: bool = False, default: Callable[[Any], object] = _default) -> bytes:
    """``value`` as compact UTF-8 JSON. orjson refuses what the standard library writes (integers
    beyond 64 bits, lone surrogates): those few go through ``json`` instead."""
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except orjson.JSONEncodeError:
        text = json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
        return text.encode("utf-8", "surrogatepass")


def update_lines(index: str, doc_id: str, doc: Mapping[str, Any], retry_on_conflict: int) -> bytes:
    """The action line and the document line of a partial update that creates the document when
    missing (``doc_as_upsert``), newline-terminated, as they go into the body."""
    try:
        action = dumps({"update": {"_index": index, "_id": doc_id, "retry_on_conflict": retry_on_conflict}})
        return action + b"\n" + dumps({"doc": doc, "doc_as_upsert": True}) + b"\n"
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"finding {doc_id}: document is not JSON serialisable: {exc}") from exc


def chunks(items: Iterable[tuple[int, bytes]], max_bytes: int,
           max_items: int = CHUNK_ITEMS) -> Iterator[list[tuple[int, bytes]]]:
    """``items`` (position, lines) cut into requests of at most ``max_bytes`` and ``max_items``;
    an item bigger than ``max_bytes`` goes alone (the node then says whether it takes it)."""
    chunk: list[tuple[int, bytes]] = []
    size = 0
    for pos, lines in items:
        if chunk and (size + len(lines) > max_bytes or len(chunk) >= max_items):
            yield chunk
            chunk, size = [], 0
        chunk.append((pos, lines))
        size += len(lines)
    if chunk:
        yield chunk


def results(answer: Mapping[str, Any], expected: int) -> list[Mapping[str, Any]]:
    """The per-item results of a bulk answer, in request order; fewer than ``expected`` when the
    answer was cut short (the caller treats the missing ones as not answered)."""
    items = answer.get("items")
    if not isinstance(items, list):
        return []
    out = []
    for item in items[:expected]:
        result = next(iter(item.values()), None) if isinstance(item, Mapping) else None
        out.append(result if isinstance(result, Mapping) else {})
    return out
