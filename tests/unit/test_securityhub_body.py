"""The Security Hub request body the sink writes itself (``request_body``) instead of botocore.

It must be the request botocore would have sent (same JSON, same verdict on invalid findings),
and a call that somehow lacks it must fail rather than import nothing."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ParamValidationError

from connector.errors import DeliveryError
from connector.factory import FindingFactory
from connector.sinks.securityhub.sink import _use_prepared_body, finding_bytes, request_body
from tests.support.records import EVENTS, variants


def _documents() -> list[dict[str, Any]]:
    factory = FindingFactory.load()
    return [r.document for event in EVENTS for record in variants(event).values()
            for r in factory.render(record) if r.format == "asff"]


def test_the_body_is_what_botocore_would_serialise_for_every_variant() -> None:
    docs = _documents()
    client = boto3.client("securityhub", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    model = client.meta.service_model.operation_model("BatchImportFindings")
    for start in range(0, len(docs), 100):
        part = docs[start:start + 100]
        ours = request_body(part)
        theirs = client._serializer.serialize_to_request({"Findings": part}, model)["body"]
        assert json.loads(ours) == json.loads(theirs)
        # the size the sink counts per finding adds up to the body it sends
        assert len(ours) == len('{"Findings":[]}') + sum(map(finding_bytes, part)) + len(part) - 1


def test_an_invalid_finding_gets_botocores_own_verdict() -> None:
    docs = _documents()[:3]
    broken = {k: v for k, v in docs[1].items() if k != "Title"}
    with pytest.raises(ParamValidationError, match="Title"):
        request_body([docs[0], broken, docs[2]])


def test_a_call_without_a_prepared_body_is_refused_not_sent_empty() -> None:
    with pytest.raises(DeliveryError, match="without a prepared request body"):
        _use_prepared_body(params={"body": b'{"Findings":[]}'})
