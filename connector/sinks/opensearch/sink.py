"""OpenSearch sink: ``_bulk`` with ``_id`` = finding id, per-item results read, one index per day.

Documents go to ``<prefix>-asff-YYYY.MM.DD`` and ``<prefix>-ocsf-2004-YYYY.MM.DD`` by the *event*
day, so a replay or a redelivery lands in the same index and overwrites the same ``_id`` instead
of duplicating. Each document is the rendered finding plus a ``connector`` object with the
fields a SOC filters on (the same in both index kinds) and the raw CloudTrail record as one
unindexed string, so arbitrary CloudTrail payloads never add fields to the mapping.

**Who owns which field.** The connector writes every field of the rendered finding and the
``connector`` object; the analyst owns the ``analyst`` object (``status``, ``assignee``,
``notes``, ``tags``, or anything else under it), which the connector never writes. Each write is
a bulk ``update`` with ``doc`` and ``doc_as_upsert``: a new finding is created whole, an existing
one has the connector's fields replaced and keeps everything else, so a redelivery or a
``connector replay`` leaves the analyst's state as it was. (An object field is merged, not
replaced; the connector's documents for one id differ only in values, not in shape.)
https://docs.opensearch.org/latest/api-reference/document-apis/update-document/

Bulk requests are cut at ``opensearch.bulk_max_bytes`` (10 MB default, inside Amazon OpenSearch
Service's 10–100 MB payload limits; opensearch-py's 100 MB default is not). 429 and 5xx items,
and connection failures, are retried with capped backoff and jitter (``connector.retry``), only
those items and from the bytes they were first sent as; other item errors (mapping conflicts,
parse errors) are PERMANENT and the pipeline dead-letters them. The request bodies are written
by ``bulk.py`` (orjson, each item serialised once), not by opensearch-py's helpers.

One batch's requests go one after the other. Two at once made a single large send faster on a
2-core node when indexing new documents (not on redelivery), but the runner already has
``max_in_flight`` batches sending at once, which overlaps the node's work the same way; a second
level of threads would multiply the connections per worker for the bench's case only.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import SerializationError, TransportError

from connector import metrics
from connector.config import OpenSearchSettings, Settings
from connector.model import FORMATS, DeliveryResult, Finding, FindingFormat, Outcome, RenderedFinding
from connector.retry import Backoff, pause
from connector.sinks.base import register
from connector.sinks.opensearch import bulk
from connector.sinks.opensearch.client import describe, make_client

log = logging.getLogger(__name__)
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


#: The object analysts own in every finding document; the connector never writes it.
ANALYST_FIELD = "analyst"
#: Two replicas updating one document (a teardown finding) at once: OpenSearch retries the loser.
RETRY_ON_CONFLICT = 3


def index_name(prefix: str, item: RenderedFinding) -> str:
    day = item.finding.event.event_time.strftime("%Y.%m.%d")
    return f"{prefix}-ocsf-2004-{day}" if item.format == "ocsf" else f"{prefix}-asff-{day}"


@functools.lru_cache(maxsize=4096)
def _ip(text: str | None) -> str | None:
    """``text`` if it is an IP address (``source_ip`` is mapped ``ip``: a service name such as
    ``ec2.amazonaws.com`` would fail the document). Cached: a few addresses make most of the
    traffic, and parsing one was nearly a third of building the summary."""
    if not text:
        return None
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        return None


#: OCSF ``status_id`` → ``connector.status`` (the ASFF ``Workflow.Status`` words).
OCSF_STATUS = {1: "NEW", 2: "NOTIFIED", 3: "SUPPRESSED", 4: "RESOLVED"}


def connector_status(document: Mapping[str, Any], fmt: FindingFormat) -> str:
    """The status as the connector rendered it, the same word in both index kinds: SUPPRESSED
    for a suppression rule's finding (ASFF ``Workflow.Status`` SUPPRESSED, OCSF ``status_id`` 3),
    RESOLVED for a finding its restore resolved (ASFF ``RecordState`` ARCHIVED, OCSF
    ``status_id`` 4), else NEW. The analyst's status is ``analyst.status``, never this one."""
    if fmt == "ocsf":
        status_id = document.get("status_id")
        return OCSF_STATUS.get(status_id, "NEW") if isinstance(status_id, int) else "NEW"
    if document.get("RecordState") == "ARCHIVED":
        return "RESOLVED"
    workflow = document.get("Workflow")
    return "SUPPRESSED" if isinstance(workflow, Mapping) and workflow.get("Status") == "SUPPRESSED" else "NEW"


def summary(finding: Finding, fmt: FindingFormat, document: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The filterable fields, identical in both index kinds (see the index templates);
    ``status`` from the rendered ``document`` (NEW without one)."""
    event = finding.event
    ident = event.identity
    doc: dict[str, Any] = {
        "finding_id": finding.id,
        "event_time": event.event_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event_name": event.event_name,
        "event_id": event.event_id,
        "account": event.account_id,
        "region": event.region,
        "principal": ident.display,
        "principal_arn": ident.arn or ident.invoked_by,
        "principal_type": ident.type,
        "source_address": event.source_ip,
        "source_ip": _ip(event.source_ip),
        "user_agent": event.user_agent,
        "resource_ids": [r.id for r in finding.resources],
        "resource_arns": [r.arn for r in finding.resources],
        "resource_types": sorted({r.ocsf_type for r in finding.resources}),
        "severity": finding.severity.name,
        "severity_id": int(finding.severity),
        "status": connector_status(document, fmt) if document is not None else "NEW",
        "outcome": finding.outcome,
        "error_code": event.error_code,
        "title": finding.title,
        "mapping_id": finding.mapping_id,
        "attack_ids": sorted({uid for a in finding.attacks for uid in (a.tactic_uid, a.technique_uid, a.sub_technique_uid) if uid}),
        "remediation": finding.remediation.runbook,
        "remediation_summary": finding.remediation.summary,
        # Compact, keys sorted, UTF-8 (orjson: a fifth of the sink's serialisation time was this
        # one field through the standard library); ``connector remediate`` reads it back.
        "raw_event": bulk.dumps(event.raw, sort_keys=True, default=str).decode(),
    }
    return {k: v for k, v in doc.items() if v is not None}


def _status(value: object) -> int:
    """A bulk item's HTTP status; 0 when there was none (opensearch-py reports a connection error
    that never got an answer with the status ``"N/A"``)."""
    try:
        return int(str(value))
    except ValueError:
        return 0


def document(item: RenderedFinding) -> dict[str, Any]:
    """The document written for ``item``: the rendered finding without ``raw_data`` (kept once,
    as ``connector.raw_event``) and without the analyst's object, plus the ``connector`` summary."""
    source = dict(item.document)
    source.pop("raw_data", None)
    source.pop(ANALYST_FIELD, None)  # never ours to write
    source["connector"] = summary(item.finding, item.format, item.document)
    return source


def bulk_action(prefix: str, item: RenderedFinding) -> dict[str, Any]:
    """``item`` as an opensearch-py ``helpers.bulk`` action: a partial update that creates the
    document when missing, so the analyst's fields stay."""
    return {"_op_type": "update", "_index": index_name(prefix, item), "_id": item.finding_id,
            "doc": document(item), "doc_as_upsert": True, "retry_on_conflict": RETRY_ON_CONFLICT}


def _outcome(status: int, error: object) -> tuple[Outcome, str | None]:
    """A failed item (or a failed request, for each of its items) by its status: 429, 5xx and no
    answer at all are RETRYABLE; anything else (mapping conflicts, parse errors) PERMANENT."""
    if status in RETRYABLE_STATUS or not status:
        if status == 429:
            metrics.THROTTLES.labels("opensearch").inc()
        # No status: the request never got an answer (refused, reset, timed out); the error
        # then is the connection error's text, which names the cause.
        return Outcome.RETRYABLE, f"{status or 'no answer'}: {describe(error)}"
    reason = error.get("reason") if isinstance(error, dict) else error
    kind = error.get("type") if isinstance(error, dict) else "error"
    return Outcome.PERMANENT, f"{status} {kind}: {reason}"


@register("opensearch")
class OpenSearchSink:
    name: ClassVar[str] = "opensearch"
    formats: ClassVar[tuple[FindingFormat, ...]] = FORMATS
    iam_actions: ClassVar[tuple[str, ...]] = ("es:ESHttpPost", "es:ESHttpPut", "es:ESHttpGet", "es:ESHttpHead")

    def __init__(self, settings: OpenSearchSettings, client: Any = None, *, workers: int = 4) -> None:
        self.settings = settings
        self.prefix = settings.index_prefix
        # One connection per pipeline worker, plus one for the readiness probe.
        self.client = client or make_client(settings, pool_maxsize=workers + 1)
        self.backoff = Backoff(base_seconds=0.5, cap_seconds=20, max_attempts=max(1, settings.max_attempts))
        self._templates_ready = False

    def _ensure_templates(self) -> None:
        """Without the templates, the first write would create indexes with dynamic mappings of
        whole CloudTrail payloads; so make sure they exist before writing (``connector setup``
        does the same, plus the ISM policy)."""
        if self._templates_ready:
            return
        from connector.sinks.opensearch.setup import install

        for line in install(self.client, self.prefix, ism=False):
            if not line.endswith("unchanged"):
                log.info(line)
        self._templates_ready = True

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenSearchSink:
        return cls(settings.opensearch, workers=settings.max_in_flight)

    def _encoded(self, batch: Sequence[RenderedFinding], refused: dict[int, tuple[Outcome, str | None]]) -> Iterator[tuple[int, bytes]]:
        """(position, bulk lines) of every item, serialised as the requests need them (one
        request's worth is held at a time, not the batch's); an item that cannot be serialised is
        PERMANENT in ``refused`` and never sent."""
        for pos, item in enumerate(batch):
            try:
                yield pos, bulk.update_lines(index_name(self.prefix, item), item.finding_id, document(item), RETRY_ON_CONFLICT)
            except bulk.EncodeError as exc:
                refused[pos] = (Outcome.PERMANENT, str(exc))

    def _request(self, chunk: Sequence[tuple[int, bytes]]) -> dict[int, tuple[Outcome, str | None]]:
        """One ``_bulk`` request of the items in ``chunk``: the outcome of each that was answered."""
        try:
            answer = self.client.bulk(body=b"".join(lines for _, lines in chunk))
        except TransportError as exc:  # the whole request: refused, unreachable, 429, 413...
            outcome = _outcome(_status(exc.status_code), str(exc))
            return {pos: outcome for pos, _ in chunk}
        except (OSError, SerializationError) as exc:
            log.warning("OpenSearch bulk failed: %s", exc)
            return {}
        out: dict[int, tuple[Outcome, str | None]] = {}
        for (pos, _), result in zip(chunk, bulk.results(answer, len(chunk)), strict=False):
            status = _status(result.get("status"))
            out[pos] = (Outcome.OK, None) if 200 <= status < 300 else _outcome(status, result.get("error"))
        return out

    def _bulk_once(self, items: Iterable[tuple[int, bytes]], out: dict[int, tuple[Outcome, str | None]],
                   again: dict[int, bytes]) -> None:
        """One pass over ``items``: the outcome of every one into ``out``; the lines of those to
        send again (RETRYABLE) into ``again``, so a retry does not serialise them a second time."""
        for chunk in bulk.chunks(items, self.settings.bulk_max_bytes):
            answered = self._request(chunk)
            for pos, lines in chunk:  # anything without an answer was not delivered
                outcome = answered.get(pos) or (Outcome.RETRYABLE, "no answer from OpenSearch")
                out[pos] = outcome
                if outcome[0] is Outcome.RETRYABLE:
                    again[pos] = lines

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]:
        final: dict[int, tuple[Outcome, str | None]] = {}
        items: Iterable[tuple[int, bytes]] = self._encoded(batch, final)
        for attempt in range(1, self.backoff.max_attempts + 1):
            again: dict[int, bytes] = {}
            try:  # inside the loop: an unreachable cluster gets the configured retries too
                self._ensure_templates()
                self._bulk_once(items, final, again)
            except (OSConnectionError, TransportError, OSError) as exc:
                log.warning("OpenSearch unreachable while checking templates (attempt %d of %d): %s",
                            attempt, self.backoff.max_attempts, exc)
                reason = f"OpenSearch unreachable: {describe(exc)}"
                again.update(items)  # not sent: every item (serialised now if it was not yet) goes next time
                final.update(dict.fromkeys(again, (Outcome.RETRYABLE, reason)))
            pending = sorted(again)
            if not pending or attempt == self.backoff.max_attempts:
                break
            pause(self.backoff, attempt, self.name, count=len(pending))
            items = [(pos, again[pos]) for pos in pending]
        unanswered = (Outcome.RETRYABLE, "no answer from OpenSearch")
        return [DeliveryResult(item.finding_id, *final.get(pos, unanswered), item.format) for pos, item in enumerate(batch)]

    def check(self) -> None:
        health = self.client.cluster.health(request_timeout=5)
        if health.get("status") not in ("green", "yellow"):
            raise ConnectionError(f"cluster health is {health.get('status')}")

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a client that never connected
            pass
