"""One Region shape for every check: the record's ``awsRegion`` (trust), runbook values
(mapping formats) and the Security Lake partition agree, so a Region the connector accepts is
never refused later as malformed (``eusc-de-east-1`` was accepted by one and refused by the
others), and a hostile value is refused by all of them."""

from __future__ import annotations

import pytest

from connector.aws_region import REGION
from connector.mapping.formats import matches
from connector.sinks.securitylake import REGION as LAKE_REGION
from connector.trust import region_problem

REAL = ["us-east-1", "eu-central-2", "ap-southeast-5", "us-gov-west-1", "cn-northwest-1", "us-iso-east-1",
        "us-isob-east-1", "eu-isoe-west-1", "eusc-de-east-1", "il-central-1", "mx-central-1"]
HOSTILE = ["us-east-1\n", "../../etc", "US-EAST-1", "us-east-1; curl x|sh", "us east 1", "us-east-1/..", "",
           "a-b-1", "us-east-123", "us-east-1 "]


@pytest.mark.parametrize("region", REAL)
def test_every_real_region_passes_every_check(region: str) -> None:
    assert REGION.match(region)
    assert region_problem(region) is None
    assert matches("region", region)
    assert LAKE_REGION.fullmatch(region)


@pytest.mark.parametrize("region", HOSTILE)
def test_a_malformed_region_is_refused_by_every_check(region: str) -> None:
    assert not REGION.match(region)
    assert region_problem(region) is not None
    assert not matches("region", region)
    assert not LAKE_REGION.fullmatch(region)


@pytest.mark.parametrize(("kind", "value", "expected"), [
    ("subnet-id-list", "subnet-0123abcd subnet-0123456789abcdef0", True),
    ("subnet-id-list", "subnet-0123abcd", True),
    ("subnet-id-list", "", False),
    ("subnet-id-list", "subnet-0123abcd  subnet-0123abcd", False),  # an empty item between two spaces
    ("subnet-id-list", "subnet-0123abcd;id", False),
    ("subnet-id", "subnet-0123abcd subnet-0123abcd", False),
    ("no-such-kind", "x", False),
    ("no-such-kind-list", "x", False),
    ("network-acl-id", "acl-0123456789abcdef0", True),
    ("network-acl-id", "acl-0123456789abcdef0\n", False),
])
def test_a_value_matches_its_kind_or_each_item_of_a_list_kind(kind: str, value: str, expected: bool) -> None:
    assert matches(kind, value) is expected
