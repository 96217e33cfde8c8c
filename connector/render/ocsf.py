"""Finding → OCSF Detection Finding (class_uid 2004, category 2 Findings), OCSF ``OCSF_VERSION``.

Pure function of the neutral finding. Profile-gated attributes are declared in
``metadata.profiles``: top-level ``api`` and ``cloud`` need the ``cloud`` profile. The actor and
the caller's endpoint live in ``evidences[]``, which needs no profile (a top-level ``actor`` would
need ``host``, which describes a device we do not have). ATT&CK goes in ``finding_info.attacks``.
Times are epoch milliseconds of the event. See https://schema.ocsf.io/1.8.0/classes/detection_finding
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from connector import __version__
from connector.mapping.loader import COMMON_VARIABLES
from connector.model import Finding, Identity
from connector.render.asff import cloudtrail_console_url, ip_version
from connector.render.links import docs_url
from connector.triage.result import TriageResult
from connector.trust import safe_display

#: The one place the OCSF version is pinned.
OCSF_VERSION = "1.8.0"
PROFILES = ("cloud",)
CLASS_UID = 2004
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
STATUS_NEW = 1
STATUS_SUPPRESSED = 3
PRODUCT = {
    "uid": "cloudtrail-findings-connector",
    "name": "CloudTrail Findings Connector",
    "vendor_name": "cloudtrail-findings-connector",
    "version": __version__,
}
SEVERITY_CAPTIONS = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
#: OCSF user.type_id: 1 User, 2 Admin, 3 System, 99 Other (caption free).
USER_TYPES = {"IAMUser": (1, "User"), "IdentityCenterUser": (1, "User"), "Root": (2, "Admin"),
              "AWSService": (4, "Service")}


#: ``json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)`` without building an
#: encoder per finding.
_raw_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def epoch_ms(finding: Finding) -> int:
    return int(finding.event.event_time.timestamp() * 1000)


def _user(ident: Identity, account: str) -> dict[str, Any]:
    type_id, caption = USER_TYPES.get(ident.type or "", (99, ident.type or "Other"))
    user: dict[str, Any] = {
        "type_id": type_id,
        "type": caption,
        "account": {"uid": ident.account_id or account, "type_id": 10, "type": "AWS Account"},
    }
    # As AWS Security Lake maps CloudTrail: uid is the ARN, uid_alt the principal id, name the
    # user or session name (the role itself is the session's issuer).
    if ident.arn:
        user["uid"] = ident.arn
        if ident.principal_id:
            user["uid_alt"] = ident.principal_id
    elif ident.principal_id:
        user["uid"] = ident.principal_id
    session_name = (ident.arn or "").rsplit("/", 1)[-1] if ident.type == "AssumedRole" else None
    name = ident.user_name or session_name or ident.on_behalf_of_user_id or None
    if ident.type == "Root" and not name:
        name = "root"
    if name:
        user["name"] = name
    if ident.identity_store_arn:
        user["domain"] = ident.identity_store_arn
    if ident.access_key_id:
        # user.credential_uid is deprecated since OCSF 1.6 (check_ocsf --strict rejects it).
        user["programmatic_credentials"] = [{"uid": ident.access_key_id, "type": "AWS Access Key"}]
    return user


def _actor(finding: Finding) -> dict[str, Any]:
    ident = finding.event.identity
    actor: dict[str, Any] = {"user": _user(ident, finding.event.account_id)}
    if ident.invoked_by:
        actor["app_name"] = ident.invoked_by  # OCSF 1.8 deprecates actor.invoked_by for app_name
    if ident.session_issuer_arn or ident.session_created or ident.mfa_authenticated is not None:
        session: dict[str, Any] = {}
        if ident.session_issuer_arn:
            session["issuer"] = ident.session_issuer_arn
        if ident.mfa_authenticated is not None:
            session["is_mfa"] = ident.mfa_authenticated
        if ident.access_key_id:
            session["credential_uid"] = ident.access_key_id
        if session:
            actor["session"] = session
    return actor


def _src_endpoint(finding: Finding) -> dict[str, Any] | None:
    source = finding.event.source_ip
    endpoint = finding.event.raw.get("vpcEndpointId")
    out: dict[str, Any] = {}
    if isinstance(endpoint, str) and endpoint:
        out["uid"] = endpoint[:128]  # the call came through this VPC endpoint (Security Lake: src_endpoint.uid)
    if source:
        if ip_version(source):
            out["ip"] = source
        else:
            out["domain"] = source[:253]  # an AWS service name such as cloudformation.amazonaws.com
    return out or None


def _api(finding: Finding) -> dict[str, Any]:
    event = finding.event
    api: dict[str, Any] = {"operation": event.event_name, "service": {"name": event.event_source}}
    if event.request_id:
        api["request"] = {"uid": event.request_id}
    if event.error_code:
        response: dict[str, Any] = {"error": event.error_code}
        if event.error_message:
            response["error_message"] = event.error_message
        api["response"] = response
    return api


#: CloudTrail's errorCode: an API error name such as ``Client.UnauthorizedOperation`` or ``AccessDenied``.
ERROR_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9._:-]{0,127}$")
#: ``status_detail`` carries the caller-supplied errorMessage clipped to this (the encoded
#: authorization message of an UnauthorizedOperation is kilobytes long and says nothing decoded).
MAX_ERROR_MESSAGE = 512


def _status(finding: Finding) -> dict[str, str]:
    """``status_code`` (CloudTrail's errorCode, if well-formed) and ``status_detail`` (the outcome
    and the errorMessage, control characters replaced, clipped) for a failed or dry-run call only."""
    event = finding.event
    if finding.outcome == "succeeded":
        return {}
    code = event.error_code if event.error_code and ERROR_CODE.match(event.error_code) else None
    shown = code or "a malformed error code"
    detail = (f"Dry run ({shown}): permission confirmed, nothing changed" if finding.outcome == "dry_run"
              else f"Attempt failed with {shown}: nothing was deleted")
    if event.error_message:
        detail += f". {safe_display(event.error_message, MAX_ERROR_MESSAGE)}"
    return {"status_code": code, "status_detail": detail} if code else {"status_detail": detail}


#: OCSF observable type ids (1.8.0 ``observable.type_id``) with their captions.
OBS_HOSTNAME, OBS_IP, OBS_USER_NAME, OBS_RESOURCE_UID = (1, "Hostname"), (2, "IP Address"), (4, "User Name"), (10, "Resource UID")
OBS_USER_AGENT, OBS_CREDENTIAL = (16, "HTTP User-Agent"), (19, "User Credential ID")
OBS_USER_UID, OBS_ACCOUNT_UID, OBS_PRINCIPAL_ID = (31, "User Object: uid"), (35, "Account Object: uid"), (99, "AWS Principal ID")
#: A DNS name (an AWS service principal such as ``cloudformation.amazonaws.com``); CloudTrail also
#: writes "AWS Internal" there, which is no host.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def _observables(document: dict[str, Any]) -> list[dict[str, Any]]:
    """What a SOC pivots on, each naming the attribute of this finding it repeats: the actor's
    ARN (or principal id), name and access key, the caller's IP or service host, the user agent,
    the resources' ARNs, the account. Read from the rendered document so name and value agree."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(name: str, kind: tuple[int, str], value: Any) -> None:
        if isinstance(value, str) and value and (name, value) not in seen:
            seen.add((name, value))
            out.append({"name": name, "type_id": kind[0], "type": kind[1], "value": value})

    for evidence in document.get("evidences", []):
        user = evidence.get("actor", {}).get("user", {})
        add("evidences.actor.user.uid", OBS_USER_UID, user.get("uid"))
        # The principal id (AIDA…, AROA…:session) has no OCSF type of its own: 99 Other, named as the source names it.
        add("evidences.actor.user.uid_alt", OBS_PRINCIPAL_ID, user.get("uid_alt"))
        add("evidences.actor.user.name", OBS_USER_NAME, user.get("name"))
        for credential in user.get("programmatic_credentials", []):
            add("evidences.actor.user.programmatic_credentials.uid", OBS_CREDENTIAL, credential.get("uid"))
        endpoint = evidence.get("src_endpoint", {})
        add("evidences.src_endpoint.ip", OBS_IP, endpoint.get("ip"))
        domain = endpoint.get("domain")
        if isinstance(domain, str) and _HOSTNAME.match(domain):
            add("evidences.src_endpoint.domain", OBS_HOSTNAME, domain)
        add("evidences.http_request.user_agent", OBS_USER_AGENT, evidence.get("http_request", {}).get("user_agent"))
    for resource in document.get("resources", []):
        add("resources.uid", OBS_RESOURCE_UID, resource.get("uid"))
    add("cloud.account.uid", OBS_ACCOUNT_UID, document.get("cloud", {}).get("account", {}).get("uid"))
    return out


def _attacks(finding: Finding) -> list[dict[str, Any]]:
    out = []
    for attack in finding.attacks:
        entry: dict[str, Any] = {
            "version": attack.version,
            "tactic": {"uid": attack.tactic_uid, "name": attack.tactic_name},
            "technique": {"uid": attack.technique_uid, "name": attack.technique_name},
        }
        if attack.sub_technique_uid:
            entry["sub_technique"] = {"uid": attack.sub_technique_uid, "name": attack.sub_technique_name or attack.sub_technique_uid}
        out.append(entry)
    return out


def _resources(finding: Finding) -> list[dict[str, Any]]:
    return [
        {
            "uid": resource.arn,
            "uid_alt": resource.id,
            "name": resource.id,
            "type": resource.ocsf_type,
            "region": resource.region,
            "cloud_partition": resource.partition,
            "role_id": 1 if resource.role == "target" else 99,
            "role": "Target" if resource.role == "target" else "Related",
        }
        for resource in finding.resources
    ]


def _enrichment(finding: Finding) -> dict[str, Any]:
    """What the enrichment read about the removed resource, or why it could not (connector/enrich/)."""
    enrichment = finding.enrichment
    assert enrichment is not None
    out: dict[str, Any] = {"status": enrichment.status, "problems": list(enrichment.problems),
                           "values": dict(enrichment.values), "calls": list(enrichment.calls)}
    blast = enrichment.blast_radius
    if blast is not None:
        out["blast_radius"] = {
            "summary": blast.summary,
            "route_tables": [
                {"uid": t.route_table_id, "vpc_uid": t.vpc_id, "destinations": list(t.destinations),
                 "subnets": list(t.subnets), "main": t.main}
                for t in blast.route_tables
            ],
            "subnets": list(blast.subnets),
            "running_instances": blast.running_instances,
        }
    return out


def _triage(triage: TriageResult) -> dict[str, Any]:
    """``unmapped.triage``: the mapping's severity, each context rule that moved it, the suppression."""
    out: dict[str, Any] = {
        "base_severity": triage.base.name,
        "severity": triage.severity.name,
        "adjustments": [
            {k: v for k, v in {
                "rule_id": a.rule_id, "reason": a.reason, "steps": a.steps,
                "at_least": a.at_least.name if a.at_least else None, "at_most": a.at_most.name if a.at_most else None,
            }.items() if v is not None}
            for a in triage.adjustments
        ],
    }
    if triage.suppression:
        s = triage.suppression
        out["suppression"] = {k: v for k, v in {
            "rule_id": s.rule_id, "reason": s.reason, "owner": s.owner,
            "until": s.until.strftime("%Y-%m-%dT%H:%M:%SZ") if s.until else None,
        }.items() if v is not None}
    return out


def class_header(severity_id: int, time_ms: int) -> dict[str, Any]:
    """The Detection Finding (2004) "Create" header every finding of ours opens with, new."""
    return {
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": SEVERITY_CAPTIONS[severity_id],
        "status_id": STATUS_NEW,
        "status": "New",
        "time": time_ms,
        "timezone_offset": 0,
    }


def render_ocsf(finding: Finding, *, updated_at: datetime | None = None, triage: TriageResult | None = None) -> dict[str, Any]:
    """``triage``: written to ``unmapped.triage``; a suppressed finding has ``status_id`` 3 Suppressed."""
    event = finding.event
    when = epoch_ms(finding)
    modified = int((updated_at or event.event_time).timestamp() * 1000)
    severity_id = int(finding.severity)
    evidence: dict[str, Any] = {"actor": _actor(finding), "api": _api(finding)}
    src = _src_endpoint(finding)
    if src:
        evidence["src_endpoint"] = src
    if event.user_agent:
        evidence["http_request"] = {"user_agent": event.user_agent}
    document: dict[str, Any] = {
        **class_header(severity_id, when),
        "message": finding.title,
        # A detection worth an analyst's attention; CloudTrail is the authoritative record of the call.
        "is_alert": True,
        "confidence_id": 3,
        "confidence": "High",
        "finding_info": {
            "uid": finding.id,
            "title": finding.title,
            "desc": finding.description,
            "types": list(finding.ocsf_types),
            "analytic": {
                "uid": finding.mapping_id,
                "name": finding.mapping_id,
                "type_id": 1,
                "type": "Rule",
                "version": finding.mapping_version,
            },
            "attacks": _attacks(finding),
            "created_time": when,
            "modified_time": modified,
            "first_seen_time": when,
            "last_seen_time": when,
            "data_sources": ["AWS CloudTrail"],
            "src_url": cloudtrail_console_url(finding),
        },
        "metadata": {
            "version": OCSF_VERSION,
            "profiles": list(PROFILES),
            "product": dict(PRODUCT),
            "uid": finding.id,
            "event_code": event.event_name,
            "original_event_uid": event.event_id,
            "original_time": event.time_text,
            "log_provider": "AWS CloudTrail",
            "tenant_uid": event.account_id,
        },
        "cloud": {
            "provider": "AWS",
            "region": event.region,
            "cloud_partition": event.partition,
            "account": {"uid": event.account_id, "type_id": 10, "type": "AWS Account"},
        },
        "api": _api(finding),
        "evidences": [evidence],
        "resources": _resources(finding),
        "remediation": {
            "desc": finding.remediation.runbook,
            "references": list(finding.remediation.references),
            "kb_article_list": [{"title": "Remediation", "src_url": docs_url(finding.remediation.url, event.partition)}],
        },
        "raw_data": _raw_json(event.raw),
        "unmapped": {
            "severity_reason": finding.severity_reason,
            "outcome": finding.outcome,
            "information": list(finding.information),
            "impact": list(finding.impact),
            "cloudtrail_event_version": event.event_version,
            "request_parameters": {k: v for k, v in finding.values.items() if k not in COMMON_VARIABLES},
        },
    }
    if triage is not None and triage.applied:
        document["unmapped"]["triage"] = _triage(triage)
        if triage.suppression:
            document["status_id"], document["status"] = STATUS_SUPPRESSED, "Suppressed"
    if finding.enrichment is not None:
        document["unmapped"]["enrichment"] = _enrichment(finding)
    document.update(_status(finding))
    document["observables"] = _observables(document)
    return document
