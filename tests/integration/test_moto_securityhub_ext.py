"""The test-support ``BatchUpdateFindings`` of our moto server (tests/support/moto_securityhub_ext.py),
called with boto3 over HTTP as an analyst's tool calls Security Hub."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.moto import MotoServer

REGION = "eu-west-1"
ACCOUNT = "123456789012"
PRODUCT = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default"


def a_finding(finding_id: str) -> dict[str, Any]:
    return {
        "SchemaVersion": "2018-10-08", "Id": finding_id, "ProductArn": PRODUCT, "GeneratorId": "test",
        "AwsAccountId": ACCOUNT, "Types": ["TTPs/Impact"], "CreatedAt": "2026-11-20T10:00:00.000Z",
        "UpdatedAt": "2026-11-20T10:00:00.000Z", "Severity": {"Label": "LOW"}, "Title": "t", "Description": "d",
        "Resources": [{"Type": "Other", "Id": "r"}], "Workflow": {"Status": "NEW"},
        "UserDefinedFields": {"kept": "yes"},
    }


def stored(hub: Any, ids: set[str]) -> dict[str, dict[str, Any]]:
    # Every page: the server is shared with the other tests (moto ignores GetFindings filters).
    pages = hub.get_paginator("get_findings").paginate()
    return {f["Id"]: f for page in pages for f in page["Findings"] if f["Id"] in ids}


def enabled_hub() -> Any:
    """The Security Hub client, enabled (an earlier test on the shared server may have done it)."""
    hub = boto3.client("securityhub", region_name=REGION)
    try:
        hub.enable_security_hub()
    except hub.exceptions.ResourceConflictException:
        pass
    return hub


def test_batch_update_findings_processes_known_and_reports_unknown(aws_env: MotoServer) -> None:
    hub = enabled_hub()
    tag = uuid.uuid4().hex[:8]
    known, other, unknown = f"{tag}-known", f"{tag}-other", f"{tag}-unknown"
    assert hub.batch_import_findings(Findings=[a_finding(known), a_finding(other)])["SuccessCount"] == 2

    answer = hub.batch_update_findings(
        FindingIdentifiers=[{"Id": known, "ProductArn": PRODUCT}, {"Id": unknown, "ProductArn": PRODUCT},
                            {"Id": other, "ProductArn": PRODUCT + "-elsewhere"},
                            {"Id": known, "ProductArn": PRODUCT}],
        Workflow={"Status": "RESOLVED"}, VerificationState="BENIGN_POSITIVE",
        Note={"Text": "planned, CHG-1", "UpdatedBy": "ana"}, UserDefinedFields={"ticket": "CHG-1"},
        Severity={"Label": "HIGH"}, Confidence=80, Criticality=30, Types=["Unusual Behaviors"],
        RelatedFindings=[{"Id": other, "ProductArn": PRODUCT}],
    )

    assert answer["ProcessedFindings"] == [{"Id": known, "ProductArn": PRODUCT}]
    errors = {(u["FindingIdentifier"]["Id"], u["FindingIdentifier"]["ProductArn"]): u["ErrorCode"]
              for u in answer["UnprocessedFindings"]}
    assert errors == {(unknown, PRODUCT): "FindingNotFound", (other, PRODUCT + "-elsewhere"): "FindingNotFound",
                      (known, PRODUCT): "DuplicatedFindingIdentifier"}
    assert all(u["ErrorMessage"] for u in answer["UnprocessedFindings"])

    after = stored(hub, {known, other})
    updated = after[known]
    assert updated["Workflow"] == {"Status": "RESOLVED"}
    assert updated["VerificationState"] == "BENIGN_POSITIVE"
    assert updated["Note"]["Text"] == "planned, CHG-1" and updated["Note"]["UpdatedBy"] == "ana"
    assert updated["Note"]["UpdatedAt"] > "2026-11-20T10:00:00.000Z"  # the time of the call
    assert updated["UserDefinedFields"] == {"kept": "yes", "ticket": "CHG-1"}  # merged
    assert updated["Severity"] == {"Label": "HIGH", "Normalized": 70}
    assert (updated["Confidence"], updated["Criticality"], updated["Types"]) == (80, 30, ["Unusual Behaviors"])
    assert updated["RelatedFindings"] == [{"Id": other, "ProductArn": PRODUCT}]
    assert updated["UpdatedAt"] == "2026-11-20T10:00:00.000Z"  # BatchUpdateFindings leaves it
    assert after[other] == a_finding(other)  # a wrong ProductArn changed nothing


def test_batch_update_findings_rejects_values_outside_the_api(aws_env: MotoServer) -> None:
    hub = enabled_hub()
    finding_id = f"{uuid.uuid4().hex[:8]}-bad"
    hub.batch_import_findings(Findings=[a_finding(finding_id)])
    for bad in ({"Workflow": {"Status": "CLOSED"}}, {"Confidence": 101}, {"Severity": {"Label": "SEVERE"}}):
        with pytest.raises(ClientError) as refused:
            hub.batch_update_findings(FindingIdentifiers=[{"Id": finding_id, "ProductArn": PRODUCT}], **bad)
        assert refused.value.response["Error"]["Code"] == "InvalidInputException", bad
    assert stored(hub, {finding_id})[finding_id] == a_finding(finding_id)
