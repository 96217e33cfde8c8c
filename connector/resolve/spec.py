"""The ``restores:`` section of a mapping: which events undo the deletion, matched how.

Each entry names a restore event and, per *match value*, the JMESPath expressions that read it
from the restore record (first non-null wins, as ``event.fields``). The match value's name is a
value of the deletion's finding (an ``event.fields`` name or an ``enrichment`` value), so the
resolution key of both sides is built from the same names: equalities only, no code per event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions

from connector.errors import MappingFileError


@dataclass(frozen=True, slots=True)
class RestoreSpec:
    event_name: str
    event_source: str
    #: deletion value name → compiled JMESPath expressions over the restore record.
    match: Mapping[str, tuple[Any, ...]]


def parse_restores(doc: Any, *, file: str, values: set[str]) -> tuple[RestoreSpec, ...]:
    """``values``: the names the deletion's finding may carry (fields, common and enrichment values)."""
    out = []
    for index, entry in enumerate(doc or ()):
        match: dict[str, tuple[Any, ...]] = {}
        for name, expressions in entry["match"].items():
            if name not in values:
                raise MappingFileError(file, f"$.restores[{index}].match.{name}",
                                       "not a value of this mapping's finding (event.fields or enrichment)")
            compiled = []
            for number, expression in enumerate(expressions):
                try:
                    compiled.append(jmespath.compile(expression))
                except jmespath.exceptions.JMESPathError as exc:
                    raise MappingFileError(file, f"$.restores[{index}].match.{name}[{number}]",
                                           f"bad JMESPath: {exc}") from None
            match[name] = tuple(compiled)
        out.append(RestoreSpec(entry["event"], entry.get("source", "ec2.amazonaws.com"), match))
    return tuple(out)


def resolution_key(deletion_event: str, account: str, region: str, values: Mapping[str, str | None]) -> str | None:
    """The identity of the resource both events name; None when a match value is unknown."""
    if any(not v for v in values.values()):
        return None
    pairs = sorted((k, str(v)) for k, v in values.items())
    return json.dumps([deletion_event, account, region, pairs], separators=(",", ":"))
