"""Install the index templates (and the ISM policy where the plugin exists), idempotently.

The templates under ``deploy/opensearch/`` are written for the default prefix
``cloudtrail-findings``; another ``opensearch.index_prefix`` is substituted in their index
patterns and aliases. Running setup twice changes nothing and says "unchanged".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from opensearchpy.exceptions import NotFoundError, TransportError

from connector.paths import ROOT

DEFAULT_PREFIX = "cloudtrail-findings"


def deploy_dir() -> Path:
    import os

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
        try:
            current = client.indices.get_index_template(name=name)["index_templates"][0]["index_template"]
        except NotFoundError:
            current = None
        if current is not None and current.get("_meta", {}).get("connector_fingerprint") == fingerprint:
            lines.append(f"index template {name}: unchanged")
            continue
        client.indices.put_index_template(name=name, body=body)
        lines.append(f"index template {name}: {'updated' if current else 'created'}")
    if ism:
        lines.append(_install_ism(client, prefix))
    return lines


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
