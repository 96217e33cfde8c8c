"""The one-sided compiled checks in front of the validators (connector/schema_check.py) keep the
validators' verdicts: every rendered finding, variant and real, is accepted by the quick check
(so it takes the fast path) and by the reference validator (jsonschema for OCSF, botocore's
``ParamValidator`` for ASFF); no damaged finding the reference rejects is accepted by it, and the
verdict of ``ocsf_errors``/``asff_errors`` is the reference's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from connector.factory import FindingFactory
from connector.validate import _asff_fast, _asff_quick, _ocsf_quick, _ocsf_validator, asff_errors, ocsf_errors
from tests.mappings.test_asff_compiled import botocore_ok
from tests.support.records import EVENTS, variants


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    factory = FindingFactory.load()
    out: dict[str, list[dict[str, Any]]] = {"asff": [], "ocsf": []}
    for event in EVENTS:
        for record in variants(event).values():
            for item in factory.render(record):
                out[item.format].append(dict(item.document))
    return out


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index)
            yield from _paths(value, (*path, index))


#: What a broken renderer or sink might put anywhere: wrong types, near-miss numbers, empties.
REPLACEMENTS: list[Any] = [None, "", 1.0, True, 99, 10**15, [], {"x": "y"}]
_DELETE = object()


def _damaged(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The document with one change at a time, in place (restored after each yield)."""
    for path in list(_paths(document)):
        parent: Any = document
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        old = parent[key]
        for new in [_DELETE, *REPLACEMENTS]:
            if new is _DELETE:
                if isinstance(parent, list):
                    continue
                del parent[key]
            else:
                parent[key] = new
            yield f"{path}={'(deleted)' if new is _DELETE else new!r}", document
            parent[key] = old
        if isinstance(old, dict):
            old["zz_unknown"] = "x"
            yield f"{path}+unknown", document
            del old["zz_unknown"]


def test_every_rendered_finding_takes_the_fast_path(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert len(rendered["ocsf"]) >= 5 * 15
    for document in rendered["ocsf"]:
        assert _ocsf_quick()(document) and _ocsf_validator().is_valid(document), document["finding_info"]["uid"]
    for document in rendered["asff"]:
        assert _asff_quick()(document) and botocore_ok(document), document["Id"]


def test_real_records_take_the_fast_path(corpus_dir: Path) -> None:
    from tests.mappings.test_corpus_findings import _map_file

    factory = FindingFactory.load()
    items = [r for path in sorted((corpus_dir / "events").rglob("*.json")) for r in _map_file(factory, path)]
    assert items
    for item in items:
        document = dict(item.document)
        if item.format == "ocsf":
            assert _ocsf_quick()(document) and _ocsf_validator().is_valid(document), item.finding_id
        else:
            assert _asff_quick()(document) and botocore_ok(document), item.finding_id


def _type_uid_ok(document: dict[str, Any]) -> bool:
    try:
        return bool(document.get("type_uid") == document.get("class_uid", 0) * 100 + document.get("activity_id", 0))
    except TypeError:
        return False


def test_no_damaged_ocsf_finding_passes_that_jsonschema_rejects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    documents = rendered["ocsf"]
    checked = accepted = 0
    for document in (documents[0], documents[-1]):
        for what, damaged in _damaged(document):
            reference = _ocsf_validator().is_valid(damaged)
            quick = _ocsf_quick()(damaged)
            assert not quick or reference, what
            if quick or checked % 5 == 0:  # the others take jsonschema's path, as before
                assert (ocsf_errors(damaged) == []) == (reference and _type_uid_ok(damaged)), what
            checked += 1
            accepted += quick
    assert checked > 1000 and accepted > 50  # the damage reached every kind of node, some harmless


def test_no_damaged_asff_finding_passes_that_botocore_rejects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    documents = rendered["asff"]
    checked = accepted = 0
    for document in (documents[0], documents[-1]):
        for what, damaged in _damaged(document):
            reference = botocore_ok(damaged)
            quick = _asff_quick()(damaged)
            assert not quick or reference, what
            if quick:
                try:
                    _asff_fast()(damaged)
                except fastjsonschema.JsonSchemaException:  # pragma: no cover - the failure this test is for
                    pytest.fail(f"quick accepted what the compiled schema rejects: {what}")
            errors = [e for e in asff_errors(damaged) if "characters >" not in e and "pairs" not in e]
            assert (errors == []) == reference, what
            checked += 1
            accepted += quick
    assert checked > 1000 and accepted > 50
