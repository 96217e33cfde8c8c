"""Analyst state survives a replay: a status (and notes, assignee, tags) set by an analyst in
OpenSearch (a partial update of the ``analyst`` object, on a real node) and in Security Hub
(moto) is unchanged after ``connector replay`` of the same log files, while the connector's own
fields are rewritten (so the replay did write).

Security Hub: moto (5.2) has no ``BatchUpdateFindings``, and the test asserts that it has none, so
that it is switched to the real call once moto has it. Meanwhile the analyst's fields are put where
BatchUpdateFindings puts them, through moto's ``BatchImportFindings``, which merges every
top-level key into the stored finding. That merge is also why this test can fail: a re-import
that carried ``Workflow`` (the renderer writes ``Workflow.Status`` NEW) would reset the status.
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
from botocore.exceptions import ClientError
from opensearchpy import OpenSearch

from tests.support.moto import MotoServer
from tests.support.records import an_event, make_record

pytestmark = pytest.mark.opensearch

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ANALYST = {"status": "RESOLVED", "assignee": "ana@example.com", "notes": ["planned decommission, CHG-1234"],
           "tags": ["change-window"]}
OWNED = {"Workflow": {"Status": "RESOLVED"}, "VerificationState": "BENIGN_POSITIVE",
         "Note": {"Text": "planned decommission, CHG-1234", "UpdatedBy": "ana", "UpdatedAt": "2026-11-21T09:00:00.000Z"},
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
    with pytest.raises(ClientError) as missing:  # moto: not implemented (see the module docstring)
        hub.batch_update_findings(FindingIdentifiers=[{"Id": target_id, "ProductArn": target["ProductArn"]}],
                                  Workflow={"Status": "RESOLVED"})
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] in (404, 500, 501)
    assert hub.batch_import_findings(Findings=[{**target, **OWNED}])["SuccessCount"] == 1

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
    for field, value in OWNED.items():
        assert after[target_id][field] == value, field
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
