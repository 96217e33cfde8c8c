"""Golden findings: per event, the expected ASFF and OCSF for each variant.

The files under tests/mappings/golden/ were generated once, read by hand (ids, titles, severity,
resources, remediation commands) and committed; a change in output must be reviewed the same way.
Regenerate deliberately with ``UPDATE_GOLDEN=1 python -m pytest tests/mappings/test_golden.py``
and read the diff before committing it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.factory import FindingFactory
from tests.support.records import BOOK

GOLDEN = Path(__file__).parent / "golden"
#: Every variant marked ``golden`` in mappings/ (common.yaml or the mapping's own cases).
CASES = [(case.event_name, case.variant) for case in BOOK.cases() if case.golden]


#: The render time golden files are made at (ASFF UpdatedAt, OCSF finding_info.modified_time).
RENDERED_AT = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def factory() -> FindingFactory:
    return FindingFactory.load(clock=lambda: RENDERED_AT)


@pytest.mark.parametrize(("event", "variant"), CASES, ids=[f"{e}-{v}" for e, v in CASES])
def test_golden(factory: FindingFactory, event: str, variant: str) -> None:
    record = BOOK.case(event, variant).record
    rendered = {r.format: r.document for r in factory.render(record, origin="golden")}
    for fmt, document in rendered.items():
        document = dict(document)
        # The product version changes with every release; the rest must not change unreviewed.
        if fmt == "ocsf":
            document["metadata"] = {k: v for k, v in document["metadata"].items() if k != "product"}
        path = GOLDEN / event / f"{variant}.{fmt}.json"
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden file {path}; generate with UPDATE_GOLDEN=1 and review it"
        assert json.loads(path.read_text()) == json.loads(text), f"{path} differs: review and regenerate"


def test_every_golden_file_belongs_to_a_case() -> None:
    """A golden file whose case was removed or renamed must not linger unreviewed."""
    expected = {GOLDEN / event / f"{variant}.{fmt}.json" for event, variant in CASES for fmt in ("asff", "ocsf")}
    assert set(GOLDEN.glob("*/*.json")) == expected
