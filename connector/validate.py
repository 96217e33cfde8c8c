"""Validate rendered findings before any sink sees them.

A finding that Security Hub or a SOC's OCSF pipeline would reject should be caught here, with
the record's id, and dead-lettered — not discovered as a silent ``FailedFindings`` entry later.
ASFF is checked with botocore's own ``ParamValidator`` on the ``BatchImportFindings`` input
shape plus the documented length limits; OCSF against ``schemas/ocsf-detection-finding.schema.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import botocore.session
import fastjsonschema
import jsonschema
import orjson  # sizes at a tenth of json.dumps' cost
from botocore.validate import ParamValidator

from connector.errors import ValidationFailed
from connector.model import FindingFormat
from connector.paths import schemas_dir
from connector.schema_check import compile_check

#: Documented ASFF limits that botocore's validator does not enforce (it skips max lengths).
ASFF_LIMITS = {"Title": 256, "Description": 1024, "Id": 512, "GeneratorId": 512}
ASFF_MAX_BYTES = 240 * 1024


@lru_cache(maxsize=1)
def _asff_shape() -> Any:
    model = botocore.session.get_session().get_service_model("securityhub")
    return model.operation_model("BatchImportFindings").input_shape


def _ocsf_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((schemas_dir() / "ocsf-detection-finding.schema.json").read_text())
    return schema


@lru_cache(maxsize=1)
def _ocsf_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_ocsf_schema())


@lru_cache(maxsize=1)
def _ocsf_fast() -> Callable[[Any], Any]:
    """fastjsonschema compiles the schema to Python: ~12x faster than jsonschema (bench/), which
    made OCSF validation most of the cost of a finding. It knows drafts up to 07; the schema uses
    only keywords whose meaning is the same in 2020-12. Errors are still explained by jsonschema."""
    schema = dict(_ocsf_schema(), **{"$schema": "http://json-schema.org/draft-07/schema#"})
    return fastjsonschema.compile(schema)


@lru_cache(maxsize=1)
def _ocsf_quick() -> Callable[[Any], bool]:
    """The OCSF schema as a one-sided check (connector/schema_check.py): True proves a document
    valid at a fraction of fastjsonschema's cost; False defers to fastjsonschema and jsonschema."""
    return compile_check(_ocsf_schema())


#: Timestamps as the renderers write them (ISO 8601 with a zone); botocore also accepts other
#: forms, which a finding of ours never has, so a mismatch there falls back to botocore's verdict.
_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$"


#: Resource detail types the renderers write. The other ~300 (hundreds of shapes) compiled to
#: 240 MB of Python; they are ``false`` in the compiled schema, so a document holding one fails
#: the fast check and gets botocore's verdict instead: the same answer, only slower.
_COMPILED_DETAILS = frozenset({
    "Other", "AwsIamAccessKey",
    # the typed target details the mappings declare (asff_details; a test keeps this in step)
    "AwsEc2NetworkInterface", "AwsEc2NetworkAcl", "AwsEc2VpcPeeringConnection",
})


def asff_json_schema(shape: Any = None) -> dict[str, Any]:
    """botocore's model of ``AwsSecurityFinding`` as a JSON Schema, checking exactly what
    ``ParamValidator`` checks: required members, no unknown members, types, and ``min`` of
    lengths and values (botocore does not check ``max``, patterns or enums)."""
    finding = shape or _asff_shape().members["Findings"].member
    defs: dict[str, Any] = {}

    def convert(node: Any) -> dict[str, Any]:
        kind = node.type_name
        minimum = node.metadata.get("min")
        if kind == "structure":
            if node.name not in defs:
                defs[node.name] = {}  # placeholder first: shapes may refer to themselves
                keep = _COMPILED_DETAILS if node.name == "ResourceDetails" else None
                defs[node.name] = {
                    "type": "object",
                    "properties": {name: convert(member) if keep is None or name in keep else False
                                   for name, member in node.members.items()},
                    "required": list(node.metadata.get("required", [])),
                    "additionalProperties": False,
                }
            return {"$ref": f"#/definitions/{node.name}"}
        out: dict[str, Any]
        if kind == "list":
            out = {"type": "array", "items": convert(node.member)}
            if minimum is not None:
                out["minItems"] = minimum
        elif kind == "map":
            out = {"type": "object", "additionalProperties": convert(node.value), "propertyNames": convert(node.key)}
        elif kind == "string":
            out = {"type": "string"}
            if minimum is not None:
                out["minLength"] = minimum
        elif kind in ("integer", "long", "double", "float"):
            out = {"type": "integer" if kind in ("integer", "long") else "number"}
            if minimum is not None:
                out["minimum"] = minimum
        elif kind == "boolean":
            out = {"type": "boolean"}
        elif kind == "timestamp":
            out = {"type": "string", "pattern": _ISO_TIMESTAMP}
        else:  # blob, document: not in the finding shape; accept what botocore would judge
            out = {}
        return out

    root = convert(finding)
    return {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": defs, **root}


@lru_cache(maxsize=1)
def _asff_fast() -> Callable[[Any], Any]:
    """The ASFF shape compiled to Python by fastjsonschema: the same verdicts as botocore's
    ``ParamValidator`` (a test keeps them in agreement over every real and variant finding) at
    several times its speed; botocore still explains a failure."""
    return fastjsonschema.compile(asff_json_schema())


@lru_cache(maxsize=1)
def _asff_quick() -> Callable[[Any], bool]:
    """The same generated schema as a one-sided check: True only where fastjsonschema (and so
    botocore) accepts the document; False defers to them, so the verdict is theirs."""
    return compile_check(asff_json_schema())


def asff_shape_accepts(document: Mapping[str, Any]) -> bool:
    """True where botocore's ``ParamValidator`` accepts the finding (the compiled shape, same
    verdicts); the Security Hub sink checks each request with it instead of botocore's slower
    check, and asks ``ParamValidator`` only when this says no."""
    if _asff_quick()(document):
        return True
    try:
        _asff_fast()(document)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def import_request_report(documents: Sequence[Mapping[str, Any]]) -> str:
    """botocore's ``ParamValidator`` report on ``BatchImportFindings(Findings=documents)``, "" when
    it accepts them; asked only of a request the compiled shape does not accept outright."""
    if all(asff_shape_accepts(document) for document in documents):
        return ""
    report = ParamValidator().validate({"Findings": list(documents)}, _asff_shape())
    return str(report.generate_report()) if report.has_errors() else ""


def _size(document: Mapping[str, Any]) -> int:
    return len(orjson.dumps(document, default=str))


def _encoding_errors(document: Mapping[str, Any]) -> tuple[list[str], int]:
    """A document every sink can send is UTF-8 JSON: a lone surrogate (``"\\ud800"`` read by the
    standard library's parser, which large log files go through) is not, and would fail the
    sink's encoder instead of this record. Returns (errors, size in bytes)."""
    try:
        return [], _size(document)
    except orjson.JSONEncodeError as exc:
        return [f"not encodable as UTF-8 JSON: {exc}"], 0


def asff_errors(document: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    try:
        _asff_quick()(document) or _asff_fast()(document)
    except fastjsonschema.JsonSchemaException:
        report = ParamValidator().validate({"Findings": [document]}, _asff_shape())
        if report.has_errors():
            # every line is an error (the "Parameter validation failed" header is not in the
            # report): skipping the first line let a finding with exactly one error pass
            errors = [line.strip() for line in report.generate_report().splitlines() if line.strip()]
    for key, limit in ASFF_LIMITS.items():
        value = document.get(key)
        if isinstance(value, str) and len(value) > limit:
            errors.append(f"{key}: {len(value)} characters > {limit}")
    remediation = document.get("Remediation")
    recommendation = remediation.get("Recommendation") if isinstance(remediation, Mapping) else None
    text = recommendation.get("Text", "") if isinstance(recommendation, Mapping) else ""
    if isinstance(text, str) and len(text) > 512:  # another type: botocore has said so above
        errors.append(f"Remediation.Recommendation.Text: {len(text)} characters > 512")
    fields = document.get("ProductFields", {})
    if isinstance(fields, Mapping) and len(fields) > 50:
        errors.append("ProductFields: more than 50 pairs")
    encoding, size = _encoding_errors(document)
    errors += encoding
    if size > ASFF_MAX_BYTES:
        errors.append(f"finding is {size} bytes > 240 KB")
    return errors


def _type_uid_consistent(document: Mapping[str, Any]) -> bool:
    """``type_uid`` = ``class_uid`` * 100 + ``activity_id``; a damaged operand (None, a list) is
    inconsistent rather than a TypeError out of the validator."""
    try:
        return bool(document.get("type_uid") == document.get("class_uid", 0) * 100 + document.get("activity_id", 0))
    except TypeError:
        return False


def ocsf_errors(document: Mapping[str, Any]) -> list[str]:
    fast_ok = _ocsf_quick()(document)
    if not fast_ok:
        try:
            _ocsf_fast()(document)
            fast_ok = True
        except fastjsonschema.JsonSchemaException:
            pass
    encoding, _ = _encoding_errors(document)
    if encoding:
        return encoding
    consistent = _type_uid_consistent(document)
    if fast_ok and consistent:
        return []
    errors = sorted(_ocsf_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    out = []
    for error in errors:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        out.append(f"{where}: {error.message[:300]}")
    if not consistent:
        out.append("type_uid must be class_uid * 100 + activity_id")
    return out


VALIDATORS: dict[FindingFormat, Callable[[Mapping[str, Any]], list[str]]] = {"asff": asff_errors, "ocsf": ocsf_errors}


def validate(format_name: FindingFormat, document: Mapping[str, Any], *, record_id: str) -> None:
    """Raise ``ValidationFailed`` naming the record and the first few problems."""
    errors = VALIDATORS[format_name](document)
    if errors:
        raise ValidationFailed(f"{format_name.upper()} invalid: " + "; ".join(errors[:5]), record_id=record_id)
