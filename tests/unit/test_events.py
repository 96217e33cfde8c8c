"""parse_event: the loose shapes of CloudTrail pinned down once."""

from __future__ import annotations

import pytest

from connector.errors import InvalidRecord
from connector.events import normalize_account, parse_event, partition_for
from tests.support.records import ASSUMED_ROLE, EVENT, ROOT, make_record


def test_account_ids_get_their_leading_zeros_back() -> None:
    assert normalize_account("000000000") == "000000000000"
    assert normalize_account(123456789012) == "123456789012"
    assert normalize_account("not-an-account") is None
    assert normalize_account("1234567890123") is None


@pytest.mark.parametrize(
    ("region", "arn", "expected"),
    [
        ("us-east-1", None, "aws"),
        ("cn-north-1", None, "aws-cn"),
        ("us-gov-west-1", None, "aws-us-gov"),
        ("eu-west-1", "arn:aws-cn:iam::111122223333:user/x", "aws-cn"),
    ],
)
def test_partition(region: str, arn: str | None, expected: str) -> None:
    assert partition_for(region, arn) == expected


def test_assumed_role_identity_keeps_the_session_issuer() -> None:
    event = parse_event(make_record(EVENT, userIdentity=ASSUMED_ROLE))
    assert event.identity.session_issuer_name == "NetworkAdmin"
    assert event.identity.mfa_authenticated is True
    assert event.identity.display == "NetworkAdmin/deploy-session"


def test_root_display_names_the_account() -> None:
    event = parse_event(make_record(EVENT, userIdentity=ROOT))
    assert event.identity.display == "root (111122223333)"


def test_failed_and_dry_run_are_told_apart() -> None:
    failed = parse_event(make_record(EVENT, errorCode="Client.UnauthorizedOperation"))
    dry = parse_event(make_record(EVENT, errorCode="Client.DryRunOperation"))
    assert failed.failed and not failed.dry_run
    assert dry.dry_run and not dry.failed


def test_account_falls_back_to_the_identity_when_recipient_is_missing() -> None:
    event = parse_event(make_record(EVENT, recipientAccountId=None))
    assert event.account_id == "111122223333"


@pytest.mark.parametrize("missing", ["eventID", "eventTime", "awsRegion"])
def test_records_without_what_a_finding_needs_are_invalid_with_their_id(missing: str) -> None:
    record = make_record(EVENT, event_id="abc-123", **{missing: None})
    with pytest.raises(InvalidRecord) as info:
        parse_event(record, origin="file.json#1")
    assert missing in str(info.value)
    assert (info.value.record_id or "") in ("abc-123", "file.json#1")


def test_a_bad_time_is_invalid() -> None:
    with pytest.raises(InvalidRecord, match="ISO 8601"):
        parse_event(make_record(EVENT, eventTime="yesterday"))


def test_no_account_anywhere_is_invalid() -> None:
    record = make_record(EVENT, recipientAccountId=None, userIdentity={"type": "AWSService", "invokedBy": "ec2.amazonaws.com"})
    with pytest.raises(InvalidRecord, match="account"):
        parse_event(record)
