"""Parse a selected CloudTrail record dict into a typed ``CloudTrailEvent``.

This is where CloudTrail's loose shapes are pinned down once: eventVersion 1.0 through 1.11,
``requestParameters`` null or missing on failed calls, identities without an ARN (AWS services),
``sourceIPAddress``/``userAgent`` absent, and account ids that lost their leading zeros.
Unknown extra fields are ignored here and kept in ``raw``.

The values that end up in finding ids, console URLs, product ARNs and sink paths (``eventID``,
``awsRegion``, ``recipientAccountId``, the ARN's partition) are the caller's text: a record whose
value is not of the strict AWS form is ``InvalidRecord`` (dead-lettered with the reason), never
passed on; a partition that is not one is derived from the region instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connector.errors import InvalidRecord
from connector.model import CloudTrailEvent, Identity
from connector.trust import PARTITIONS, event_id_problem, region_problem


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = (value if type(value) is str else str(value)).strip()
    return text or None


#: What may reach a finding id, a console URL, a product ARN or a file path from the record.
#: ``str.isdigit()`` is not enough: it accepts Arabic-Indic and fullwidth digits.
_ACCOUNT = re.compile(r"[0-9]{1,12}")


def normalize_account(value: Any) -> str | None:
    """A 12-digit account id. Exporters that treat ids as numbers drop leading zeros; restore them."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = _text(value)
    if text is None or _ACCOUNT.fullmatch(text) is None:
        return None
    return text.zfill(12)


def _shown(value: Any) -> str:
    """A hostile value in an error message: quoted, one line, bounded."""
    return repr(value)[:80]


def partition_for(region: str, arn: str | None = None) -> str:
    """The AWS partition, from an ARN when there is one, else from the region name."""
    if arn and arn.startswith("arn:"):
        parts = arn.split(":")
        if len(parts) > 1 and parts[1] in PARTITIONS:  # the ARN is the record's: never trusted blindly
            return parts[1]
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso-"):
        return "aws-iso"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    return "aws"


def parse_time(value: Any, *, record_id: str) -> datetime:
    text = _text(value)
    if text is None:
        raise InvalidRecord("eventTime is missing", record_id=record_id)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRecord(f"eventTime {_shown(text)} is not an ISO 8601 time", record_id=record_id) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        # 9999-12-31T23:59:59-05:00 is a valid time whose UTC is past year 9999; the epoch
        # milliseconds of OCSF need it representable too.
        utc = parsed.astimezone(UTC)
        utc.timestamp()
    except (OverflowError, ValueError, OSError):
        raise InvalidRecord(f"eventTime {_shown(text)} is outside the representable range", record_id=record_id) from None
    return utc


def _section(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested object of the record, or an empty one when it is absent or not an object."""
    value = parent.get(key)
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def parse_identity(raw: Any) -> Identity:
    if type(raw) is not dict and not isinstance(raw, Mapping):
        return Identity()
    session = _section(raw, "sessionContext")
    issuer = _section(session, "sessionIssuer")
    attributes = _section(session, "attributes")
    mfa = _text(attributes.get("mfaAuthenticated"))
    on_behalf = _section(raw, "onBehalfOf")
    return Identity(
        type=_text(raw.get("type")),
        arn=_text(raw.get("arn")),
        principal_id=_text(raw.get("principalId")),
        account_id=normalize_account(raw.get("accountId")),
        user_name=_text(raw.get("userName")),
        access_key_id=_text(raw.get("accessKeyId")),
        invoked_by=_text(raw.get("invokedBy")),
        session_issuer_arn=_text(issuer.get("arn")),
        session_issuer_name=_text(issuer.get("userName")),
        session_issuer_type=_text(issuer.get("type")),
        session_created=_text(attributes.get("creationDate")),
        mfa_authenticated=None if mfa is None else mfa.lower() == "true",
        on_behalf_of_user_id=_text(on_behalf.get("userId")),
        identity_store_arn=_text(on_behalf.get("identityStoreArn")),
        credential_id=_text(raw.get("credentialId")),
    )


def parse_event(record: Mapping[str, Any], *, origin: str = "") -> CloudTrailEvent:
    """Turn one record of a selected event into a ``CloudTrailEvent`` or raise ``InvalidRecord``."""
    if type(record) is not dict and not isinstance(record, Mapping):
        raise InvalidRecord("a CloudTrail record must be a JSON object", record_id=origin or None)
    raw_id = record.get("eventID")
    event_id = _text(raw_id) if isinstance(raw_id, str) else None
    if event_id is None:
        raise InvalidRecord("eventID is missing: the finding id cannot be derived", record_id=origin or "(no eventID)")
    # Region and eventID become the finding id, the Security Hub endpoint and the OpenSearch _id.
    problem = event_id_problem(event_id)
    if problem:
        raise InvalidRecord(problem, record_id=origin or "(invalid eventID)")
    record_id = event_id
    name = record.get("eventName")
    source = record.get("eventSource")
    if not isinstance(name, str) or not isinstance(source, str) or not name.strip() or not source.strip():
        raise InvalidRecord("eventName or eventSource is missing", record_id=record_id)
    name, source = name.strip(), source.strip()
    region = _text(record.get("awsRegion"))
    if region is None:
        raise InvalidRecord("awsRegion is missing", record_id=record_id)
    problem = region_problem(region)
    if problem:
        raise InvalidRecord(problem, record_id=record_id)
    identity = parse_identity(record.get("userIdentity"))
    recipient = record.get("recipientAccountId")
    account = normalize_account(recipient)
    if recipient is not None and recipient != "" and account is None:
        # Never fall back to the caller's account here: a cross-account record would be filed
        # under the wrong account.
        raise InvalidRecord(f"recipientAccountId {_shown(recipient)} is not a 12-digit account id", record_id=record_id)
    account = account or identity.account_id
    if account is None:
        raise InvalidRecord(
            "no 12-digit account id in recipientAccountId or userIdentity.accountId", record_id=record_id
        )
    return CloudTrailEvent(
        event_id=event_id,
        event_name=name,
        event_source=source,
        event_time=parse_time(record.get("eventTime"), record_id=record_id),
        event_version=_text(record.get("eventVersion")),
        account_id=account,
        region=region,
        partition=partition_for(region, identity.arn),
        identity=identity,
        source_ip=_text(record.get("sourceIPAddress")),
        user_agent=_text(record.get("userAgent")),
        request_id=_text(record.get("requestID")),
        error_code=_text(record.get("errorCode")),
        error_message=_text(record.get("errorMessage")),
        raw=record,
        origin=origin,
    )
