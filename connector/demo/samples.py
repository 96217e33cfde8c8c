"""Embedded sample CloudTrail records for ``connector demo``: the five events plus unrelated noise.

Written for the demo in the shapes CloudTrail documents (DeleteNatGateway's wrapped request,
the flat camelCase fields of the others); account 123456789012 is the emulator's own, so the
findings import with the default product ARN.
"""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


def _record(name: str, event_id: str, when: str, request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROADEMOROLE000000001:jane.doe",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/NetworkOps/jane.doe",
            "accountId": ACCOUNT,
            "accessKeyId": "ASIADEMOACCESSKEY001",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROADEMOROLE000000001",
                                  "arn": f"arn:aws:iam::{ACCOUNT}:role/NetworkOps", "accountId": ACCOUNT,
                                  "userName": "NetworkOps"},
                "attributes": {"creationDate": when, "mfaAuthenticated": "false"},
            },
        },
        "eventTime": when,
        "eventSource": "ec2.amazonaws.com",
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": "198.51.100.77",
        "userAgent": "aws-cli/2.22.4 md/awscrt#0.22.0 ua/2.0 os/linux#6.1 lang/python#3.12.6",
        "requestParameters": request,
        "responseElements": {"requestId": f"req-{event_id}", "_return": True},
        "requestID": f"req-{event_id}",
        "eventID": event_id,
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    record.update(extra)
    return record


def target_records() -> list[dict[str, Any]]:
    return [
        _record("DetachInternetGateway", "d3m0-0001-4a1b-9c2d-000000000001", "2026-11-21T09:12:03Z",
                {"internetGatewayId": "igw-0d3m0a11ce0000001", "vpcId": "vpc-0d3m0a11ce0000001"}),
        _record("DeleteNatGateway", "d3m0-0002-4a1b-9c2d-000000000002", "2026-11-21T09:13:41Z",
                {"DeleteNatGatewayRequest": {"NatGatewayId": "nat-0d3m0a11ce0000002"}},
                responseElements={"DeleteNatGatewayResponse": {"natGatewayId": "nat-0d3m0a11ce0000002"}}),
        _record("DeleteNetworkAclEntry", "d3m0-0003-4a1b-9c2d-000000000003", "2026-11-21T09:15:10Z",
                {"networkAclId": "acl-0d3m0a11ce0000003", "ruleNumber": 90, "egress": False}),
        _record("DeleteVpcPeeringConnection", "d3m0-0004-4a1b-9c2d-000000000004", "2026-11-21T09:16:55Z",
                {"vpcPeeringConnectionId": "pcx-0d3m0a11ce0000004"}),
        _record("DeleteNetworkInterface", "d3m0-0005-4a1b-9c2d-000000000005", "2026-11-21T09:18:20Z",
                {"networkInterfaceId": "eni-0d3m0a11ce0000005"},
                errorCode="Client.UnauthorizedOperation",
                errorMessage="You are not authorized to perform this operation."),
    ]


def noise_records() -> list[dict[str, Any]]:
    out = []
    for i, (source, name) in enumerate([
        ("s3.amazonaws.com", "GetObject"), ("ec2.amazonaws.com", "DescribeInstances"),
        ("sts.amazonaws.com", "AssumeRole"), ("ec2.amazonaws.com", "DeleteNetworkAcl"),
        ("ec2.amazonaws.com", "AttachInternetGateway"), ("kms.amazonaws.com", "Decrypt"),
    ]):
        record = _record(name, f"n01se-{i:04d}-0000-0000-000000000000", "2026-11-21T09:20:00Z", {"demo": True})
        record["eventSource"] = source
        out.append(record)
    return out
