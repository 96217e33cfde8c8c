"""A burst of deletions through the service loop into Security Hub, against a local moto server.

10,000 deletions go through the same composition the service uses (``build_*``: the source with
its pollers, the run loop, the pipeline, the Security Hub sink) with the client rate limit at the
real quota (10 requests/s, burst 30). The minimum is what the quota allows for 100 findings a
request: (requests - burst) / rate. Findings are then read back: ``lost`` is the deletions that
are not in Security Hub.

Two sources, because on this machine the SQS one is bound by moto, not by the connector:

- **SQS**, one-record bodies (EventBridge's shape: the case the issue measured at 13.9x). moto
  serves SQS from one Python process on the same cores, a few milliseconds a call, and 10,000
  messages take 1,000 receives and 1,000 deletes. So the run also measures the *SQS floor*: the
  same bodies in a second queue drained by as many threads as the connector has pollers, with
  the connector's receive parameters, and nothing else done. ``burst_time_over_floor`` is the
  burst over the larger of that floor and the quota minimum: what the connector adds.
- **Kinesis**, the same deletions as one-record Kinesis records (a source whose reads are not
  the bottleneck here): ``burst_kinesis_time_over_minimum`` shows whether the loop itself is
  quota-bound.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _sqs_floor(sqs_client: Callable[[], Any], queue: str, threads: int, max_messages: int) -> float:
    """Seconds for ``threads`` plain receive+delete loops to drain ``queue``."""

    def drain() -> None:
        client = sqs_client()
        while True:
            messages = client.receive_message(
                QueueUrl=queue, MaxNumberOfMessages=max_messages, WaitTimeSeconds=0, VisibilityTimeout=300,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp",
                                             "ApproximateFirstReceiveTimestamp"],
                MessageAttributeNames=["All"]).get("Messages", [])
            if not messages:
                return
            client.delete_message_batch(QueueUrl=queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])

    workers = [threading.Thread(target=drain) for _ in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.monotonic() - started


def _cpu_seconds(pid: int) -> float | None:
    """CPU time of another process (user + system, from /proc; None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _through_service(environ: dict[str, str]) -> tuple[float, int, float]:
    """(seconds, exit code, this process's CPU seconds) of one ``--once`` service run."""
    from bench.corpus import target_record
    from connector.build import build_pipeline, build_runner, build_source
    from connector.config import load_settings

    settings = load_settings(environ=environ)
    pipeline = build_pipeline(settings)
    runner = build_runner(settings, build_source(settings), pipeline, once=True)
    pipeline.factory.render(target_record(0))  # compile the validators before the clock starts
    started, cpu = time.monotonic(), time.process_time()
    code = runner.run()
    return time.monotonic() - started, code, time.process_time() - cpu


def run(count: int) -> dict[str, Any]:
    from tests.support.moto import start_moto_server

    server = start_moto_server()
    saved = dict(os.environ)
    try:
        os.environ.update(server.env())
        import boto3

        from bench.corpus import target_record
        from connector.config import load_settings
        from tests.support.moto import ACCOUNT_ID

        def record(i: int, prefix: str) -> dict[str, Any]:
            # The moto account's own deletions: Security Hub imports a default-product finding
            # only into the account it is for, and the connector dead-letters any other.
            return {**target_record(i), "eventID": f"{prefix}-{i:08d}", "recipientAccountId": ACCOUNT_ID}

        region = str(target_record(0)["awsRegion"])  # the sink imports in the findings' Region
        hub = boto3.client("securityhub", region_name=region)
        hub.enable_security_hub()
        sqs = boto3.client("sqs")
        tag = uuid.uuid4().hex[:8]
        queues = {}
        for name in ("burst", "floor"):
            queues[name] = sqs.create_queue(QueueName=f"{name}-{tag}", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
            for start in range(0, count, 10):
                sqs.send_message_batch(QueueUrl=queues[name], Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(record(i, "sqs-burst"))}
                    for i in range(start, min(start + 10, count))])
        common = {"CONNECTOR_SINKS": "securityhub", "CONNECTOR_DEAD_LETTER": f"file:///tmp/bench-burst-{tag}",
                  "CONNECTOR_SECURITYHUB_RATE_PER_SECOND": "10", "CONNECTOR_SECURITYHUB_BURST": "30"}
        sqs_env = {**common, "CONNECTOR_SOURCE": "sqs", "CONNECTOR_SQS_QUEUE_URL": queues["burst"],
                   "CONNECTOR_SQS_WAIT_SECONDS": "1"}
        settings = load_settings(environ=sqs_env)
        floor = _sqs_floor(lambda: boto3.client("sqs"), queues["floor"], settings.sqs.pollers, settings.sqs.max_messages)
        moto_before = _cpu_seconds(server.process.pid)
        elapsed, code, connector_cpu = _through_service(sqs_env)
        moto_after = _cpu_seconds(server.process.pid)
        moto_cpu = moto_after - moto_before if moto_after is not None and moto_before is not None else None

        kinesis = boto3.client("kinesis")
        stream = f"burst-{tag}"
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName=stream)
        for start in range(0, count, 500):
            kinesis.put_records(StreamName=stream, Records=[
                {"Data": json.dumps(record(i, "kinesis-burst")).encode(), "PartitionKey": str(i)}
                for i in range(start, min(start + 500, count))])
        from connector.sources.kinesis.checkpoints import CheckpointStore

        CheckpointStore(f"burst-{tag}-cp", stream).create_table_if_missing()
        kinesis_elapsed, kinesis_code, _ = _through_service({
            **common, "CONNECTOR_SOURCE": "kinesis", "CONNECTOR_KINESIS_STREAM_NAME": stream,
            "CONNECTOR_KINESIS_CHECKPOINT_TABLE": f"burst-{tag}-cp", "CONNECTOR_KINESIS_IDLE_SLEEP_SECONDS": "0.2"})

        ids: set[str] = set()
        for page in hub.get_paginator("get_findings").paginate(PaginationConfig={"PageSize": 100}):
            ids.update(f["Id"] for f in page["Findings"])
        found = {prefix: sum(1 for i in ids if f"/{prefix}-" in i) for prefix in ("sqs-burst", "kinesis-burst")}
        requests = math.ceil(count / 100)
        minimum = max(requests - settings.securityhub.burst, 0) / settings.securityhub.rate_per_second
        return {"burst_time_over_minimum": elapsed / minimum if minimum else 0.0, "burst_seconds": elapsed,
                "burst_minimum_seconds": minimum, "burst_sqs_floor_seconds": floor,
                "burst_time_over_floor": elapsed / max(minimum, floor) if minimum else 0.0,
                # Who was busy during the SQS run: moto's server process and this one (2 cores).
                "burst_moto_cpu_seconds": moto_cpu, "burst_connector_cpu_seconds": connector_cpu,
                "burst_kinesis_seconds": kinesis_elapsed,
                "burst_kinesis_time_over_minimum": kinesis_elapsed / minimum if minimum else 0.0,
                "burst_findings": found["sqs-burst"], "burst_kinesis_findings": found["kinesis-burst"],
                "burst_deletions": count, "burst_exit_codes": [code, kinesis_code],
                "lost_burst": max(0, count - found["sqs-burst"]) + max(0, count - found["kinesis-burst"])}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
