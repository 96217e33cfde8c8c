"""Prometheus metrics, defined once so every stage counts into the same series.

Served on ``/metrics`` by ``connector.runtime.http``. Names follow the Prometheus conventions
(https://prometheus.io/docs/practices/naming/): ``_total`` for counters, base units in the name
(``_seconds``, ``_messages``), no unit conversions left to the reader (Kinesis' milliseconds
become seconds here). prometheus_client's ``*_created`` series (one per counter and histogram
child, the Unix time it was first used) are switched off: nothing alerts on them and they
double the series count.

The alert rules in ``deploy/prometheus/`` use these names; a test checks that every name they
use is defined here.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # type: ignore[no-untyped-call]

MESSAGES_IN = Counter("connector_messages_in_total", "Source messages received (an SQS message, a Kinesis record, a file)", ["source"])
RECORDS_IN = Counter("connector_records_in_total", "CloudTrail records decoded from source messages", ["source"])
EVENTS_SELECTED = Counter("connector_events_selected_total", "CloudTrail records of a mapped event", ["event_name"])
EVENTS_SKIPPED = Counter("connector_events_skipped_total", "CloudTrail records of other events (not an error)")
DUPLICATES = Counter("connector_duplicates_dropped_total", "Records dropped by the in-process eventID cache")
FINDINGS_OUT = Counter("connector_findings_delivered_total", "Findings a sink accepted", ["sink", "format"])
FINDINGS_SUPPRESSED = Counter("connector_findings_suppressed_total",
                              "Findings marked suppressed by a triage rule (still delivered to every sink)", ["rule"])
TRIAGE_STORE_ERRORS = Counter("connector_triage_store_errors_total",
                              "First-seen store calls that failed (the value was treated as seen)")
SINK_OUTCOMES = Counter(
    "connector_sink_outcomes_total", "Findings a sink was given, by outcome (ok, retryable, permanent)", ["sink", "outcome"]
)
SINK_UP = Gauge(
    "connector_sink_up", "0 while the sink's circuit breaker is open (a delivery failed for every finding and its check failed), else 1",
    ["sink"],
)
DELIVERY_LAG_SECONDS = Histogram(
    "connector_delivery_lag_seconds",
    "From a record's CloudTrail eventTime to the moment a sink accepted its finding",
    ["sink"],
    # CloudTrail itself delivers within ~5 min (15 min for log files); replays reach days.
    buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400, 604800),
)
DEAD_LETTERED = Counter("connector_dead_lettered_total", "Records or findings sent to the dead-letter destination", ["stage"])
RETRIES = Counter("connector_retries_total", "Retried sink or source calls (each pause before another attempt)", ["component"])
THROTTLES = Counter("connector_throttles_total", "Throttling answers from AWS or OpenSearch", ["component"])
ACKED = Counter("connector_messages_acked_total", "Source messages acknowledged after delivery", ["source"])
RELEASED = Counter("connector_messages_released_total", "Source messages left for redelivery", ["source"])
BATCH_SECONDS = Histogram(
    "connector_batch_seconds",
    "Time to decode, map and deliver one source batch",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
BACKLOG = Gauge(
    "connector_backlog_messages",
    "Messages waiting in the source: SQS ApproximateNumberOfMessages (state=visible) and "
    "ApproximateNumberOfMessagesNotVisible (state=in_flight), polled every few tens of seconds",
    ["source", "queue", "state"],
)
KINESIS_ITERATOR_AGE = Gauge(
    "connector_kinesis_iterator_age_seconds", "How far behind the tip each shard's reader is (GetRecords MillisBehindLatest / 1000)",
    ["stream", "shard"],
)
SQS_AGE_SECONDS = Gauge("connector_sqs_oldest_message_age_seconds", "Age of the oldest message received in the last batch", ["queue"])
IN_FLIGHT = Gauge("connector_in_flight_messages", "Source messages received and not yet acknowledged or released")
HELD = Gauge("connector_held_messages", "Source messages held while a sink is down (not received again, not released)")
BUILD_INFO = Gauge("connector_build_info", "Always 1; the labels say what runs", ["version", "source", "sinks"])

#: Outcome label values of ``SINK_OUTCOMES`` (``connector.model.Outcome`` values).
OUTCOMES = ("ok", "retryable", "permanent")


def declare_sink(name: str) -> None:
    """Create a sink's series at zero, so that ``rate(...{outcome="ok"}) == 0`` can be alerted on
    before its first success (a series that does not exist matches nothing)."""
    for outcome in OUTCOMES:
        SINK_OUTCOMES.labels(name, outcome)
    DELIVERY_LAG_SECONDS.labels(name)
    RETRIES.labels(name)


def queue_name(queue_url: str) -> str:
    """The last path segment of a queue URL: a short, stable label value."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1] or queue_url


def exposition() -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type (text format 0.0.4, without ``*_created``)."""
    return generate_latest(), CONTENT_TYPE_LATEST
