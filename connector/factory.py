"""The map → render → validate stages for one selected CloudTrail record.

Kept apart from the pipeline so that ``connector map``, ``replay``, the Lambda handler and the
service all produce byte-identical findings from the same record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connector.errors import InvalidRecord
from connector.events import parse_event
from connector.mapping import EventMapping, build_finding, load_mappings
from connector.model import FORMATS, RenderedFinding
from connector.render.asff import render_asff
from connector.render.ocsf import render_ocsf
from connector.validate import validate

if TYPE_CHECKING:
    from connector.enrich.engine import Enricher


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
    #: Reads the removed resource and the blast radius (connector/enrich/); None = off.
    enricher: Enricher | None = None

    @classmethod
    def load(cls, mappings_dir: str | None = None, product_arn_template: str = "",
             clock: Callable[[], datetime] | None = None, enricher: Enricher | None = None) -> FindingFactory:
        mappings = load_mappings(mappings_dir or None)
        if clock is None:
            return cls(mappings, product_arn_template, enricher=enricher)
        return cls(mappings, product_arn_template, clock, enricher=enricher)

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.mappings))

    def render(self, record: Mapping[str, Any], *, origin: str = "") -> list[RenderedFinding]:
        """One ``RenderedFinding`` per format; raises InvalidRecord / ValidationFailed with the id."""
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
        product_arn = (
            self.product_arn_template.format(partition=event.partition, region=event.region, account=event.account_id)
            if self.product_arn_template
            else None
        )
        updated_at = max(self.clock(), event.event_time)
        documents = {
            "asff": render_asff(finding, product_arn=product_arn, updated_at=updated_at),
            "ocsf": render_ocsf(finding, updated_at=updated_at),
        }
        rendered = []
        for name in FORMATS:
            validate(name, documents[name], record_id=event.event_id)
            rendered.append(RenderedFinding(finding.id, name, documents[name], finding))
        return rendered
