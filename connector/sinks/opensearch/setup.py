"""Install the index templates, the ISM policy and the Dashboards saved objects, idempotently.

The files under ``deploy/opensearch/`` are written for the default prefix ``cloudtrail-findings``;
another ``opensearch.index_prefix`` is substituted in their index patterns, aliases and
index-pattern titles. Running setup twice changes nothing and says "unchanged".

Aliases are per format (``<prefix>-asff``, ``<prefix>-ocsf``). Earlier templates also put every
index behind ``<prefix>``, an alias over both formats, so each finding was counted twice (once as
ASFF, once as OCSF); setup removes that alias from the indexes that still carry it.

The Dashboards objects (``deploy/opensearch/dashboards/findings.ndjson``) go through the
saved-objects import API of OpenSearch Dashboards (``POST /api/saved_objects/_import``,
https://opensearch.org/docs/latest/dashboards/management/saved-objects/ ) when a Dashboards URL
is given; OpenSearch itself has no API for them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from connector.config import OpenSearchSettings
from connector.errors import ConfigError, ConnectorError
from connector.paths import ROOT

DEFAULT_PREFIX = "cloudtrail-findings"
#: Dashboards' grid is 48 columns wide; a panel past it is cut off or pushed below.
GRID_COLUMNS = 48
SAVED_OBJECTS_FILE = "findings.ndjson"


def deploy_dir() -> Path:
    return Path(os.environ.get("CONNECTOR_DEPLOY_DIR") or ROOT / "deploy") / "opensearch"


def load_templates(prefix: str) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((deploy_dir() / "templates").glob("*.json")):
        text = path.read_text().replace(DEFAULT_PREFIX, prefix)
        out[path.stem.replace(DEFAULT_PREFIX, prefix)] = json.loads(text)
    return out


def _fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def install(client: Any, prefix: str, ism: bool = True) -> list[str]:
    """Install what is missing or different; return one line per object saying what happened."""
    lines = []
    for name, body in load_templates(prefix).items():
        # OpenSearch normalises what it stores, so compare a fingerprint kept in _meta instead.
        fingerprint = _fingerprint(body)
        body = dict(body, _meta=dict(body.get("_meta", {}), connector_fingerprint=fingerprint))
        current = None
        # HEAD first: opensearch-py logs every 404 answer to a GET as a warning, never to a HEAD.
        if client.indices.exists_index_template(name=name):
            try:
                current = client.indices.get_index_template(name=name)["index_templates"][0]["index_template"]
            except NotFoundError:  # deleted in between
                current = None
        if current is not None and current.get("_meta", {}).get("connector_fingerprint") == fingerprint:
            lines.append(f"index template {name}: unchanged")
            continue
        client.indices.put_index_template(name=name, body=body)
        lines.append(f"index template {name}: {'updated' if current else 'created'}")
        if current is not None:
            lines.append(_extend_existing(client, body))
    lines.append(_remove_combined_alias(client, prefix))
    if ism:
        lines.append(_install_ism(client, prefix))
    return [line for line in lines if line]


def _extend_existing(client: Any, template: dict[str, Any]) -> str:
    """Fields a newer template maps are added to the indexes it already made (adding a field is
    allowed; documents written before are not re-read, new ones are searchable by it)."""
    patterns = ",".join(template["index_patterns"])
    mappings = template["template"].get("mappings", {})
    try:
        client.indices.put_mapping(index=patterns, body=mappings, allow_no_indices=True, expand_wildcards="open")
    except RequestError as exc:  # a field of another type already there: say so, keep going
        return f"existing indexes {patterns}: mapping not extended ({exc.error}: {exc.info})"
    return f"existing indexes {patterns}: mapping extended"


def _remove_combined_alias(client: Any, prefix: str) -> str:
    if not client.indices.exists_alias(name=prefix):
        return ""
    try:
        holders = sorted(client.indices.get_alias(name=prefix))
    except NotFoundError:
        return ""
    if not holders:
        return ""
    actions = [{"remove": {"index": index, "alias": prefix}} for index in holders]
    client.indices.update_aliases(body={"actions": actions})
    return (f"alias {prefix}: removed from {len(holders)} index(es) (it spanned both formats and counted every "
            f"finding twice; use {prefix}-asff or {prefix}-ocsf)")


def _install_ism(client: Any, prefix: str) -> str:
    policy_id = f"{prefix}-retention"
    text = (deploy_dir() / "ism-policy.json").read_text().replace(DEFAULT_PREFIX, prefix)
    body = json.loads(text)
    try:
        current = client.transport.perform_request("GET", f"/_plugins/_ism/policies/{policy_id}")
    except NotFoundError:
        current = None
    except TransportError as exc:
        if exc.status_code in (400, 405):  # "no handler found for uri": the plugin is absent
            return "ISM policy: skipped (the Index State Management plugin is not installed)"
        raise
    if current is not None:
        if current.get("policy", {}).get("states") == body["policy"]["states"]:
            return f"ISM policy {policy_id}: unchanged"
        client.transport.perform_request(
            "PUT", f"/_plugins/_ism/policies/{policy_id}",
            params={"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]}, body=body,
        )
        return f"ISM policy {policy_id}: updated"
    client.transport.perform_request("PUT", f"/_plugins/_ism/policies/{policy_id}", body=body)
    return f"ISM policy {policy_id}: created"


# ---- Dashboards saved objects -------------------------------------------------------------------

def saved_objects(prefix: str) -> list[dict[str, Any]]:
    """The saved objects for ``prefix``: index-pattern titles follow it, and so do the object ids
    (``ctf-*`` for the default), so two prefixes imported into one Dashboards do not overwrite
    each other's objects."""
    text = (deploy_dir() / "dashboards" / SAVED_OBJECTS_FILE).read_text().replace(DEFAULT_PREFIX, prefix)
    if prefix != DEFAULT_PREFIX:
        text = text.replace('"ctf-', f'"{prefix}-')
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(json.loads(dashboard["attributes"]["panelsJSON"]))


def layout_errors(objects: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the dashboards' layout and references (empty when nothing is)."""
    errors = []
    ids = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        for ref in obj.get("references", []):
            if (ref["type"], ref["id"]) not in ids:
                errors.append(f"{obj['type']} {obj['id']}: reference {ref['name']} to missing {ref['type']} {ref['id']}")
        if obj["type"] != "dashboard":
            continue
        refs = {r["name"] for r in obj.get("references", [])}
        placed: list[tuple[str, dict[str, int]]] = []
        for panel in panels(obj):
            grid, name = panel["gridData"], f"dashboard {obj['id']} panel {panel['panelIndex']}"
            if panel.get("panelRefName") not in refs:
                errors.append(f"{name}: panelRefName {panel.get('panelRefName')} is not a reference")
            if grid["x"] < 0 or grid["y"] < 0 or grid["w"] < 1 or grid["h"] < 1 or grid["x"] + grid["w"] > GRID_COLUMNS:
                errors.append(f"{name}: x={grid['x']} w={grid['w']} does not fit the {GRID_COLUMNS}-column grid")
            for other, seen in placed:
                if (grid["x"] < seen["x"] + seen["w"] and seen["x"] < grid["x"] + grid["w"]
                        and grid["y"] < seen["y"] + seen["h"] and seen["y"] < grid["y"] + grid["h"]):
                    errors.append(f"{name}: overlaps panel {other}")
            placed.append((panel["panelIndex"], grid))
    return errors


def aggregated_fields(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(object id, field) for every field a visualization aggregates on or a search shows."""
    for obj in objects:
        attributes = obj["attributes"]
        if "visState" in attributes:
            for agg in json.loads(attributes["visState"]).get("aggs", []):
                field = agg.get("params", {}).get("field")
                if field:
                    yield obj["id"], field
        for column in attributes.get("columns", []):
            yield obj["id"], column
        if attributes.get("timeFieldName"):
            yield obj["id"], attributes["timeFieldName"]


def import_request(dashboards_url: str, settings: OpenSearchSettings) -> requests.PreparedRequest:
    """The saved-objects import request (overwrite: running setup again replaces them in place)."""
    if not dashboards_url.startswith(("https://", "http://")):
        raise ConfigError(f"setting dashboards_url: {dashboards_url!r} is not an http(s) URL")
    body = "".join(json.dumps(obj, sort_keys=True) + "\n" for obj in saved_objects(settings.index_prefix))
    request = requests.Request(
        "POST", f"{dashboards_url.rstrip('/')}/api/saved_objects/_import",
        params={"overwrite": "true"},
        # Dashboards refuses a write without this header (its CSRF protection).
        headers={"osd-xsrf": "true"},
        files={"file": (SAVED_OBJECTS_FILE, body.encode(), "application/ndjson")},
        auth=_dashboards_auth(settings),
    )
    return request.prepare()


def _dashboards_auth(settings: OpenSearchSettings) -> Any:
    if settings.auth == "basic":
        return (settings.username, settings.password)
    if settings.auth == "sigv4":  # Amazon OpenSearch Service: Dashboards sits behind the same signer
        import boto3
        from opensearchpy import RequestsAWSV4SignerAuth

        session = boto3.Session()
        credentials = session.get_credentials()
        region = settings.region or session.region_name
        if credentials is None or not region:
            raise ConfigError("opensearch.auth=sigv4 needs AWS credentials and a region for the Dashboards import")
        return RequestsAWSV4SignerAuth(credentials, region, settings.service)
    return None


def install_dashboards(dashboards_url: str, settings: OpenSearchSettings) -> str:
    """Import the saved objects; one line saying what happened (raises with the reason if not)."""
    request = import_request(dashboards_url, settings)
    verify: bool | str = settings.ca_bundle or settings.verify_tls
    try:
        with requests.Session() as session:
            response = session.send(request, timeout=settings.timeout_seconds, verify=verify)
    except requests.RequestException as exc:
        raise ConnectorError(f"Dashboards at {dashboards_url}: {exc}") from exc
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code >= 300 or not answer.get("success", False):
        errors = answer.get("errors") or answer.get("message") or response.text[:300]
        raise ConnectorError(f"Dashboards at {dashboards_url}: import failed ({response.status_code}): {errors}")
    return f"dashboards: imported {answer.get('successCount', 0)} saved object(s) into {dashboards_url}"
