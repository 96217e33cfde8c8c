"""Every real record of the mapped events → exactly one ASFF and one OCSF finding that the
independent validators in ../shared/tools accept with no leniency; near misses → none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector.config import LimitSettings
from connector.envelopes import DecodedRecord, Decoder, Skipped
from connector.factory import FindingFactory
from connector.select import Selector
from tests.support.records import BOOK


@pytest.fixture(scope="module")
def factory() -> FindingFactory:
    return FindingFactory.load()


def _map_file(factory: FindingFactory, path: Path) -> list:
    selector = Selector(factory.event_names)
    decoder = Decoder(LimitSettings(), prefilter=selector.pattern)
    out = []
    for item in decoder.decode(path.read_bytes(), origin=str(path)):
        if isinstance(item, Skipped):  # dropped unparsed by the byte pre-filter: not a target
            continue
        assert isinstance(item, DecodedRecord), f"{path}: {item}"
        if selector.matches(item.record):
            out.extend(factory.render(item.record, origin=item.origin))
    return out


def _check(shared_dir: Path, tool: str, docs: list[dict], tmp_path: Path, *flags: str) -> str:
    path = tmp_path / f"{tool}.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    proc = subprocess.run(
        [sys.executable, str(shared_dir / "tools" / tool), *flags, str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(docs)} passed, 0 failed" in proc.stdout
    return proc.stdout


def test_every_corpus_event_gives_one_valid_finding_per_format(
    factory: FindingFactory, corpus_dir: Path, shared_dir: Path, tmp_path: Path
) -> None:
    referenced = BOOK.corpus_files(corpus_dir)
    files = [(event, path) for event, paths in referenced.items() for path in paths]
    assert files, "the mappings reference real records"
    asff, ocsf = [], []
    for event, path in files:
        rendered = _map_file(factory, path)
        assert sorted(r.format for r in rendered) == ["asff", "ocsf"], path
        assert rendered[0].finding.event.event_name == event
        asff += [r.document for r in rendered if r.format == "asff"]
        ocsf += [r.document for r in rendered if r.format == "ocsf"]
    _check(shared_dir, "check_asff.py", asff, tmp_path, "--strict", "--require-default-product")
    _check(shared_dir, "check_ocsf.py", ocsf, tmp_path, "--strict")


def test_every_real_record_of_a_mapped_event_is_referenced_by_its_mapping(corpus_dir: Path) -> None:
    """A record added to the corpus for a mapped event must be one of that mapping's cases."""
    referenced = {path for paths in BOOK.corpus_files(corpus_dir).values() for path in paths}
    present = {path for path in (corpus_dir / "events").glob("*/*.json") if path.parent.name in BOOK.events}
    assert present <= referenced, sorted(map(str, present - referenced))


def test_near_misses_give_no_finding(factory: FindingFactory, corpus_dir: Path) -> None:
    files = sorted((corpus_dir / "negatives").glob("*.json"))
    assert len(files) >= 6
    for path in files:
        assert _map_file(factory, path) == [], path


def test_every_variant_of_every_event_passes_the_validators(
    factory: FindingFactory, shared_dir: Path, tmp_path: Path
) -> None:
    asff, ocsf = [], []
    for case in BOOK.cases():
        rendered = factory.render(case.record, origin=f"{case.event_name}/{case.variant}")
        asff += [r.document for r in rendered if r.format == "asff"]
        ocsf += [r.document for r in rendered if r.format == "ocsf"]
    _check(shared_dir, "check_asff.py", asff, tmp_path, "--strict", "--require-default-product")
    _check(shared_dir, "check_ocsf.py", ocsf, tmp_path, "--strict")


#: CLI verbs that put something back; a finding about an attempt offers none.
RESTORING = ("create-", "attach-", "accept-", "replace-", "associate-")


def test_no_attempt_claims_a_deletion_or_offers_a_restore(factory: FindingFactory, corpus_dir: Path) -> None:
    """Over every case and every real record: a failed or dry-run call says so first, and its
    runbook investigates instead of restoring; every boto3 snippet parses."""
    import ast

    records = [case.record for case in BOOK.cases()]
    for path in sorted((corpus_dir / "events").rglob("*.json")):
        records += [item.record for item in Decoder(LimitSettings()).decode(path.read_bytes(), origin=path.name)
                    if isinstance(item, DecodedRecord) and item.record.get("eventName") in factory.event_names]
    attempts = 0
    for record in records:
        rendered = factory.render(record, origin="attempts")
        finding = rendered[0].finding
        ast.parse(finding.remediation.boto3)
        if finding.outcome == "succeeded":
            continue
        attempts += 1
        assert finding.description.startswith(("Failed attempt, nothing was deleted", "Permission probe (dry run)")), finding.description
        assert not any(c.command.split()[2].startswith(RESTORING) for c in finding.remediation.cli)
        assert "deleted" not in finding.title.lower().replace("nothing was deleted", "")
    assert attempts >= 3 * len(factory.event_names)
