"""Security Hub ``BatchUpdateFindings`` for the moto server the tests start (a test-support
extension of moto, not product code).

moto is this project's stand-in for AWS. No moto release (5.2.x) implements
``BatchUpdateFindings``, the call analysts and their tools use to set a finding's investigation
state, so a test could not set that state the way a customer does. This module adds the operation
to moto's Security Hub backend and response class and runs ``moto.server`` with it, following the
AWS API reference (https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_BatchUpdateFindings.html):

- ``FindingIdentifiers`` (1–100, each ``Id`` + ``ProductArn``) name existing findings; one that
  matches none is answered in ``UnprocessedFindings`` with ``ErrorCode`` ``FindingNotFound``, one
  named twice with ``DuplicatedFindingIdentifier``; the others in ``ProcessedFindings``.
- Updatable: ``Workflow.Status``, ``Note`` (``Text``, ``UpdatedBy``; ``UpdatedAt`` is set to the
  time of the call), ``UserDefinedFields`` (keys merge into the stored map), ``VerificationState``,
  ``Severity`` (``Label``; ``Normalized`` follows a given label, and a label follows a given
  ``Normalized`` alone), ``Confidence``, ``Criticality`` (0–100), ``Types``, ``RelatedFindings``.
- The finding's ``UpdatedAt`` is left as it was ("updates from BatchUpdateFindings do not affect
  the value of UpdatedAt").
- A value outside the API's enums or ranges fails the whole request (``InvalidInputException``).

``BatchImportFindings`` is moto's, with an index in place of its linear search per finding
(see ``batch_import_findings``).

Not modelled: the processing delay, the EventBridge "Findings - Imported" event, administrator
and member accounts, ``FindingProviderFields``, IAM conditions on fields.

``tests.support.moto.start_moto_server`` runs this module as the server process
(``python -m tests.support.moto_securityhub_ext -H HOST -p PORT`` from the repository root, the
arguments of ``python -m moto.server``). Run as a module, not as a file: beside it is
``tests/support/moto.py``, which would hide the ``moto`` package from a script in this directory.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

from moto.securityhub import urls
from moto.securityhub.exceptions import InvalidInputException
from moto.securityhub.models import SecurityHubBackend
from moto.securityhub.responses import SecurityHubResponse

OPERATION = "BatchUpdateFindings"
MAX_IDENTIFIERS = 100
WORKFLOW_STATUSES = frozenset({"NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED"})
VERIFICATION_STATES = frozenset({"UNKNOWN", "TRUE_POSITIVE", "FALSE_POSITIVE", "BENIGN_POSITIVE"})
#: Label → the ``Normalized`` value Security Hub derives from it, and back (lower bounds).
LABEL_NORMALIZED = {"INFORMATIONAL": 0, "LOW": 1, "MEDIUM": 40, "HIGH": 70, "CRITICAL": 90}


def _invalid(message: str) -> InvalidInputException:
    return InvalidInputException(op=OPERATION, msg=message)


def _label_for(normalized: int) -> str:
    return max((bound, label) for label, bound in LABEL_NORMALIZED.items() if bound <= normalized)[1]


def _ratio(params: dict[str, Any], name: str) -> None:
    value = params.get(name)
    if value is not None and not (isinstance(value, int) and 0 <= value <= 100):
        raise _invalid(f"{name} must be an integer from 0 to 100")


def _changes(params: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields the request sets, validated; raises ``InvalidInputException``."""
    changes: dict[str, Any] = {}
    workflow = params.get("Workflow")
    if workflow is not None:
        if workflow.get("Status") not in WORKFLOW_STATUSES:
            raise _invalid(f"Workflow.Status must be one of {sorted(WORKFLOW_STATUSES)}")
        changes["Workflow"] = {"Status": workflow["Status"]}
    note = params.get("Note")
    if note is not None:
        text, by = note.get("Text"), note.get("UpdatedBy")
        if not (isinstance(text, str) and 1 <= len(text) <= 512 and isinstance(by, str) and by):
            raise _invalid("Note needs Text (1-512 characters) and UpdatedBy")
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        changes["Note"] = {"Text": text, "UpdatedBy": by, "UpdatedAt": now.replace("+00:00", "Z")}
    state = params.get("VerificationState")
    if state is not None:
        if state not in VERIFICATION_STATES:
            raise _invalid(f"VerificationState must be one of {sorted(VERIFICATION_STATES)}")
        changes["VerificationState"] = state
    severity = params.get("Severity")
    if severity is not None:
        label, normalized = severity.get("Label"), severity.get("Normalized")
        if label is not None and label not in LABEL_NORMALIZED:
            raise _invalid(f"Severity.Label must be one of {sorted(LABEL_NORMALIZED)}")
        if normalized is not None and not (isinstance(normalized, int) and 0 <= normalized <= 100):
            raise _invalid("Severity.Normalized must be an integer from 0 to 100")
        if label is None:
            if normalized is None:
                raise _invalid("Severity needs Label or Normalized")
            label = _label_for(normalized)
        elif normalized is None:
            normalized = LABEL_NORMALIZED[label]
        changes["Severity"] = {
            "Label": label,
            "Normalized": normalized,
            **({"Product": severity["Product"]} if "Product" in severity else {}),
        }
    for name in ("Confidence", "Criticality"):
        _ratio(params, name)
        if params.get(name) is not None:
            changes[name] = params[name]
    if params.get("Types") is not None:
        changes["Types"] = list(params["Types"])
    if params.get("RelatedFindings") is not None:
        changes["RelatedFindings"] = [{"Id": r["Id"], "ProductArn": r["ProductArn"]} for r in params["RelatedFindings"]]
    return changes


def batch_update_findings(
    self: SecurityHubBackend, params: dict[str, Any]
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Apply one request to this backend's findings: ``(processed, unprocessed)``."""
    identifiers = params.get("FindingIdentifiers") or []
    if not 1 <= len(identifiers) <= MAX_IDENTIFIERS:
        raise _invalid(f"FindingIdentifiers must name 1 to {MAX_IDENTIFIERS} findings")
    changes = _changes(params)
    defined = params.get("UserDefinedFields")
    by_key = {(f.data.get("Id"), f.data.get("ProductArn")): f for f in self.findings}
    processed: list[dict[str, str]] = []
    unprocessed: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for ident in identifiers:
        key = (ident.get("Id"), ident.get("ProductArn"))
        named = {"Id": key[0], "ProductArn": key[1]}
        finding = by_key.get(key)
        if key in seen:
            unprocessed.append({"FindingIdentifier": named, "ErrorCode": "DuplicatedFindingIdentifier",
                                "ErrorMessage": "The request names this finding more than once"})
            continue
        seen.add(key)
        if finding is None:
            unprocessed.append({"FindingIdentifier": named, "ErrorCode": "FindingNotFound",
                                "ErrorMessage": "No finding has this Id and ProductArn"})
            continue
        finding.data.update(json.loads(json.dumps(changes)))  # a copy each: findings share no objects
        if defined is not None:
            finding.data["UserDefinedFields"] = {**finding.data.get("UserDefinedFields", {}), **defined}
        processed.append(named)
    return processed, unprocessed


def _respond(self: SecurityHubResponse) -> str:
    raw = self.body.decode("utf-8") if isinstance(self.body, bytes) else self.body
    processed, unprocessed = self.securityhub_backend.batch_update_findings(json.loads(raw or "{}"))  # type: ignore[attr-defined]
    return json.dumps({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed})


_moto_import = SecurityHubBackend.batch_import_findings


def batch_import_findings(self: SecurityHubBackend, findings: list[dict[str, Any]]) -> tuple[int, int, list[dict[str, Any]]]:
    """moto's ``BatchImportFindings`` without its linear search per finding (10,000 findings, the
    burst bench, made it seconds of the server's time on the cores the connector runs on). A
    finding already stored is updated here through an index by ``Id``, as moto updates it; moto's
    own code imports the others, searching only the findings new in this call. Answers unchanged."""
    index: dict[str, Any] = getattr(self, "_finding_index", {})
    if len(index) != len(self.findings):  # reset, or findings stored before this ran
        index = {f.id: f for f in self.findings}
    new: list[dict[str, Any]] = []
    updated = 0
    for finding in findings:
        existing = index.get(finding.get("Id")) if isinstance(finding, dict) else None
        if existing is not None and isinstance(finding.get("Resources"), list) and finding["Resources"]:
            existing.data.update(finding)
            updated += 1
        else:
            new.append(finding)
    stored = len(self.findings)
    kept, self.findings = self.findings, []  # moto searches only the findings new in this call
    try:
        failed, succeeded, failures = _moto_import(self, new)
    finally:
        self.findings = kept + self.findings
    for added in self.findings[stored:]:
        index[added.id] = added
    self._finding_index = index  # type: ignore[attr-defined]
    return failed, succeeded + updated, failures


def install() -> None:
    """Register the operation on moto's Security Hub (before the server builds its routes)."""
    SecurityHubBackend.batch_import_findings = batch_import_findings  # type: ignore[method-assign]
    SecurityHubBackend.batch_update_findings = batch_update_findings  # type: ignore[attr-defined]
    SecurityHubResponse.batch_update_findings = _respond  # type: ignore[attr-defined]
    urls.url_paths["{0}/findings/batchupdate$"] = SecurityHubResponse.dispatch


if __name__ == "__main__":
    import logging

    from tests.support import moto_sqs_speed

    install()
    moto_sqs_speed.install()
    # One log line per request (werkzeug's access log, to a stderr the tests discard) was a
    # seventh of the server's time in a 10,000-message drain.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main

    main(sys.argv[1:])
