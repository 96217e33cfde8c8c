"""Test cases of the mapped events, built from data: ``mappings/cases/common.yaml`` + each mapping.

Why this lives in the package and not in ``tests/``: a new event must bring its own cases in its
mapping file (request, response, the resource id its findings must name, corpus records, extra
variants), and the golden, variant, corpus and CLI tests, ``connector demo`` and the deploy
checks all iterate over the cases instead of over a list of events kept somewhere in code.

A case is the common base record with the mapping's ``requestParameters``/``responseElements``,
then a variant applied: ``set`` replaces top-level keys (``null`` deletes one), ``replace``
rewrites substrings of the serialised record (used for the other partitions' ARNs and hosts).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connector.errors import MappingFileError
from connector.mapping.loader import EventMapping, VariantSpec, load_mappings, read_common_cases, variant_specs
from connector.paths import mappings_dir

#: Where the shared part lives, relative to the mappings directory (not a ``*.yaml`` at the top,
#: so the mapping loader never mistakes it for a mapping).
COMMON_FILE = Path("cases") / "common.yaml"

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Case:
    """One record of one event in one variant, and what its findings must show."""

    event_name: str
    variant: str
    record: Record
    golden: bool
    #: The mapping's resource id when the record still carries it (request or response), else
    #: None: a failed call without parameters names no resource, and the account stands in.
    resource_id: str | None


def _apply(record: Record, overrides: Mapping[str, Any]) -> Record:
    for key, value in overrides.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = copy.deepcopy(value)
    return record


def _replace(record: Record, replacements: Mapping[str, str]) -> Record:
    if not replacements:
        return record
    text = json.dumps(record)
    for old, new in replacements.items():
        text = text.replace(old, new)
    out: Record = json.loads(text)
    return out


class CaseBook:
    """The cases of every mapping in one directory."""

    def __init__(self, mappings: Mapping[str, EventMapping], common: Mapping[str, Any], origin: str) -> None:
        self.mappings = dict(mappings)
        self.common = common
        self.common_variants = variant_specs(common["variants"])
        for mapping in self.mappings.values():
            self._check_variants(mapping, origin)

    @classmethod
    def load(cls, directory: str | Path | None = None) -> CaseBook:
        root = Path(directory) if directory else mappings_dir()
        common_path = root / COMMON_FILE
        return cls(load_mappings(root), read_common_cases(common_path), str(common_path))

    def _check_variants(self, mapping: EventMapping, origin: str) -> None:
        """Variant names and eventID numbers must be unique across the common and own variants."""
        own = mapping.cases.variants
        clash = set(own) & set(self.common_variants)
        if clash:
            raise MappingFileError(mapping.file, "$.cases.variants", f"{sorted(clash)} already defined in {origin}")
        numbers = [v.number for v in (*self.common_variants.values(), *own.values())]
        if len(set(numbers)) != len(numbers):
            raise MappingFileError(mapping.file, "$.cases.variants", "variant numbers must be unique (they make the eventIDs)")
        if mapping.cases.demo_variant not in self.variant_specs(mapping.event_name):
            raise MappingFileError(mapping.file, "$.cases.demo_variant", f"no variant {mapping.cases.demo_variant!r}")

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self.mappings)

    def identity(self, name: str) -> Record:
        """A named ``userIdentity`` from the common file (iam-user, root, assumed-role)."""
        identity: Record = copy.deepcopy(self.common["identities"][name])
        return identity

    def variant_specs(self, event_name: str) -> dict[str, VariantSpec]:
        return {**self.common_variants, **self.mappings[event_name].cases.variants}

    def make_record(self, event_name: str, *, event_id: str | None = None, **overrides: Any) -> Record:
        """The event's successful call (the base record), then ``overrides`` (None deletes a key)."""
        mapping = self.mappings[event_name]
        own = {
            "eventSource": mapping.event_source,
            "eventName": event_name,
            "requestParameters": mapping.cases.request,
            "responseElements": mapping.cases.response or self.common["base"]["responseElements"],
            "eventID": event_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"test/{event_name}")),
        }
        # Keys in CloudTrail's order (it shows in the OCSF raw_data): the event's own values
        # go where CloudTrail writes them, after the base key they follow.
        record: Record = {}
        for key, value in self.common["base"].items():
            if key == "responseElements":
                record["requestParameters"] = own["requestParameters"]
            record[key] = own.get(key, value)
            if key == "eventSource":
                record["eventName"] = event_name
            elif key == "requestID":
                record["eventID"] = own["eventID"]
        return _apply(copy.deepcopy(record), overrides)

    def case(self, event_name: str, variant: str) -> Case:
        spec = self.variant_specs(event_name)[variant]
        cases = self.mappings[event_name].cases
        record = self.make_record(event_name, event_id=cases.event_id.format(number=spec.number), **spec.set)
        record = _replace(record, spec.replace)
        carried = json.dumps([record.get("requestParameters"), record.get("responseElements")])
        return Case(event_name, variant, record, spec.golden, cases.resource_id if cases.resource_id in carried else None)

    def cases(self, event_name: str | None = None) -> Iterator[Case]:
        for name in [event_name] if event_name else self.events:
            for variant in self.variant_specs(name):
                yield self.case(name, variant)

    def variants(self, event_name: str) -> dict[str, Record]:
        """Variant name → full record, for one event."""
        return {case.variant: case.record for case in self.cases(event_name)}

    def corpus_files(self, corpus_root: Path) -> dict[str, list[Path]]:
        """Event → the real records its mapping references under the shared corpus."""
        return {name: [corpus_root / ref for ref in m.cases.corpus] for name, m in self.mappings.items()}

    def demo_records(self) -> list[Record]:
        """Each event's demo variant, re-homed into the emulator's account and Region."""
        demo = self.common["demo"]
        start = datetime.fromisoformat(demo["event_time"].replace("Z", "+00:00"))
        out = []
        for index, name in enumerate(self.events):
            record = self.case(name, self.mappings[name].cases.demo_variant).record
            record = _replace(record, {self.common["account"]: demo["account"], self.common["base"]["awsRegion"]: demo["region"]})
            record.update(
                userIdentity=copy.deepcopy(demo["identity"]),
                sourceIPAddress=demo["source_ip"],
                eventTime=(start + timedelta(seconds=97 * index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                eventID=str(uuid.uuid5(uuid.NAMESPACE_URL, f"demo/{name}")),
            )
            out.append(record)
        return out

    def noise_records(self) -> list[Record]:
        """Unrelated events for the demo, some of them near misses of the mapped names."""
        demo = self.common["demo"]
        out = []
        for index, (source, name) in enumerate(demo["noise"]):
            record = _replace(self.make_record(next(iter(self.events))), {self.common["account"]: demo["account"]})
            record.update(eventSource=source, eventName=name, requestParameters={"demo": True}, awsRegion=demo["region"],
                          eventID=f"n01se-{index:04d}-0000-0000-000000000000", eventTime=demo["event_time"])
            record.pop("responseElements", None)
            out.append(record)
        return out
