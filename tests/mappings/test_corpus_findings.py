"""Every real record of the five events → exactly one ASFF and one OCSF finding that the
independent validators in ../shared/tools accept with no leniency; near misses → none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector.envelopes import DecodedRecord, Decoder
from connector.config import LimitSettings
from connector.factory import FindingFactory
from connector.select import Selector
from tests.support.records import EVENTS, variants


@pytest.fixture(scope="module")
def factory() -> FindingFactory:
    return FindingFactory.load()


def _map_file(factory: FindingFactory, path: Path) -> list:
    selector = Selector(factory.event_names)
    decoder = Decoder(LimitSettings(), prefilter=selector.might_match)
    out = []
    for item in decoder.decode(path.read_bytes(), origin=str(path)):
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
    files = sorted((corpus_dir / "events").glob("*/*.json"))
    assert files, "the corpus has target events"
    asff, ocsf = [], []
    for path in files:
        rendered = _map_file(factory, path)
        assert sorted(r.format for r in rendered) == ["asff", "ocsf"], path
        assert rendered[0].finding.event.event_name == path.parent.name
        asff += [r.document for r in rendered if r.format == "asff"]
        ocsf += [r.document for r in rendered if r.format == "ocsf"]
    _check(shared_dir, "check_asff.py", asff, tmp_path, "--require-default-product")
    _check(shared_dir, "check_ocsf.py", ocsf, tmp_path)


def test_near_misses_give_no_finding(factory: FindingFactory, corpus_dir: Path) -> None:
    files = sorted((corpus_dir / "negatives").glob("*.json"))
    assert len(files) >= 6
    for path in files:
        assert _map_file(factory, path) == [], path


def test_every_variant_of_every_event_passes_the_validators(
    factory: FindingFactory, shared_dir: Path, tmp_path: Path
) -> None:
    asff, ocsf = [], []
    for event in EVENTS:
        for name, record in variants(event).items():
            rendered = factory.render(record, origin=f"{event}/{name}")
            asff += [r.document for r in rendered if r.format == "asff"]
            ocsf += [r.document for r in rendered if r.format == "ocsf"]
    _check(shared_dir, "check_asff.py", asff, tmp_path, "--require-default-product")
    _check(shared_dir, "check_ocsf.py", ocsf, tmp_path)
