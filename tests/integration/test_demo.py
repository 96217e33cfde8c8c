"""`connector demo`, the README's first command, end to end in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.records import EVENTS


def test_demo_prints_the_five_findings_and_writes_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONNECTOR_", "OPENSEARCH_URL"))}
    proc = subprocess.run([sys.executable, "-m", "connector", "demo", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.splitlines()
    assert table[0].split()[:4] == ["EVENT", "RESOURCE", "PRINCIPAL", "SEVERITY"]
    assert {line.split()[0] for line in table[2:7]} == set(EVENTS)
    assert "5 findings in Security Hub" in proc.stdout and "1 message(s) dead-lettered" in proc.stdout
    ocsf = [json.loads(line) for line in (tmp_path / "out" / "ocsf.jsonl").read_text().splitlines()]
    assert len(ocsf) == 5 and all(doc["class_uid"] == 2004 for doc in ocsf)
