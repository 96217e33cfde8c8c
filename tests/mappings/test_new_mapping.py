"""A new event is one mapping file plus its cases: nothing else changes.

The shipped mappings are copied to a temporary directory with a sixth file
(tests/mappings/data/DeleteVpcEndpoints.yaml); selection, findings, the shared validators,
``connector map``, the demo samples and the deploy filters all pick it up from there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connector.config import LimitSettings
from connector.envelopes import DecodedRecord, Decoder
from connector.factory import FindingFactory
from connector.mapping.cases import CaseBook
from connector.mapping.filters import cloudwatch_filter_pattern, eventbridge_pattern
from connector.paths import mappings_dir
from connector.select import Selector
from tests.conftest import REPO
from tests.deploy.test_deploy import check_filters

NEW = Path(__file__).parent / "data" / "DeleteVpcEndpoints.yaml"
NAME = NEW.stem


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("mappings") / "mappings"
    shutil.copytree(mappings_dir(), target)
    shutil.copy(NEW, target / NEW.name)
    return target


@pytest.fixture(scope="module")
def book(directory: Path) -> CaseBook:
    return CaseBook.load(directory)


def test_its_cases_are_built_from_its_file(book: CaseBook) -> None:
    assert NAME in book.events and len(book.events) == len(CaseBook.load().events) + 1
    variants = book.variants(NAME)
    assert {"success", "failed", "dry-run", "root", "aws-cn", "flat-request"} <= set(variants)
    assert variants["success"]["eventID"] == "e6000000-0000-4000-8000-000000000001"
    assert variants["aws-cn"]["userIdentity"]["arn"].startswith("arn:aws-cn:")


def test_selection_and_findings(book: CaseBook, directory: Path) -> None:
    factory = FindingFactory.load(str(directory))
    selector = Selector(factory.event_names)
    decoder = Decoder(LimitSettings(), prefilter=selector.pattern)
    body = json.dumps({"Records": [case.record for case in book.cases(NAME)]}).encode()
    decoded = [item for item in decoder.decode(body, origin="test") if isinstance(item, DecodedRecord)]
    selected = [item.record for item in decoded if selector.matches(item.record)]
    assert len(selected) == len(book.variant_specs(NAME))
    for case in book.cases(NAME):
        rendered = {r.format: r for r in factory.render(case.record, origin=case.variant)}
        assert set(rendered) == {"asff", "ocsf"}
        asff = rendered["asff"].document
        assert asff["GeneratorId"] == "ec2-delete-vpc-endpoints"
        if case.resource_id:
            assert asff["Resources"][0]["Id"].endswith(f":vpc-endpoint/{case.resource_id}")
            assert case.resource_id in rendered["ocsf"].document["remediation"]["desc"]
    # The shipped mappings do not know it: the default factory produces nothing for it.
    assert not Selector(FindingFactory.load().event_names).matches(book.case(NAME, "success").record)


def test_the_shared_validators_accept_it_strictly(book: CaseBook, directory: Path, shared_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "cases.jsonl"
    source.write_text("".join(json.dumps(case.record) + "\n" for case in book.cases(NAME)))
    count = len(book.variant_specs(NAME))
    for fmt, tool in (("asff", "check_asff.py"), ("ocsf", "check_ocsf.py")):
        mapped = subprocess.run([sys.executable, "-m", "connector", "map", str(source), "--mappings", str(directory), "--format", fmt],
                                capture_output=True, text=True, timeout=120)
        assert mapped.returncode == 0, mapped.stderr
        out = tmp_path / f"{fmt}.jsonl"
        out.write_text(mapped.stdout)
        assert len(mapped.stdout.splitlines()) == count
        checked = subprocess.run([sys.executable, str(shared_dir / "tools" / tool), "--strict", str(out)], capture_output=True, text=True)
        assert checked.returncode == 0 and f"{count} passed, 0 failed" in checked.stdout, checked.stdout[-3000:]


def test_the_demo_sends_it(book: CaseBook) -> None:
    names = [record["eventName"] for record in book.demo_records()]
    assert sorted(names) == sorted(book.events) and NAME in names


def test_the_deploy_filters_follow_the_mappings(directory: Path) -> None:
    from connector.mapping import load_mappings

    mappings = load_mappings(directory)
    assert NAME in eventbridge_pattern(mappings)["detail"]["eventName"]
    assert f'($.eventName = "{NAME}")' in cloudwatch_filter_pattern(mappings)
    # deploy/ was not updated for it, and the deploy check says so.
    with pytest.raises(AssertionError):
        check_filters(directory, REPO / "deploy")
