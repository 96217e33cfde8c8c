"""Lambda entry point (``connector.aws_lambda.handler``) for SQS and Kinesis event-source mappings.

The same composition root and the same runner loop as the service: the pipeline is built once
per container by ``connector.build``, each invocation's records become a finite source
(``connector.sources.lambda_batch``) that the runner drains, and partial batch failure is
returned as data (``batchItemFailures``, with ``ReportBatchItemFailures`` on the mapping) so
that only the records that could not be delivered are retried. Logging is configured as in
the service (JSON lines, secrets redacted). Settings come from ``CONNECTOR_*`` variables.
"""

from __future__ import annotations

import logging
from typing import Any

from connector.build import build_pipeline, build_runner
from connector.config import Settings, load_settings
from connector.pipeline import Pipeline
from connector.runtime import logs
from connector.sources.lambda_batch import LambdaBatch, to_messages

log = logging.getLogger(__name__)
_built: tuple[Settings, Pipeline] | None = None

__all__ = ["handle", "handler", "to_messages"]


def _get() -> tuple[Settings, Pipeline]:
    global _built
    if _built is None:
        settings = load_settings()
        logs.configure(settings.log_level, secrets=[settings.opensearch.password])
        _built = (settings, build_pipeline(settings))
    return _built


def handle(event: dict[str, Any], pipeline: Pipeline, settings: Settings | None = None) -> dict[str, Any]:
    """Run one invocation's records through the runner; report what was not acknowledged."""
    batch = LambdaBatch(to_messages(event))
    if not batch.messages:
        return {"batchItemFailures": []}
    runner = build_runner(settings or Settings(), batch, pipeline, once=True)
    runner.run()
    failed = batch.failures()
    log.info("lambda batch", extra={"records": len(batch.messages), "failed": len(failed)})
    return {"batchItemFailures": [{"itemIdentifier": ident} for ident in failed]}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    settings, pipeline = _get()
    return handle(event, pipeline, settings)
