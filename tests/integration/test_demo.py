"""`connector demo`, the README's first command, end to end in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.records import BOOK, EVENTS


def test_demo_prints_one_finding_per_mapping_and_writes_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONNECTOR_", "OPENSEARCH_URL"))}
    proc = subprocess.run([sys.executable, "-m", "connector", "demo", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.splitlines()
    assert table[0].split()[:4] == ["EVENT", "RESOURCE", "PRINCIPAL", "SEVERITY"]
    rows = table[2:2 + len(EVENTS)]
    assert sorted(line.split()[0] for line in rows) == sorted(EVENTS)
    for line in rows:  # a sample sent as a failed call is reported at its mapping's attempt severity
        mapping = BOOK.mappings[line.split()[0]]
        if mapping.cases.demo_variant.startswith("failed"):
            assert line.split()[3] == mapping.severity["failed"], line
            assert line.split()[3] in ("LOW", "INFORMATIONAL") and "No resource was changed" in line, line
    assert f"{len(EVENTS)} findings in Security Hub" in proc.stdout and "1 message(s) dead-lettered" in proc.stdout
    ocsf = [json.loads(line) for line in (tmp_path / "out" / "ocsf.jsonl").read_text().splitlines()]
    assert len(ocsf) == len(EVENTS) and all(doc["class_uid"] == 2004 for doc in ocsf)
