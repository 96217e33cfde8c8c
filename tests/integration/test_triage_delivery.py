"""Suppression never drops: a suppressed finding goes through `connector run --once` into Security
Hub (moto) and both OpenSearch indexes (a real node), marked suppressed with its rule id, next to
an unsuppressed one (`connector.status` SUPPRESSED in both index kinds); the expired rule in the
same file is reported at start-up."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from opensearchpy import OpenSearch

from tests.support.moto import MotoServer
from tests.support.records import make_record
from tests.support.service import make_queues, queue_depth, service_env

pytestmark = pytest.mark.opensearch

EVENT = "DeleteNatGateway"
ACCOUNT = "123456789012"  # moto's, so the default product ARN imports


def sh_finding(finding_id: str) -> dict[str, Any]:
    client = boto3.client("securityhub", region_name="eu-west-1")  # the records' region
    pages = client.get_paginator("get_findings").paginate(PaginationConfig={"PageSize": 100})
    found = [f for page in pages for f in page["Findings"] if f["Id"] == finding_id]  # moto ignores Filters on Id
    assert len(found) == 1, [f["Id"] for f in found]
    return dict(found[0])


def os_doc(url: str, pattern: str, finding_id: str) -> dict[str, Any]:
    client = OpenSearch(hosts=[url])
    client.indices.refresh(index=pattern)
    hits = client.search(index=pattern, body={"query": {"ids": {"values": [finding_id]}}})["hits"]["hits"]
    assert len(hits) == 1, hits
    return dict(hits[0]["_source"])


def test_a_suppressed_finding_reaches_every_sink_marked(aws_env: MotoServer, opensearch_url: str, tmp_path: Path) -> None:
    boto3.client("securityhub", region_name="eu-west-1").enable_security_hub()
    tag = f"tri{uuid.uuid4().hex[:6]}"
    prefix = f"{tag}-idx"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"version": 1, "suppress": [
        {"id": "lab-janitor", "owner": "platform@example.com", "reason": "the lab janitor deletes NAT gateways nightly",
         "until": "2099-12-31", "match": [{"field": "eventID", "prefix": f"{tag}-sup"}]},
        {"id": "finished-migration", "owner": "netops@example.com", "reason": "the migration ended",
         "until": "2020-01-31", "match": [{"field": "eventName", "exists": True}]},
    ]}))
    queue, dlq = make_queues(f"{tag}-q")
    sqs = boto3.client("sqs")
    ids = {"suppressed": f"{tag}-sup-1", "plain": f"{tag}-plain-1"}
    for event_id in ids.values():
        record = make_record(EVENT, event_id=event_id, recipientAccountId=ACCOUNT,
                             userIdentity={"type": "IAMUser", "principalId": "AIDAEXAMPLEUSER00001", "userName": "alice",
                                           "arn": f"arn:aws:iam::{ACCOUNT}:user/alice", "accountId": ACCOUNT})
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(record))
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_SINKS="securityhub,opensearch",
                      CONNECTOR_OPENSEARCH_URL=opensearch_url, CONNECTOR_OPENSEARCH_INDEX_PREFIX=prefix,
                      CONNECTOR_TRIAGE_RULES_FILE=str(rules))
    proc = subprocess.run([sys.executable, "-m", "connector", "run", "--once"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = proc.stdout + proc.stderr
    assert "finished-migration" in logs and "expired" in logs, logs[-3000:]
    assert queue_depth(queue) == 0  # both acknowledged: delivered, not dropped

    finding_ids = {k: f"cloudtrail-findings/aws/eu-west-1/{ACCOUNT}/{v}" for k, v in ids.items()}
    # Security Hub: created SUPPRESSED, with the rule id and reason.
    suppressed = sh_finding(finding_ids["suppressed"])
    assert suppressed["Workflow"]["Status"] == "SUPPRESSED"
    assert suppressed["ProductFields"]["connector/triage/suppressedBy"] == "lab-janitor"
    assert "lab janitor" in suppressed["ProductFields"]["connector/triage/suppressionReason"]
    # A finding no rule suppresses is sent without Workflow (customer-owned): Security Hub makes it
    # NEW; moto stores none.
    assert sh_finding(finding_ids["plain"]).get("Workflow", {"Status": "NEW"})["Status"] == "NEW"
    # OpenSearch, both index kinds.
    asff = os_doc(opensearch_url, f"{prefix}-asff-*", finding_ids["suppressed"])
    assert asff["Workflow"]["Status"] == "SUPPRESSED"
    assert asff["ProductFields"]["connector/triage/suppressedBy"] == "lab-janitor"
    ocsf = os_doc(opensearch_url, f"{prefix}-ocsf-2004-*", finding_ids["suppressed"])
    assert ocsf["status_id"] == 3 and ocsf["status"] == "Suppressed"
    assert ocsf["unmapped"]["triage"]["suppression"]["rule_id"] == "lab-janitor"
    assert ocsf["unmapped"]["triage"]["suppression"]["owner"] == "platform@example.com"
    plain = os_doc(opensearch_url, f"{prefix}-ocsf-2004-*", finding_ids["plain"])
    assert plain["status_id"] == 1 and "triage" not in plain["unmapped"]
    # connector.status, the field a SOC filters both index kinds on, says the same (a keyword).
    assert asff["connector"]["status"] == ocsf["connector"]["status"] == "SUPPRESSED"
    plain_asff = os_doc(opensearch_url, f"{prefix}-asff-*", finding_ids["plain"])
    assert plain_asff["connector"]["status"] == plain["connector"]["status"] == "NEW"
    client = OpenSearch(hosts=[opensearch_url])
    hits = client.search(index=f"{prefix}-*", body={"query": {"term": {"connector.status": "SUPPRESSED"}}})["hits"]["hits"]
    assert sorted(h["_index"].split("-")[2] for h in hits) == ["asff", "ocsf"]
    assert {h["_id"] for h in hits} == {finding_ids["suppressed"]}
