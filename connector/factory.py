"""The map → render → validate stages for one selected CloudTrail record.

Kept apart from the pipeline so that ``connector map``, ``replay``, the Lambda handler and the
service all produce byte-identical findings from the same record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connector import metrics
from connector.errors import InvalidRecord
from connector.events import parse_event
from connector.mapping import EventMapping, build_finding, load_mappings
from connector.model import FORMATS, CloudTrailEvent, Finding, RenderedFinding
from connector.render.asff import render_asff
from connector.render.ocsf import render_ocsf
from connector.triage import SightingStore, Triage, TriageResult, load_triage
from connector.validate import validate

if TYPE_CHECKING:
    from connector.enrich.engine import Enricher
    from connector.render.links import DashboardsLink
    from connector.resolve.resolver import Resolver
    from connector.resolve.store import ResolutionStore


@dataclass(frozen=True, slots=True)
class FindingFactory:
    """Builds, renders and validates the findings of one record in every format."""

    mappings: Mapping[str, EventMapping]
    #: Optional template for a non-default product ARN: {partition}, {region}, {account}.
    product_arn_template: str = ""
    #: When this version of a finding is made: ASFF ``UpdatedAt``. Security Hub ignores an update
    #: whose UpdatedAt is not later than the stored one, so a corrected finding must carry the
    #: time it was rendered, not the event's. Injected so tests and golden files are stable.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Context and suppression rules (connector/triage); ``None``: the mapping's severity stands.
    triage: Triage | None = None
    #: Reads the removed resource and the blast radius (connector/enrich/); None = off.
    enricher: Enricher | None = None
    #: Points ASFF ``Recommendation.Url`` at the finding in the SOC's Dashboards; None = the docs.
    dashboards_link: DashboardsLink | None = None
    #: Findings that resolve themselves (connector/resolve/): restore events let in; None = off.
    resolver: Resolver | None = None

    @classmethod
    def load(cls, mappings_dir: str | None = None, product_arn_template: str = "",
             clock: Callable[[], datetime] | None = None, *, triage_rules: str = "",
             sightings: SightingStore | None = None, enricher: Enricher | None = None,
             dashboards_link: DashboardsLink | None = None, resolve: bool = False,
             resolve_max_entries: int = 100_000, resolution_store: ResolutionStore | None = None) -> FindingFactory:
        """``triage_rules`` as the ``triage.rules_file`` setting: "" the shipped file, "none" off.
        ``resolve``: the ``resolution.enabled`` setting; ``resolution_store`` the shared store
        (default: in memory, ``resolve_max_entries``)."""
        mappings = load_mappings(mappings_dir or None)
        clock = clock or (lambda: datetime.now(UTC))
        resolver = None
        if resolve:
            from connector.resolve.resolver import Resolver
            from connector.resolve.store import MemoryResolutionStore

            resolver = Resolver(mappings, resolution_store or MemoryResolutionStore(resolve_max_entries), clock=clock)
        return cls(mappings, product_arn_template, clock, load_triage(triage_rules, store=sightings, clock=clock),
                   enricher, dashboards_link, resolver)

    @property
    def event_names(self) -> tuple[str, ...]:
        restores = self.resolver.restore_events if self.resolver is not None else frozenset()
        return tuple(sorted(set(self.mappings) | restores))

    def neutral(self, record: Mapping[str, Any], *, origin: str = "") -> tuple[CloudTrailEvent, EventMapping, Finding]:
        """The event, its mapping and the mapping's finding, enriched when that is on (before triage)."""
        event = parse_event(record, origin=origin)
        mapping = self.mappings.get(event.event_name)
        if mapping is None or mapping.event_source != event.event_source:
            raise InvalidRecord(f"no mapping for {event.event_source} {event.event_name}", record_id=event.event_id)
        finding = build_finding(event, mapping)
        if self.enricher is not None and mapping.enrichment is not None:
            from connector.enrich.apply import apply_enrichment

            enrichment = self.enricher.enrich(event, mapping.enrichment, finding.values, mapping.formats)
            if enrichment is not None:
                finding = apply_enrichment(finding, mapping, enrichment)
        return event, mapping, finding

    def render(self, record: Mapping[str, Any], *, origin: str = "") -> list[RenderedFinding]:
        """One ``RenderedFinding`` per format; raises InvalidRecord / ValidationFailed with the id.

        With resolution on, a restore event gives the resolved updates of the findings it undoes."""
        if self.resolver is not None and record.get("eventName") not in self.mappings \
                and record.get("eventName") in self.resolver.restore_events:
            resolved = self.resolver.on_restore(record, origin=origin)
            for item in resolved:
                validate(item.format, item.document, record_id=item.finding.event.event_id)
            return resolved
        event, _, finding = self.neutral(record, origin=origin)
        triage: TriageResult | None = None
        if self.triage is not None:
            triage = self.triage.assess(event, finding.severity)
            if triage.adjustments:
                finding = dataclasses.replace(finding, severity=triage.severity, severity_reason=(
                    f"{finding.severity_reason}; triage rules {','.join(a.rule_id for a in triage.adjustments)}: "
                    f"{triage.base.name} → {triage.severity.name}"))
            if triage.suppression:
                metrics.FINDINGS_SUPPRESSED.labels(triage.suppression.rule_id).inc()
        product_arn = (
            self.product_arn_template.format(partition=event.partition, region=event.region, account=event.account_id)
            if self.product_arn_template
            else None
        )
        updated_at = max(self.clock(), event.event_time)
        documents = {
            "asff": render_asff(finding, product_arn=product_arn, updated_at=updated_at, triage=triage,
                                recommendation_url=self.dashboards_link.url(finding) if self.dashboards_link else None),
            "ocsf": render_ocsf(finding, updated_at=updated_at, triage=triage),
        }
        rendered = []
        for name in FORMATS:
            validate(name, documents[name], record_id=event.event_id)
            rendered.append(RenderedFinding(finding.id, name, documents[name], finding))
        if self.resolver is not None:
            rendered = self.resolver.on_finding(self.mappings[event.event_name], rendered)
            for item in rendered:
                if item.document is not documents[item.format]:  # resolved already: check it too
                    validate(item.format, item.document, record_id=event.event_id)
        return rendered
