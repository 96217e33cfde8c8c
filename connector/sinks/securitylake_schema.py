"""The Parquet schema of the Security Lake sink: OCSF 1.8.0 Detection Finding (class 2004) as
``connector/render/ocsf.py`` writes it, and the two conversions a document makes through it.

Why a fixed schema and not one inferred per batch. Security Lake's Glue crawler reads the
Parquet files of a custom source and keeps one table schema for all of them; Athena then reads
every file with that schema. OCSF attributes are mostly optional, so a schema inferred from each
batch would differ from file to file — a struct without ``session`` here, a ``src_endpoint``
holding only ``domain`` there, an empty list typed ``null`` — and the crawler would version or
merge the table each time, or (a field seen as a string in one file and a struct in another)
fail. So every object has exactly :data:`SCHEMA`: each attribute the renderer can emit, typed as
OCSF types it (``integer_t`` → int32, ``long_t``/``timestamp_t`` → int64 epoch milliseconds,
``boolean_t`` → bool, every string type → UTF-8 string, objects → structs, arrays → lists), in
the renderer's order, with absent optional attributes as nulls. ``unmapped`` is an OCSF
``object`` (free-form) and each feature of the connector adds to it (triage, enrichment,
correlation), so it is one JSON string column: a new key there changes no table schema. Partition values (``region``, ``accountId``,
``eventDay``) are in the object's key, not in columns (the crawler adds them as partition
columns; a column of the same name would clash).

The schema only covers what the renderer emits, so a field added there must be added here:
:func:`check_document` refuses a document with an attribute the schema lacks, or a value of the
wrong type, instead of letting pyarrow drop it silently (it ignores unknown keys), and
``tests/integration/test_securitylake_sink.py`` round-trips every mapping case and checks each
column's type against the OCSF JSON Schema in ``../shared``.

:func:`document_from_row` turns a row read back from Parquet into the JSON document again (nulls
dropped, maps as objects): equal to what was written, less its null values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

STRING = pa.string()
INT = pa.int32()  # OCSF integer_t
LONG = pa.int64()  # OCSF long_t and timestamp_t (epoch milliseconds)
BOOL = pa.bool_()
INT32_RANGE = (-(2**31), 2**31 - 1)


def _struct(**fields: pa.DataType) -> pa.StructType:
    """A struct of nullable fields in the order given (OCSF optional attributes)."""
    return pa.struct([pa.field(name, kind) for name, kind in fields.items()])


def _list(kind: pa.DataType) -> pa.ListType:
    return pa.list_(kind)


_ACCOUNT = _struct(uid=STRING, type_id=INT, type=STRING)
_API = _struct(
    operation=STRING,
    service=_struct(name=STRING),
    request=_struct(uid=STRING),
    response=_struct(error=STRING, error_message=STRING),
)
_USER = _struct(
    type_id=INT, type=STRING, account=_ACCOUNT, uid=STRING, uid_alt=STRING, name=STRING, domain=STRING,
    programmatic_credentials=_list(_struct(uid=STRING, type=STRING)),
)
_ACTOR = _struct(user=_USER, app_name=STRING, session=_struct(issuer=STRING, is_mfa=BOOL, credential_uid=STRING))
_EVIDENCE = _struct(
    actor=_ACTOR, api=_API, src_endpoint=_struct(uid=STRING, ip=STRING, domain=STRING),
    http_request=_struct(user_agent=STRING),
)
_NAMED = _struct(uid=STRING, name=STRING)
_FINDING_INFO = _struct(
    uid=STRING, title=STRING, desc=STRING, types=_list(STRING),
    analytic=_struct(uid=STRING, name=STRING, type_id=INT, type=STRING, version=STRING),
    attacks=_list(_struct(version=STRING, tactic=_NAMED, technique=_NAMED, sub_technique=_NAMED)),
    created_time=LONG, modified_time=LONG, first_seen_time=LONG, last_seen_time=LONG,
    data_sources=_list(STRING), src_url=STRING,
)
_METADATA = _struct(
    version=STRING, profiles=_list(STRING),
    product=_struct(uid=STRING, name=STRING, vendor_name=STRING, version=STRING),
    uid=STRING, event_code=STRING, original_event_uid=STRING, original_time=STRING, log_provider=STRING,
    tenant_uid=STRING,
)
_CLOUD = _struct(provider=STRING, region=STRING, cloud_partition=STRING, account=_ACCOUNT)
_RESOURCE = _struct(
    uid=STRING, uid_alt=STRING, name=STRING, type=STRING, region=STRING, cloud_partition=STRING,
    role_id=INT, role=STRING,
)
_REMEDIATION = _struct(
    desc=STRING, references=_list(STRING), kb_article_list=_list(_struct(title=STRING, src_url=STRING)),
)
#: Every object the sink writes has exactly this schema (see the module docstring).
SCHEMA = pa.schema([
    pa.field("activity_id", INT), pa.field("activity_name", STRING),
    pa.field("category_uid", INT), pa.field("category_name", STRING),
    pa.field("class_uid", INT), pa.field("class_name", STRING),
    pa.field("type_uid", LONG), pa.field("type_name", STRING),
    pa.field("severity_id", INT), pa.field("severity", STRING),
    pa.field("status_id", INT), pa.field("status", STRING), pa.field("status_code", STRING),
    pa.field("status_detail", STRING),
    pa.field("time", LONG), pa.field("timezone_offset", INT),
    pa.field("message", STRING), pa.field("is_alert", BOOL),
    pa.field("confidence_id", INT), pa.field("confidence", STRING),
    pa.field("finding_info", _FINDING_INFO),
    pa.field("metadata", _METADATA),
    pa.field("cloud", _CLOUD),
    pa.field("api", _API),
    pa.field("evidences", _list(_EVIDENCE)),
    pa.field("resources", _list(_RESOURCE)),
    pa.field("remediation", _REMEDIATION),
    pa.field("observables", _list(_struct(name=STRING, type_id=INT, type=STRING, value=STRING))),
    pa.field("raw_data", STRING),
    pa.field("unmapped", STRING),  # JSON text (see the module docstring)
])


class SchemaMismatch(ValueError):
    """A document does not fit :data:`SCHEMA`; the message names the attribute's path."""


def _fields(kind: pa.StructType | pa.Schema) -> dict[str, pa.DataType]:
    return {field.name: field.type for field in kind}


def _check(value: Any, kind: pa.DataType, path: str) -> None:
    if value is None:
        return
    if pa.types.is_struct(kind):
        if not isinstance(value, Mapping):
            raise SchemaMismatch(f"{path}: expected an object, got {type(value).__name__}")
        fields = _fields(kind)
        for key, item in value.items():
            if key not in fields:
                raise SchemaMismatch(f"{path}.{key}: not in the Security Lake Parquet schema")
            _check(item, fields[key], f"{path}.{key}")
    elif pa.types.is_map(kind):
        if not isinstance(value, Mapping):
            raise SchemaMismatch(f"{path}: expected an object, got {type(value).__name__}")
        for key, item in value.items():
            _check(key, kind.key_type, f"{path} key")
            _check(item, kind.item_type, f"{path}.{key}")
    elif pa.types.is_list(kind):
        if not isinstance(value, list | tuple):
            raise SchemaMismatch(f"{path}: expected an array, got {type(value).__name__}")
        for index, item in enumerate(value):
            _check(item, kind.value_type, f"{path}[{index}]")
    elif pa.types.is_boolean(kind):
        if not isinstance(value, bool):
            raise SchemaMismatch(f"{path}: expected a boolean, got {type(value).__name__}")
    elif pa.types.is_integer(kind):
        if not isinstance(value, int) or isinstance(value, bool):
            raise SchemaMismatch(f"{path}: expected an integer, got {type(value).__name__}")
        if kind == INT and not INT32_RANGE[0] <= value <= INT32_RANGE[1]:
            raise SchemaMismatch(f"{path}: {value} does not fit a 32-bit integer")
    elif pa.types.is_string(kind):
        if not isinstance(value, str):
            raise SchemaMismatch(f"{path}: expected a string, got {type(value).__name__}")
    else:  # pragma: no cover - the schema above uses only the types handled here
        raise SchemaMismatch(f"{path}: no check for Arrow type {kind}")


#: Free-form objects kept as JSON text.
JSON_COLUMNS = frozenset({"unmapped"})


def check_document(document: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaMismatch` unless every attribute of ``document`` has a column of its type."""
    fields = _fields(SCHEMA)
    for key, value in document.items():
        if key not in fields:
            raise SchemaMismatch(f"{key}: not in the Security Lake Parquet schema")
        if key in JSON_COLUMNS:
            if not isinstance(value, Mapping):
                raise SchemaMismatch(f"{key}: expected an object, got {type(value).__name__}")
            continue
        _check(value, fields[key], key)


def row_from_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """A checked document as a row: the free-form objects as compact JSON text."""
    return {key: json.dumps(value, separators=(",", ":"), sort_keys=True) if key in JSON_COLUMNS else value
            for key, value in document.items()}


def _from_arrow(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_struct(kind):
        fields = _fields(kind)
        out = {key: _from_arrow(item, fields[key]) for key, item in value.items()}
        return {key: item for key, item in out.items() if item is not None}
    if pa.types.is_map(kind):
        return {key: _from_arrow(item, kind.item_type) for key, item in value}
    if pa.types.is_list(kind):
        return [_from_arrow(item, kind.value_type) for item in value]
    return value


def document_from_row(row: Mapping[str, Any], schema: pa.Schema = SCHEMA) -> dict[str, Any]:
    """A row of ``Table.to_pylist()`` → the OCSF JSON document (nulls dropped, maps as objects)."""
    fields = _fields(schema)
    out = {key: json.loads(value) if key in JSON_COLUMNS and value is not None else _from_arrow(value, fields[key])
           for key, value in row.items()}
    return {key: value for key, value in out.items() if value is not None}
