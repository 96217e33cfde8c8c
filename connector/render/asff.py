"""Finding → ASFF (AWS Security Finding Format) for Security Hub ``BatchImportFindings``.

Pure function of the neutral finding. CreatedAt = First/LastObservedAt = eventTime; UpdatedAt
is when this version was rendered, so Security Hub applies a corrected finding (same
deterministic Id) instead of ignoring it as not newer; a redelivery overwrites in place. Limits held here: Title 256,
Description 1024, Recommendation.Text 512, ProductFields 50 pairs (key 128, value 2048),
Details.Other values < 1024.
See https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-findings-format.html
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Any

from connector.mapping.loader import COMMON_VARIABLES
from connector.model import Finding, utc_millis
from connector.render.links import docs_url
from connector.triage.result import TriageResult

SCHEMA_VERSION = "2018-10-08"
#: What the Security Hub console shows as the finding's source, instead of "Personal / Default".
COMPANY_NAME = "CloudTrail Findings Connector"
PRODUCT_NAME = "EC2 network deletion findings"
PRODUCT_FIELD_PREFIX = "cloudtrail"
MAX_PRODUCT_FIELDS = 50
CONSOLE_HOSTS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


def iso(finding: Finding) -> str:
    """The event time with ASFF's milliseconds (CloudTrail's time has none): ``….000Z``."""
    return finding.event.time_text[:-1] + ".000Z"


def default_product_arn(partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"


def cloudtrail_console_url(finding: Finding) -> str:
    event = finding.event
    host = CONSOLE_HOSTS.get(event.partition, CONSOLE_HOSTS["aws"])
    return f"https://{event.region}.{host}/cloudtrailv2/home?region={event.region}#/events/{event.event_id}"


#: Exactly the dotted quads ``ipaddress`` accepts: ASCII digits, 0-255, no leading zero.
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def ip_version(text: str) -> int:
    """``ipaddress.ip_address(text).version``, 0 for what is not an address (``sourceIPAddress``
    is often a service name). The common dotted quad is matched without ``ipaddress``; text with
    no ``:`` can be no IPv6 address, so only the rest is parsed."""
    if _IPV4.fullmatch(text) is not None:
        return 4
    if ":" not in text:
        return 0
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


def _ipv4(text: str | None) -> str | None:
    return text if text and ip_version(text) == 4 else None


def _api_call_action(finding: Finding, when: str) -> dict[str, Any]:
    """The call itself: API, service, caller type and address (``DomainDetails`` for an AWS service
    calling on a principal's behalf), so Security Hub filters and insights on them work.
    ``when``: ``iso(finding)``."""
    event = finding.event
    action: dict[str, Any] = {
        "Api": event.event_name[:128],
        "ServiceName": event.event_source[:128],
        "FirstSeen": when,
        "LastSeen": when,
    }
    ip = _ipv4(event.source_ip)
    if ip:
        action["CallerType"] = "remoteip"
        action["RemoteIpDetails"] = {"IpAddressV4": ip}
    elif event.source_ip:
        action["CallerType"] = "domain"  # an AWS service, e.g. cloudformation.amazonaws.com
        action["DomainDetails"] = {"Domain": event.source_ip[:128]}
    resources = [r.arn for r in finding.resources if r.role == "target" and r.arn.startswith("arn:")][:10]
    if resources:
        action["AffectedResources"] = {f"resource{i}": arn[:1024] for i, arn in enumerate(resources, 1)}
    return action


def _triage_fields(triage: TriageResult | None) -> dict[str, str | None]:
    """Why the severity or status differs from the mapping's: rule ids and reasons (filterable)."""
    if triage is None or not triage.applied:
        return {}
    suppression = triage.suppression
    return {
        "connector/triage/baseSeverity": triage.base.name,
        "connector/triage/rules": ",".join(a.rule_id for a in triage.adjustments),
        "connector/triage/adjustments": triage.explanation,
        "connector/triage/suppressedBy": suppression.rule_id if suppression else None,
        "connector/triage/suppressionReason": (
            f"{suppression.reason} (owner {suppression.owner}"
            + (f", until {suppression.until:%Y-%m-%dT%H:%M:%SZ})" if suppression.until else ")")
        ) if suppression else None,
    }


#: The record's own fields, in the order ``ProductFields`` lists them (each key < 128 characters).
_EVENT_FIELDS = (*(f"{PRODUCT_FIELD_PREFIX}/{name}" for name in (
    "eventName", "eventSource", "eventID", "eventTime", "eventVersion", "requestID", "awsRegion", "sourceIPAddress",
    "userAgent", "userIdentity/type", "userIdentity/arn", "userIdentity/principalId", "userIdentity/accessKeyId",
    "userIdentity/invokedBy", "userIdentity/sessionIssuer", "errorCode", "errorMessage")),
    "connector/principal", "connector/outcome", "connector/severityReason", "connector/mapping")


def _product_fields(finding: Finding, triage: TriageResult | None = None) -> dict[str, str]:
    event = finding.event
    ident = event.identity
    p = PRODUCT_FIELD_PREFIX
    values = (event.event_name, event.event_source, event.event_id, event.time_text, event.event_version,
              event.request_id, event.region, event.source_ip, event.user_agent, ident.type, ident.arn,
              ident.principal_id, ident.access_key_id, ident.invoked_by, ident.session_issuer_arn, event.error_code,
              event.error_message, ident.display, finding.outcome, finding.severity_reason,
              f"{finding.mapping_id}@{finding.mapping_version}")
    # the fixed keys need no clipping; what follows them (rule ids, value names) may
    clean = {k: v[:2048] for k, v in zip(_EVENT_FIELDS, values, strict=True) if v and v.strip()}
    fields: dict[str, str | None] = _triage_fields(triage)
    fields.update(_enrichment_fields(finding))
    for attack in finding.attacks:
        fields[f"connector/attack/{attack.version}"] = ",".join(
            uid for uid in (attack.tactic_uid, attack.technique_uid, attack.sub_technique_uid) if uid
        )
    for name, value in sorted([item for item in finding.values.items() if item[0] not in COMMON_VARIABLES]):
        fields[f"{p}/requestParameters/{name}"] = value
    # What an analyst needs in the console without opening the runbook: the commands with the
    # event's ids (each within the 2,048-character value limit), what the call does and breaks.
    for index, command in enumerate(finding.remediation.cli, 1):
        fields[f"connector/runbook/cli/{index}"] = f"{command.description}: {command.command}"
    fields["connector/information"] = " ".join(finding.information)
    fields["connector/impact"] = " ".join(finding.impact)
    clean.update({k[:128]: v[:2048] for k, v in fields.items() if v and v.strip()})
    return clean if len(clean) <= MAX_PRODUCT_FIELDS else dict(list(clean.items())[:MAX_PRODUCT_FIELDS])


def _enrichment_fields(finding: Finding) -> dict[str, str | None]:
    """What the enrichment read (or why not): ahead of the runbook lines, inside the 50 pairs."""
    enrichment = finding.enrichment
    if enrichment is None:
        return {}
    fields: dict[str, str | None] = {"connector/enrichment": enrichment.note}
    blast = enrichment.blast_radius
    if blast is not None:
        fields["connector/blastRadius"] = blast.summary
        fields["connector/blastRadius/routeTables"] = " ".join(t.route_table_id for t in blast.route_tables)
        fields["connector/blastRadius/subnets"] = " ".join(blast.subnets)
        fields["connector/blastRadius/runningInstances"] = str(blast.running_instances)
    for name, value in sorted(enrichment.values.items())[:15]:
        fields[f"connector/enriched/{name}"] = value
    return fields


ACTOR_TYPES = {"IAMUser": "AwsIamUser", "AssumedRole": "AwsIamRole", "Role": "AwsIamRole"}
ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{0,12}:[\x21-\x7e]{1,1900}$")
ACCESS_KEY = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,124}$")


def _actor_resources(finding: Finding) -> list[dict[str, Any]]:
    """Who acted, as resources with ``ResourceRole`` Actor, so that Security Hub filters and
    insights by principal or access key find the finding. Only well-formed ARNs and key ids:
    these come from the record."""
    event = finding.event
    ident = event.identity
    out: list[dict[str, Any]] = []
    base = {"Partition": event.partition, "Region": event.region, "ResourceRole": "Actor"}
    role_arn = ident.session_issuer_arn if ident.type == "AssumedRole" else ident.arn
    if ident.type in ACTOR_TYPES and role_arn and ARN.match(role_arn):
        out.append({"Type": ACTOR_TYPES[ident.type], "Id": role_arn, **base})
    # AWS's own integrations use "AWS::IAM::AccessKey:<id>" as the key's Id; ASFF wants an ARN for
    # Aws* types and an access key has none, so the key is filed under the ARN that used it.
    if ident.access_key_id and ACCESS_KEY.match(ident.access_key_id) and ident.arn and ARN.match(ident.arn):
        details = {k: v for k, v in {
            "PrincipalId": ident.principal_id, "PrincipalType": ident.type,
            "PrincipalName": ident.user_name or ident.session_issuer_name, "AccountId": ident.account_id,
            "AccessKeyId": ident.access_key_id,
        }.items() if v}
        out.append({"Type": "AwsIamAccessKey", "Id": ident.arn, **base,
                    "Details": {"AwsIamAccessKey": details}})
    return out


def _resources(finding: Finding) -> list[dict[str, Any]]:
    out = []
    for resource in finding.resources:
        entry: dict[str, Any] = {
            "Type": resource.asff_type,
            "Id": resource.arn,
            "Partition": resource.partition,
            "Region": resource.region,
            "ResourceRole": "Target" if resource.role == "target" else "Other",
        }
        if resource.asff_type == "Other":
            other = {k[:127]: v[:1023] for k, v in resource.details_other.items() if v.strip()}
            other.setdefault("ResourceType", resource.ocsf_type)
            other.setdefault("ResourceId", resource.id[:1023])
            entry["Details"] = {"Other": dict(list(other.items())[:50])}
        elif resource.details:
            entry["Details"] = {resource.asff_type: dict(resource.details)}
        out.append(entry)
    return out + _actor_resources(finding)


def render_asff(finding: Finding, *, product_arn: str | None = None, updated_at: datetime | None = None,
                triage: TriageResult | None = None, recommendation_url: str | None = None) -> dict[str, Any]:
    """``updated_at``: when this version was made (defaults to the event time, for pure rendering).
    ``triage``: the rules that moved the severity or suppressed the finding (``ProductFields``
    ``connector/triage/*``; a suppressed finding is created with ``Workflow.Status`` SUPPRESSED).
    ``recommendation_url``: instead of the documentation (e.g. the finding in the SOC's Dashboards,
    connector/render/links.py); the documentation page then stays in ``ProductFields``."""
    event = finding.event
    when = iso(finding)
    updated = utc_millis((updated_at or event.event_time).astimezone(UTC))
    severity = {"Label": finding.severity.name, "Original": finding.severity.name}
    fields = _product_fields(finding, triage)
    if recommendation_url and len(fields) < MAX_PRODUCT_FIELDS:
        fields["connector/documentation"] = docs_url(finding.remediation.url, event.partition)[:2048]
    return {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding.id,
        "ProductArn": product_arn or default_product_arn(event.partition, event.region, event.account_id),
        "CompanyName": COMPANY_NAME,
        "ProductName": PRODUCT_NAME,
        "GeneratorId": finding.mapping_id,
        "AwsAccountId": event.account_id,
        "Types": list(finding.asff_types),
        "CreatedAt": when,
        "UpdatedAt": updated,
        "FirstObservedAt": when,
        "LastObservedAt": when,
        "Severity": severity,
        "Title": finding.title,
        "Description": finding.description,
        "Remediation": {"Recommendation": {"Text": finding.remediation.summary,
                                            "Url": recommendation_url or docs_url(finding.remediation.url, event.partition)}},
        "SourceUrl": cloudtrail_console_url(finding),
        "ProductFields": fields,
        "Resources": _resources(finding),
        "Action": {"ActionType": "AWS_API_CALL", "AwsApiCallAction": _api_call_action(finding, when)},
        "FindingProviderFields": {"Severity": dict(severity), "Types": list(finding.asff_types)},
        "Workflow": {"Status": "SUPPRESSED" if triage is not None and triage.suppressed else "NEW"},
        "RecordState": "ACTIVE",
    }
