"""The compiled ASFF check (a JSON Schema generated from botocore's model) gives botocore's
``ParamValidator`` verdict on every finding we render, real and variant, and on damaged ones."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from botocore.validate import ParamValidator

from connector.factory import FindingFactory
from connector.validate import _asff_fast, _asff_shape
from tests.support.records import EVENTS, variants


def botocore_ok(document: dict[str, Any]) -> bool:
    return not ParamValidator().validate({"Findings": [document]}, _asff_shape()).has_errors()


def compiled_ok(document: dict[str, Any]) -> bool:
    try:
        _asff_fast()(document)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def asff_documents() -> list[dict[str, Any]]:
    factory = FindingFactory.load()
    return [dict(r.document) for event in EVENTS for record in variants(event).values()
            for r in factory.render(record) if r.format == "asff"]


def corpus_documents(corpus_dir: Path) -> list[dict[str, Any]]:
    from tests.mappings.test_corpus_findings import _map_file

    factory = FindingFactory.load()
    return [dict(r.document) for path in sorted((corpus_dir / "events").rglob("*.json"))
            for r in _map_file(factory, path) if r.format == "asff"]


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing required": lambda d: d.pop("Title"),
    "unknown member": lambda d: d.update(Colour="red"),
    "wrong type": lambda d: d.update(Title=5),
    "nested unknown": lambda d: d["Resources"][0].update(Owner="x"),
    "nested missing": lambda d: d["Resources"][0].pop("Type"),
    "list of wrong type": lambda d: d.update(Types="TTPs"),
    "map value type": lambda d: d["ProductFields"].update(n=1),
    "severity type": lambda d: d["Severity"].update(Label=["HIGH"]),
    "timestamp type": lambda d: d.update(UpdatedAt=12),
    "number type": lambda d: d["Severity"].update(Normalized="70"),
    "unchanged": lambda d: None,
}


def test_every_rendered_finding_gets_the_same_verdict() -> None:
    documents = asff_documents()
    assert len(documents) >= 5 * 15
    for document in documents:
        assert compiled_ok(document) and botocore_ok(document), document["Id"]


def test_real_records_get_the_same_verdict(corpus_dir: Path) -> None:
    documents = corpus_documents(corpus_dir)
    assert documents
    for document in documents:
        assert compiled_ok(document) == botocore_ok(document) is True, document["Id"]


@pytest.mark.parametrize("name", MUTATIONS)
def test_damaged_findings_get_the_same_verdict(name: str) -> None:
    for document in asff_documents()[:: 7]:
        damaged = copy.deepcopy(document)
        MUTATIONS[name](damaged)
        assert compiled_ok(damaged) == botocore_ok(damaged), (name, document["Id"])
        assert compiled_ok(damaged) is (name == "unchanged")


def test_a_detail_type_left_out_of_the_compiled_schema_gets_botocores_verdict() -> None:
    from connector.validate import asff_errors

    document = copy.deepcopy(asff_documents()[0])
    document["Resources"][0]["Details"] = {"AwsEc2Instance": {"Type": "t3.micro"}}
    assert not compiled_ok(document) and botocore_ok(document)  # pruned: the fast check defers ...
    assert asff_errors(document) == []  # ... and the answer is botocore's
    document["Resources"][0]["Details"] = {"AwsEc2Instance": {"Colour": "red"}}
    assert asff_errors(document) and not botocore_ok(document)


def test_every_detail_type_the_mappings_declare_is_compiled() -> None:
    """A typed detail left pruned would send every finding of that event to botocore's slow path."""
    from connector.mapping import load_mappings
    from connector.validate import _COMPILED_DETAILS

    declared = {r.asff_type for m in load_mappings().values() for r in m.resources if r.details}
    assert declared == {"AwsEc2NetworkInterface", "AwsEc2NetworkAcl", "AwsEc2VpcPeeringConnection"}
    assert declared <= _COMPILED_DETAILS
    for document in asff_documents():
        if any(set(r.get("Details", {})) & declared for r in document["Resources"]):
            assert compiled_ok(document), document["Id"]
