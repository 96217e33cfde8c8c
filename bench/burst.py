"""A burst of deletions through the service loop into Security Hub, against a local moto server.

10,000 one-record SQS messages go through the same composition the service uses (``build_*``:
SQS source with its pollers, the run loop, the pipeline, the Security Hub sink) with the client
rate limit at the real quota (10 requests/s, burst 30). The minimum is what the quota allows
for 100 findings a request: (requests - burst) / rate. Findings are then read back: ``lost`` is
the deletions that are not in Security Hub.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from typing import Any


def run(count: int) -> dict[str, Any]:
    from tests.support.moto import start_moto_server

    server = start_moto_server()
    saved = dict(os.environ)
    try:
        os.environ.update(server.env())
        import boto3

        from bench.corpus import target_record
        from connector.build import build_pipeline, build_runner, build_source
        from connector.config import load_settings

        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName=f"burst-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        boto3.client("securityhub").enable_security_hub()
        for start in range(0, count, 10):
            entries = [{"Id": str(i), "MessageBody": json.dumps(target_record(i))} for i in range(start, min(start + 10, count))]
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        settings = load_settings(environ={
            "CONNECTOR_SOURCE": "sqs", "CONNECTOR_SINKS": "securityhub", "CONNECTOR_SQS_QUEUE_URL": queue,
            "CONNECTOR_SQS_WAIT_SECONDS": "1", "CONNECTOR_DEAD_LETTER": "file:///tmp/bench-burst-letters",
            "CONNECTOR_SECURITYHUB_RATE_PER_SECOND": "10", "CONNECTOR_SECURITYHUB_BURST": "30",
        })
        pipeline = build_pipeline(settings)
        runner = build_runner(settings, build_source(settings), pipeline, once=True)
        pipeline.factory.render(target_record(0))  # compile the validators before the clock starts
        started = time.monotonic()
        code = runner.run()
        elapsed = time.monotonic() - started
        hub = boto3.client("securityhub")
        ids: set[str] = set()
        for page in hub.get_paginator("get_findings").paginate(PaginationConfig={"PageSize": 100}):
            ids.update(f["Id"] for f in page["Findings"])
        requests = math.ceil(count / 100)
        minimum = max(requests - settings.securityhub.burst, 0) / settings.securityhub.rate_per_second
        return {"burst_time_over_minimum": elapsed / minimum if minimum else 0.0, "burst_seconds": elapsed,
                "burst_minimum_seconds": minimum, "burst_findings": len(ids), "burst_deletions": count,
                "burst_exit_code": code, "lost_burst": max(0, count - len(ids))}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
