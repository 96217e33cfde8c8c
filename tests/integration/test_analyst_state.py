"""Analyst state survives a replay: a status (and notes, assignee, tags) set by an analyst in
OpenSearch (a partial update of the ``analyst`` object, on a real node) and in Security Hub
(``BatchUpdateFindings`` with boto3 over HTTP, as an analyst's tool sets it) is unchanged after
``connector replay`` of the same log files, while the connector's own fields are rewritten (so the
replay did write).

moto has no ``BatchUpdateFindings`` of its own; our moto server adds it
(tests/support/moto_securityhub_ext.py). moto's ``BatchImportFindings`` merges every top-level key
of a re-imported finding into the stored one (real Security Hub ignores the customer-owned ones
once a finding exists), which is what lets this test fail: a re-import that carried ``Workflow``,
``Note`` or ``UserDefinedFields`` (the renderer writes ``Workflow.Status`` NEW) would reset them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy import OpenSearch

from tests.support.moto import MotoServer
from tests.support.records import an_event, make_record

pytestmark = pytest.mark.opensearch

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ANALYST = {"status": "RESOLVED", "assignee": "ana@example.com", "notes": ["planned decommission, CHG-1234"],
           "tags": ["change-window"]}
#: What the analyst sends with BatchUpdateFindings (Security Hub stamps Note.UpdatedAt itself).
OWNED = {"Workflow": {"Status": "RESOLVED"}, "VerificationState": "BENIGN_POSITIVE",
         "Note": {"Text": "planned decommission, CHG-1234", "UpdatedBy": "ana"},
         "UserDefinedFields": {"ticket": "CHG-1234"}}


def replay(logs: Path, state: Path, env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "connector", "replay", str(logs), "--state", str(state)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def sh_findings(tag: str) -> dict[str, dict[str, Any]]:
    client = boto3.client("securityhub", region_name=REGION)
    out, token = {}, None
    while True:
        page = client.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
        out.update({f["Id"]: f for f in page["Findings"] if f"/{tag}-" in f["Id"]})
        token = page.get("NextToken")
        if not token:
            return out


def os_docs(client: OpenSearch, prefix: str) -> dict[tuple[str, str], dict[str, Any]]:
    client.indices.refresh(index=f"{prefix}-*")
    hits = client.search(index=f"{prefix}-*", body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    return {(h["_index"], h["_id"]): h["_source"] for h in hits}


def test_replay_changes_no_analyst_field(aws_env: MotoServer, opensearch_url: str, tmp_path: Path) -> None:
    for region in (REGION, "us-east-1"):
        boto3.client("securityhub", region_name=region).enable_security_hub()
    tag = f"an{uuid.uuid4().hex[:8]}"
    prefix = f"{tag}-idx"
    logs = tmp_path / "logs"
    logs.mkdir()
    records = [make_record(an_event(i), event_id=f"{tag}-{i}", recipientAccountId=ACCOUNT) for i in range(3)]
    (logs / "trail.json").write_text(json.dumps({"Records": records}))
    env = {**os.environ, **aws_env.env(), "CONNECTOR_SINKS": "securityhub,opensearch",
           "CONNECTOR_OPENSEARCH_URL": opensearch_url, "CONNECTOR_OPENSEARCH_INDEX_PREFIX": prefix}
    replay(logs, tmp_path / "first.sqlite", env)

    hub = boto3.client("securityhub", region_name=REGION)
    before = sh_findings(tag)
    assert len(before) == 3
    target_id = sorted(before)[0]
    target = before[target_id]
    answer = hub.batch_update_findings(FindingIdentifiers=[{"Id": target_id, "ProductArn": target["ProductArn"]}],
                                       **OWNED)
    assert answer["ProcessedFindings"] == [{"Id": target_id, "ProductArn": target["ProductArn"]}]
    assert answer["UnprocessedFindings"] == []
    analysed = sh_findings(tag)[target_id]
    assert {f: analysed[f] for f in ("Workflow", "UserDefinedFields", "VerificationState")} == {
        f: OWNED[f] for f in ("Workflow", "UserDefinedFields", "VerificationState")}
    assert analysed["Note"]["Text"] == OWNED["Note"]["Text"] and analysed["Note"]["UpdatedAt"]
    assert analysed["UpdatedAt"] == target["UpdatedAt"]  # BatchUpdateFindings leaves UpdatedAt

    client = OpenSearch(hosts=[opensearch_url])
    docs = os_docs(client, prefix)
    assert len(docs) == 6  # 3 findings × (ASFF, OCSF)
    mine = [key for key in docs if key[1] == target_id]
    assert len(mine) == 2
    for index, doc_id in mine:  # what an analyst's tool does: a partial update of the analyst object
        client.update(index=index, id=doc_id, body={"doc": {"analyst": ANALYST}})
    stamped = {key: doc["connector"] for key, doc in os_docs(client, prefix).items()}

    # The same files again (a fresh resume state, or replay would skip them as done).
    replay(logs, tmp_path / "second.sqlite", env)

    after = sh_findings(tag)
    assert set(after) == set(before)
    for field in ("Workflow", "Note", "UserDefinedFields", "VerificationState"):
        assert after[target_id][field] == analysed[field], field
    for other in set(after) - {target_id}:  # the analyst touched one finding only
        assert not {"Workflow", "Note", "UserDefinedFields", "VerificationState"} & set(after[other])
    assert after[target_id]["UpdatedAt"] > target["UpdatedAt"]  # the replay did rewrite the finding
    docs = os_docs(client, prefix)
    assert len(docs) == 6
    for key, doc in docs.items():
        if key in mine:
            assert doc["analyst"] == ANALYST
        else:
            assert "analyst" not in doc
        assert doc["connector"]["finding_id"] == key[1] and doc["connector"] == stamped[key]
    updated = [d.get("UpdatedAt") or d["finding_info"]["modified_time"] for d in docs.values()]
    assert all(updated)
    # The connector's fields were written again (UpdatedAt / modified_time are the render time).
    client.indices.refresh(index=f"{prefix}-*")
    versions = [client.get(index=i, id=d)["_version"] for i, d in docs]
    assert all(v >= 2 for v in versions), versions
