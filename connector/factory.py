"""The map → render → validate stages for one selected CloudTrail record.

Kept apart from the pipeline so that ``connector map``, ``replay``, the Lambda handler and the
service all produce byte-identical findings from the same record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.errors import InvalidRecord
from connector.events import parse_event
from connector.mapping import EventMapping, build_finding, load_mappings
from connector.model import FORMATS, RenderedFinding
from connector.render.asff import render_asff
from connector.render.ocsf import render_ocsf
from connector.validate import validate


@dataclass(frozen=True, slots=True)
class FindingFactory:
    """Builds, renders and validates the findings of one record in every format."""

    mappings: Mapping[str, EventMapping]
    #: Optional template for a non-default product ARN: {partition}, {region}, {account}.
    product_arn_template: str = ""

    @classmethod
    def load(cls, mappings_dir: str | None = None, product_arn_template: str = "") -> FindingFactory:
        return cls(load_mappings(mappings_dir or None), product_arn_template)

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
        product_arn = (
            self.product_arn_template.format(partition=event.partition, region=event.region, account=event.account_id)
            if self.product_arn_template
            else None
        )
        documents = {"asff": render_asff(finding, product_arn=product_arn), "ocsf": render_ocsf(finding)}
        rendered = []
        for name in FORMATS:
            validate(name, documents[name], record_id=event.event_id)
            rendered.append(RenderedFinding(finding.id, name, documents[name], finding))
        return rendered
