"""Synthetic CloudTrail records for the variants the corpus lacks (failed calls, root, dry runs...).

Written for these tests, in the shapes CloudTrail documents; real public records are read from
../shared/corpus instead, never copied here.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

ACCOUNT = "111122223333"

REQUEST_PARAMETERS: dict[str, dict[str, Any]] = {
    "DeleteNetworkInterface": {"networkInterfaceId": "eni-0a1b2c3d4e5f60718"},
    "DeleteNetworkAclEntry": {"networkAclId": "acl-0123456789abcdef0", "ruleNumber": 110, "egress": True},
    "DeleteVpcPeeringConnection": {"vpcPeeringConnectionId": "pcx-0fedcba9876543210"},
    "DetachInternetGateway": {"internetGatewayId": "igw-0c0ffee0c0ffee000", "vpcId": "vpc-0abc0abc0abc0abc0"},
    "DeleteNatGateway": {"DeleteNatGatewayRequest": {"NatGatewayId": "nat-0badc0de0badc0de0"}},
}
RESPONSE_ELEMENTS: dict[str, dict[str, Any]] = {
    "DeleteNatGateway": {"DeleteNatGatewayResponse": {"natGatewayId": "nat-0badc0de0badc0de0", "requestId": "5c1b6b6c-0000-4000-8000-000000000001"}},
}
RESOURCE_IDS = {
    "DeleteNetworkInterface": "eni-0a1b2c3d4e5f60718",
    "DeleteNetworkAclEntry": "acl-0123456789abcdef0",
    "DeleteVpcPeeringConnection": "pcx-0fedcba9876543210",
    "DetachInternetGateway": "igw-0c0ffee0c0ffee000",
    "DeleteNatGateway": "nat-0badc0de0badc0de0",
}
EVENTS = tuple(REQUEST_PARAMETERS)

IAM_USER = {
    "type": "IAMUser",
    "principalId": "AIDAEXAMPLEUSER00001",
    "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
    "accountId": ACCOUNT,
    "accessKeyId": "AKIAEXAMPLEKEY000001",
    "userName": "alice",
}
ROOT = {"type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root", "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLEROOT00001"}
ASSUMED_ROLE = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLEROLE00001:deploy-session",
    "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/NetworkAdmin/deploy-session",
    "accountId": ACCOUNT,
    "accessKeyId": "ASIAEXAMPLESESSION01",
    "sessionContext": {
        "sessionIssuer": {
            "type": "Role",
            "principalId": "AROAEXAMPLEROLE00001",
            "arn": f"arn:aws:iam::{ACCOUNT}:role/NetworkAdmin",
            "accountId": ACCOUNT,
            "userName": "NetworkAdmin",
        },
        "webIdFederationData": {},
        "attributes": {"creationDate": "2026-11-20T08:00:00Z", "mfaAuthenticated": "true"},
    },
}
USER_AGENTS = {
    "console": "AWS Internal",
    "cli": "aws-cli/2.22.4 md/awscrt#0.22.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/command#ec2.delete-network-interface",
    "sdk": "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.0",
    "terraform": "APN/1.0 HashiCorp/1.0 Terraform/1.9.5 (+https://www.terraform.io) terraform-provider-aws/5.70.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.0 ua/2.1 os/linux lang/go#1.23.1 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.179.0",
}


def make_record(event_name: str, *, event_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A successful call by an IAM user from the CLI, then ``overrides`` applied (None deletes a key)."""
    record: dict[str, Any] = {
        "eventVersion": "1.10",
        "userIdentity": copy.deepcopy(IAM_USER),
        "eventTime": "2026-11-20T10:15:30Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.25",
        "userAgent": USER_AGENTS["cli"],
        "requestParameters": copy.deepcopy(REQUEST_PARAMETERS[event_name]),
        "responseElements": copy.deepcopy(RESPONSE_ELEMENTS.get(event_name, {"requestId": "5c1b6b6c-0000-4000-8000-000000000001", "_return": True})),
        "requestID": "5c1b6b6c-0000-4000-8000-000000000001",
        "eventID": event_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"test/{event_name}")),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "ec2.eu-west-1.amazonaws.com"},
    }
    for key, value in overrides.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


STABLE_IDS = {name: f"e{index}000000-0000-4000-8000-00000000000{index}" for index, name in enumerate(EVENTS, 1)}


def variants(event_name: str) -> dict[str, dict[str, Any]]:
    """The issue's variants for one event, each a full record with a stable eventID."""
    base_id = STABLE_IDS[event_name]

    def rec(suffix: str, **overrides: Any) -> dict[str, Any]:
        return make_record(event_name, event_id=f"{base_id[:-2]}{suffix}", **overrides)

    return {
        "success": rec("01"),
        "failed": rec(
            "02",
            errorCode="Client.UnauthorizedOperation",
            errorMessage="You are not authorized to perform this operation.",
            requestParameters=None,
            responseElements=None,
        ),
        "failed-with-params": rec("03", errorCode="Client.InvalidParameterValue", errorMessage="The resource does not exist", responseElements=None),
        "dry-run": rec("04", errorCode="Client.DryRunOperation", errorMessage="Request would have succeeded, but DryRun flag is set.", responseElements=None),
        "root": rec("05", userIdentity=copy.deepcopy(ROOT), userAgent=USER_AGENTS["console"]),
        "assumed-role": rec("06", userIdentity=copy.deepcopy(ASSUMED_ROLE), userAgent=USER_AGENTS["terraform"]),
        "invoked-by-cloudformation": rec(
            "07",
            userIdentity=dict(copy.deepcopy(ASSUMED_ROLE), invokedBy="cloudformation.amazonaws.com"),
            sourceIPAddress="cloudformation.amazonaws.com",
            userAgent="cloudformation.amazonaws.com",
        ),
        "sdk-no-source-ip": rec("08", userAgent=USER_AGENTS["sdk"], sourceIPAddress=None),
        "no-user-agent": rec("09", userAgent=None),
        "event-version-1.0": rec("10", eventVersion="1.0", tlsDetails=None, eventCategory=None, managementEvent=None),
        "unknown-fields": rec("11", futureField={"nested": [1, 2, 3]}, addendum={"reason": "DELIVERY_DELAY"}),
    }
