"""Prometheus metrics, defined once so every stage counts into the same series.

Served on ``/metrics`` by ``connector.runtime.http``. Names follow Prometheus conventions
(``_total`` for counters, base units in seconds).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("connector_records_in_total", "Source messages received", ["source"])
EVENTS_SELECTED = Counter("connector_events_selected_total", "CloudTrail records of a mapped event", ["event_name"])
EVENTS_SKIPPED = Counter("connector_events_skipped_total", "CloudTrail records of other events (not an error)")
DUPLICATES = Counter("connector_duplicates_dropped_total", "Records dropped by the in-process eventID cache")
FINDINGS_OUT = Counter("connector_findings_delivered_total", "Findings a sink accepted", ["sink", "format"])
DEAD_LETTERED = Counter("connector_dead_lettered_total", "Records or findings sent to the dead-letter destination", ["stage"])
RETRIES = Counter("connector_retries_total", "Retried sink or source calls", ["component"])
THROTTLES = Counter("connector_throttles_total", "Throttling answers from AWS or OpenSearch", ["component"])
ACKED = Counter("connector_messages_acked_total", "Source messages acknowledged after delivery", ["source"])
RELEASED = Counter("connector_messages_released_total", "Source messages left for redelivery", ["source"])
BATCH_SECONDS = Histogram(
    "connector_batch_seconds",
    "Time to decode, map and deliver one source batch",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
KINESIS_LAG_MS = Gauge("connector_kinesis_millis_behind_latest", "MillisBehindLatest per shard", ["stream", "shard"])
SQS_AGE_SECONDS = Gauge("connector_sqs_oldest_message_age_seconds", "Age of the oldest message received in the last batch", ["queue"])
IN_FLIGHT = Gauge("connector_in_flight_messages", "Source messages received and not yet acknowledged or released")
HELD = Gauge("connector_held_messages", "Source messages held while a sink is down (not received again, not released)")
SINK_UP = Gauge("connector_sink_up", "1 while a sink's circuit breaker is closed, 0 while it is open", ["sink"])
