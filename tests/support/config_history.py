"""AWS Config ``GetResourceConfigHistory`` answers in the shape the service returns.

moto does not record EC2 resources in AWS Config (``get_resource_config_history`` on a network
ACL or interface answers ``ResourceNotDiscoveredException``), so the Config lookups are tested
against answers built here, following the API reference
(https://docs.aws.amazon.com/config/latest/APIReference/API_GetResourceConfigHistory.html and
API_ConfigurationItem.html): items newest first; ``configuration`` is the resource's Describe
shape with lowerCamelCase keys, JSON-encoded; the item recorded after a deletion has the status
``ResourceDeleted`` and no configuration. botocore's Stubber checks each answer against the
service model, so a wrong field name or type fails the test, not production.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.stub import Stubber


def camel(node: Any) -> Any:
    """EC2's ``SubnetId`` → Config's ``subnetId``, recursively."""
    if isinstance(node, dict):
        return {k[:1].lower() + k[1:]: camel(v) for k, v in node.items()}
    if isinstance(node, list):
        return [camel(v) for v in node]
    return node


def item(resource_type: str, resource_id: str, configuration: dict[str, Any] | None, *, account: str,
         region: str, status: str = "OK", age_minutes: int = 0) -> dict[str, Any]:
    captured = datetime(2026, 11, 21, 10, 0, tzinfo=UTC) - timedelta(minutes=age_minutes)
    entry: dict[str, Any] = {
        "version": "1.3",
        "accountId": account,
        "configurationItemCaptureTime": captured,
        "configurationItemStatus": status,
        "configurationStateId": str(int(captured.timestamp() * 1000)),
        "arn": f"arn:aws:ec2:{region}:{account}:{resource_type.split('::')[-1].lower()}/{resource_id}",
        "resourceType": resource_type,
        "resourceId": resource_id,
        "awsRegion": region,
        "availabilityZone": "Multiple Availability Zones",
        "tags": {},
        "relatedEvents": [],
        "relationships": [],
        "supplementaryConfiguration": {},
    }
    if configuration is not None:
        entry["configuration"] = json.dumps(configuration)
        entry["configurationItemMD5Hash"] = ""
    return entry


def history(*items: dict[str, Any]) -> dict[str, Any]:
    return {"configurationItems": list(items)}


def stubbed_config(answer: dict[str, Any], *, resource_type: str, resource_id: str, times: int = 1) -> tuple[Any, Stubber]:
    """A real botocore Config client whose GetResourceConfigHistory returns ``answer``."""
    import boto3

    client = boto3.client("config", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing", endpoint_url="http://127.0.0.1:9")
    stub = Stubber(client)
    for _ in range(times):
        stub.add_response("get_resource_config_history", answer, {
            "resourceType": resource_type, "resourceId": resource_id,
            "limit": 10 if resource_type.endswith("NetworkAcl") else 5,
        })
    stub.activate()
    return client, stub
