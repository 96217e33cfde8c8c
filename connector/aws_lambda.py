"""Lambda entry point (``connector.aws_lambda.handler``) for SQS and Kinesis event-source mappings.

The same pipeline as the service, built once per container. Partial batch failure is returned
as data (``batchItemFailures``, with ``ReportBatchItemFailures`` on the mapping) so that only the
records that could not be delivered are retried. For Kinesis, Lambda retries from the *lowest*
reported sequence number, so every record from the first failure on is reported — records are
never skipped past a failure. Settings come from ``CONNECTOR_*`` environment variables.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from connector.config import load_settings
from connector.model import SourceMessage
from connector.pipeline import Pipeline

log = logging.getLogger(__name__)
_pipeline: Pipeline | None = None


def _get_pipeline() -> Pipeline:
    global _pipeline
    if _pipeline is None:
        _pipeline = Pipeline.from_settings(load_settings())
    return _pipeline


def to_messages(event: dict[str, Any]) -> list[SourceMessage]:
    """SQS and Kinesis Lambda records → SourceMessages whose ids are Lambda's item identifiers."""
    out = []
    for record in event.get("Records", []):
        source = record.get("eventSource")
        if source == "aws:sqs":
            out.append(SourceMessage(id=record["messageId"], body=record["body"].encode("utf-8"), source="sqs"))
        elif source == "aws:kinesis":
            kinesis = record["kinesis"]
            out.append(SourceMessage(id=kinesis["sequenceNumber"], body=base64.b64decode(kinesis["data"]), source="kinesis"))
        else:
            # An unexpected record shape: let the decoder try it as a whole message.
            import json

            out.append(SourceMessage(id=str(record.get("messageId") or record.get("eventID") or len(out)),
                                     body=json.dumps(record).encode(), source=str(source or "lambda")))
    return out


def handle(event: dict[str, Any], pipeline: Pipeline) -> dict[str, Any]:
    messages = to_messages(event)
    if not messages:
        return {"batchItemFailures": []}
    result = pipeline.handle(messages)
    failed = {m.id for m in result.retry}
    if messages[0].source == "kinesis" and failed:
        first = min(i for i, m in enumerate(messages) if m.id in failed)
        failed = {m.id for m in messages[first:]}
    log.info("lambda batch", extra={"records": len(messages), "failed": len(failed), "findings": result.findings})
    return {"batchItemFailures": [{"itemIdentifier": m.id} for m in messages if m.id in failed]}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle(event, _get_pipeline())
