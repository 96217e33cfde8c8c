"""Finding → ASFF (AWS Security Finding Format) for Security Hub ``BatchImportFindings``.

Pure function of the neutral finding. Times are the event's (CreatedAt = UpdatedAt =
First/LastObservedAt = eventTime) so a redelivered record re-imports the identical finding and
Security Hub updates it in place instead of adding another. Limits held here: Title 256,
Description 1024, Recommendation.Text 512, ProductFields 50 pairs (key 128, value 2048),
Details.Other values < 1024.
See https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-findings-format.html
"""

from __future__ import annotations

import ipaddress
from typing import Any

from connector.mapping.loader import COMMON_VARIABLES
from connector.model import Finding

SCHEMA_VERSION = "2018-10-08"
PRODUCT_FIELD_PREFIX = "cloudtrail"
MAX_PRODUCT_FIELDS = 50
CONSOLE_HOSTS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


def iso(finding: Finding) -> str:
    return finding.event.event_time.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def default_product_arn(partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"


def cloudtrail_console_url(finding: Finding) -> str:
    event = finding.event
    host = CONSOLE_HOSTS.get(event.partition, CONSOLE_HOSTS["aws"])
    return f"https://{event.region}.{host}/cloudtrailv2/home?region={event.region}#/events/{event.event_id}"


def _ipv4(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return text if ipaddress.ip_address(text).version == 4 else None
    except ValueError:
        return None


def _api_call_action(finding: Finding) -> dict[str, Any]:
    """Caller type and address. ``Api``, ``ServiceName`` and ``DomainDetails.Domain`` are left out on
    purpose: the API Reference documents them as "Length Constraints: 128.", which validators read as
    *exactly* 128 characters; the API and service travel in ProductFields (cloudtrail/eventName,
    cloudtrail/eventSource) and the caller's service name in cloudtrail/sourceIPAddress instead."""
    event = finding.event
    action: dict[str, Any] = {"FirstSeen": iso(finding), "LastSeen": iso(finding)}
    ip = _ipv4(event.source_ip)
    if ip:
        action["CallerType"] = "remoteip"
        action["RemoteIpDetails"] = {"IpAddressV4": ip}
    elif event.source_ip:
        action["CallerType"] = "domain"  # an AWS service, e.g. cloudformation.amazonaws.com
    return action


def _product_fields(finding: Finding) -> dict[str, str]:
    event = finding.event
    ident = event.identity
    p = PRODUCT_FIELD_PREFIX
    fields: dict[str, str | None] = {
        f"{p}/eventName": event.event_name,
        f"{p}/eventSource": event.event_source,
        f"{p}/eventID": event.event_id,
        f"{p}/eventTime": event.event_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{p}/eventVersion": event.event_version,
        f"{p}/requestID": event.request_id,
        f"{p}/awsRegion": event.region,
        f"{p}/sourceIPAddress": event.source_ip,
        f"{p}/userAgent": event.user_agent,
        f"{p}/userIdentity/type": ident.type,
        f"{p}/userIdentity/arn": ident.arn,
        f"{p}/userIdentity/principalId": ident.principal_id,
        f"{p}/userIdentity/accessKeyId": ident.access_key_id,
        f"{p}/userIdentity/invokedBy": ident.invoked_by,
        f"{p}/userIdentity/sessionIssuer": ident.session_issuer_arn,
        f"{p}/errorCode": event.error_code,
        f"{p}/errorMessage": event.error_message,
        "connector/principal": ident.display,
        "connector/outcome": finding.outcome,
        "connector/severityReason": finding.severity_reason,
        "connector/mapping": f"{finding.mapping_id}@{finding.mapping_version}",
    }
    for attack in finding.attacks:
        fields[f"connector/attack/{attack.version}"] = ",".join(
            uid for uid in (attack.tactic_uid, attack.technique_uid, attack.sub_technique_uid) if uid
        )
    for name, value in sorted(finding.values.items()):
        if name not in COMMON_VARIABLES:
            fields[f"{p}/requestParameters/{name}"] = value
    clean = {k[:128]: v[:2048] for k, v in fields.items() if v and v.strip()}
    return dict(list(clean.items())[:MAX_PRODUCT_FIELDS])


def _resources(finding: Finding) -> list[dict[str, Any]]:
    out = []
    for resource in finding.resources:
        entry: dict[str, Any] = {
            "Type": resource.asff_type,
            "Id": resource.arn,
            "Partition": resource.partition,
            "Region": resource.region,
        }
        if resource.asff_type == "Other":
            other = {k[:127]: v[:1023] for k, v in resource.details_other.items() if v.strip()}
            other.setdefault("ResourceType", resource.ocsf_type)
            other.setdefault("ResourceId", resource.id[:1023])
            entry["Details"] = {"Other": dict(list(other.items())[:50])}
        out.append(entry)
    return out


def render_asff(finding: Finding, *, product_arn: str | None = None) -> dict[str, Any]:
    event = finding.event
    when = iso(finding)
    severity = {"Label": finding.severity.name, "Original": finding.severity.name}
    return {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding.id,
        "ProductArn": product_arn or default_product_arn(event.partition, event.region, event.account_id),
        "GeneratorId": finding.mapping_id,
        "AwsAccountId": event.account_id,
        "Types": list(finding.asff_types),
        "CreatedAt": when,
        "UpdatedAt": when,
        "FirstObservedAt": when,
        "LastObservedAt": when,
        "Severity": severity,
        "Title": finding.title,
        "Description": finding.description,
        "Remediation": {"Recommendation": {"Text": finding.remediation.summary, "Url": finding.remediation.url}},
        "SourceUrl": cloudtrail_console_url(finding),
        "ProductFields": _product_fields(finding),
        "Resources": _resources(finding),
        "Action": {"ActionType": "AWS_API_CALL", "AwsApiCallAction": _api_call_action(finding)},
        "FindingProviderFields": {"Severity": dict(severity), "Types": list(finding.asff_types)},
        "Workflow": {"Status": "NEW"},
        "RecordState": "ACTIVE",
    }
