"""The one composition root: ``Settings`` → the stages, sinks, dead letters, source and runner.

Every entry point assembles the product here and nowhere else — ``connector run`` and
``run --once`` (through ``runtime.service``), ``connector replay``, ``connector map``, the
demo and the Lambda handler — so they cannot drift apart in how a client is made, which
dead-letter destination is opened or how the decoder is limited. The pipeline receives
ready-made collaborators: it never builds a boto3 client nor reads a source's settings.

Why a module of functions and not a container class: each entry point needs a different
subset (``map`` needs no sinks, the Lambda handler no source, ``setup`` only an OpenSearch
client), and plain functions with keyword overrides keep each of those one call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.config import Settings
from connector.deadletters import DeadLetterSink, open_dead_letters
from connector.envelopes import Decoder
from connector.errors import ConfigError
from connector.factory import FindingFactory
from connector.pipeline import Pipeline
from connector.render.links import DashboardsLink
from connector.select import Selector
from connector.sinks import Sink, sink_class
from connector.sources import Source, source_class
from connector.triage import MemorySightings, SightingStore
from connector.trust import S3Trust

if TYPE_CHECKING:
    from connector.correlate import Correlator
    from connector.enrich.engine import Enricher
    from connector.resolve.store import ResolutionStore
    from connector.runtime.runner import BatchObserver, Runner


@dataclass(frozen=True, slots=True)
class Stages:
    """The pure stages (decode → select → map/render/validate), shared by ``map`` and the pipeline."""

    factory: FindingFactory
    decoder: Decoder
    selector: Selector


def s3_client() -> Any:
    """The S3 client the decoder follows S3 notices with (boto3 resolves region and endpoint)."""
    import boto3

    return boto3.client("s3")


def build_stages(
    settings: Settings,
    *,
    mappings_dir: str | None = None,
    s3: Any = None,
    prefilter: bool = True,
    since: datetime | None = None,
    until: datetime | None = None,
    triage_rules: str | None = None,
    first_seen: SightingStore | None = None,
    trusted_locations: Sequence[str] = (),
) -> Stages:
    """Mappings loaded and validated, the selector built from them, the decoder limited by settings.

    ``prefilter=False`` is for ``connector map``: offline every malformed part must be reported,
    not skipped unseen by the cheap byte test. ``triage_rules`` overrides ``triage.rules_file``;
    ``first_seen`` the sightings store (``map`` keeps its own in memory, off the shared table).
    S3 notices are followed only into ``s3.trail_buckets`` plus ``trusted_locations``
    (``replay s3://...`` trusts its own location).
    """
    factory = FindingFactory.load(mappings_dir or settings.mappings_dir or None, settings.securityhub.product_arn,
                                  triage_rules=triage_rules if triage_rules is not None else settings.triage.rules_file,
                                  sightings=first_seen if first_seen is not None else sightings(settings),
                                  enricher=build_enricher(settings), dashboards_link=dashboards_link(settings),
                                  resolve=settings.resolution.enabled, resolve_max_entries=settings.resolution.max_entries,
                                  resolution_store=resolution_store(settings))
    selector = Selector(factory.event_names, since=since, until=until)
    trust = S3Trust.parse(settings.s3.trail_buckets).with_locations(trusted_locations)
    decoder = Decoder(settings.limits, s3_client=s3, prefilter=selector.pattern if prefilter else None, s3_trust=trust)
    return Stages(factory, decoder, selector)


def dashboards_link(settings: Settings) -> DashboardsLink | None:
    """``securityhub.recommendation_dashboards_url`` checked (https, a plain host), or None when off."""
    try:
        return DashboardsLink.from_setting(settings.securityhub.recommendation_dashboards_url,
                                           settings.opensearch.index_prefix)
    except ValueError as exc:
        raise ConfigError(f"setting securityhub.recommendation_dashboards_url: {exc}") from None


def sightings(settings: Settings) -> SightingStore:
    """Where first-seen sightings live: DynamoDB when ``triage.first_seen_table`` is set, else memory."""
    if settings.triage.first_seen_table:
        import boto3

        from connector.triage.firstseen import DynamoDBSightings

        return DynamoDBSightings(settings.triage.first_seen_table, boto3.client("dynamodb"))
    return MemorySightings()


def resolution_store(settings: Settings) -> ResolutionStore | None:
    """The shared resolution store when ``resolution.store`` is dynamodb (else the factory's memory one)."""
    r = settings.resolution
    if not r.enabled or r.store != "dynamodb":
        return None
    from connector.resolve.store import DynamoResolutionStore

    return DynamoResolutionStore(r.table, retention_seconds=r.retention_seconds)


def build_enricher(settings: Settings) -> Enricher | None:
    """The enrichment (connector/enrich/) when enabled: clients in the event's account through the
    same per-account role mechanism as the Security Hub fan-out."""
    if not settings.enrichment.enabled:
        return None
    from connector.enrich.engine import Enricher, SessionClients
    from connector.sinks.securityhub.credentials import SessionCache

    e, sh = settings.enrichment, settings.securityhub
    sessions = SessionCache(role_arn_template=e.assume_role_arn_template or sh.assume_role_arn_template,
                            external_id=sh.external_id)
    clients = SessionClients(sessions, local_accounts=sh.local_accounts, timeout=e.budget_seconds)
    return Enricher(clients, budget_seconds=e.budget_seconds, cache_ttl_seconds=e.cache_ttl_seconds,
                    cache_max_entries=e.cache_max_entries, rate_per_second=e.rate_per_second, burst=e.burst)


def build_sinks(settings: Settings, names: Sequence[str] | None = None) -> list[Sink]:
    """The enabled sinks, each from its own settings section (through the registry)."""
    return [sink_class(name).from_settings(settings) for name in (names or settings.sinks)]


def build_dead_letters(settings: Settings) -> DeadLetterSink:
    """The dead-letter destination for ``settings.dead_letter`` (or the redrive-policy stand-in)."""
    leave = settings.source == "sqs" and settings.sqs.use_redrive_policy
    return open_dead_letters(settings.dead_letter, leave_to_redrive=leave)


def build_pipeline(
    settings: Settings,
    *,
    sinks: Sequence[Sink] | None = None,
    dead_letters: DeadLetterSink | None = None,
    s3: Any = None,
    since: datetime | None = None,
    until: datetime | None = None,
    trusted_locations: Sequence[str] = (),
) -> Pipeline:
    """The whole pipeline from settings; every collaborator may be handed in instead (tests, demo)."""
    stages = build_stages(settings, s3=s3 if s3 is not None else s3_client(), since=since, until=until,
                          trusted_locations=trusted_locations)
    return Pipeline(
        factory=stages.factory,
        decoder=stages.decoder,
        selector=stages.selector,
        sinks=build_sinks(settings) if sinks is None else sinks,
        dead_letters=build_dead_letters(settings) if dead_letters is None else dead_letters,
        dedupe_ttl_seconds=settings.dedupe_ttl_seconds,
        dedupe_max_entries=settings.dedupe_max_entries,
        correlator=build_correlator(settings),
    )


def build_correlator(settings: Settings) -> Correlator | None:
    """Teardown correlation when ``correlation.enabled`` (window state in DynamoDB or memory)."""
    from connector.correlate import Correlator

    return Correlator.from_settings(settings)


def build_source(settings: Settings) -> Source:
    """The configured long-running source (``settings.source``) through the registry."""
    return source_class(settings.source).from_settings(settings)


def build_runner(
    settings: Settings,
    source: Source,
    pipeline: Pipeline,
    *,
    once: bool = False,
    stop: threading.Event | None = None,
    observer: BatchObserver | None = None,
    stop_on_release: bool | None = None,
) -> Runner:
    """The one run loop, sized from settings; every entry point that consumes a source uses it."""
    from connector.runtime.runner import Runner

    heartbeat = max(1.0, settings.sqs.visibility_timeout / 3)
    return Runner(
        source, pipeline, once=once, stop=stop, max_in_flight=settings.max_in_flight,
        heartbeat_seconds=heartbeat, observer=observer, stop_on_release=stop_on_release,
        gather_messages=settings.gather_messages, gather_seconds=settings.gather_seconds,
        hold_on_outage=settings.hold_on_outage, max_hold_seconds=settings.max_hold_seconds,
    )


def opensearch_client(settings: Settings) -> Any:
    """An OpenSearch client for ``setup`` and ``findings`` (the sink makes its own the same way)."""
    from connector.sinks.opensearch.client import make_client

    return make_client(settings.opensearch)
