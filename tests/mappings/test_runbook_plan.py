"""The compiled runbook (``RunbookPlan``) writes exactly what the per-command path writes.

``RunbookPlan`` judges and quotes each command value once per finding and fills every command
from the same values; ``render_command``, ``render_snippet`` and ``runbook_text`` (what the
enrichment and the CLI still use) collect each command's values on their own. Over every mapping,
both runbooks, and values that are present, absent, absent-but-optional and malformed, the two
must give the same ``Remediation``, byte for byte.
"""

from __future__ import annotations

import itertools
import pickle

import pytest

from connector.events import parse_event
from connector.mapping import load_mappings
from connector.mapping.engine import (
    CommandValues,
    ProseValues,
    RunbookPlan,
    TemplateValues,
    _clip,
    _names,
    build_remediation,
    compiled_template,
    extract,
    render_command,
    render_snippet,
)
from connector.mapping.loader import EventMapping
from connector.mapping.runbook import runbook_text
from connector.model import Remediation
from tests.support.records import BOOK, EVENTS

MAPPINGS = load_mappings()
FIRST = ("Recover what was removed", "Investigate the attempt")


def reference(mapping: EventMapping, attempt: bool, values: TemplateValues) -> Remediation:
    """The runbook as the per-command functions build it."""
    spec, cli_specs = ((mapping.attempt.remediation, mapping.attempt.cli) if attempt
                       else (mapping.remediation, mapping.cli))
    prose = ProseValues(values)
    judged = CommandValues(values, mapping.formats)
    summary = _clip(compiled_template(spec["summary"])(prose), 512)
    recovery = tuple(compiled_template(s)(values) for s in spec["recovery"])
    console = tuple(compiled_template(s)(values) for s in spec["console_steps"])
    cli = tuple(render_command(c, values, mapping.formats, prose, judged) for c in cli_specs)
    boto3 = render_snippet(spec["boto3"], values, mapping.formats, judged)
    hardening = tuple(compiled_template(s)(values) for s in spec["hardening"])
    references = tuple(spec["references"])
    text = runbook_text(summary, recovery, console, cli, boto3, hardening, references, first=FIRST[attempt])
    return Remediation(summary, spec["url"], recovery, console, cli, boto3, hardening, references, text)


def _variants(mapping: EventMapping, base: TemplateValues) -> list[TemplateValues]:
    """The event's values, then each command value absent, then each malformed, then all at once."""
    names = set(_names(mapping.remediation["boto3"])) | {n for c in mapping.cli + mapping.attempt.cli
                                                         for n in _names(c.command)}
    out = [base]
    for name, change in itertools.product(sorted(names), ("absent", "malformed")):
        values = TemplateValues(base)
        values.optional = base.optional
        if change == "absent":
            values.pop(name, None)
        else:
            values[name] = "x'; rm -rf / #"
        out.append(values)
    empty = TemplateValues({k: v for k, v in base.items() if k not in names})
    empty.optional = base.optional
    return [*out, empty]


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("attempt", [False, True], ids=["restore", "attempt"])
@pytest.mark.parametrize("optional", [False, True], ids=["required", "enrichment-optional"])
def test_the_compiled_runbook_is_the_per_command_runbook(event: str, attempt: bool, optional: bool) -> None:
    mapping = MAPPINGS[event]
    base = extract(mapping, parse_event(BOOK.case(event, "success").record))
    base.optional = mapping.optional_values if optional else frozenset()
    variants = _variants(mapping, base)
    for values in variants:
        assert build_remediation(mapping, values, attempt=attempt) == reference(mapping, attempt, values), values
    # the problems are named at all (the variants reach the slow branches)
    assert any("[fill in" in c.description for v in variants for c in build_remediation(mapping, v, attempt=attempt).cli)


def test_a_plan_without_a_first_section_writes_no_runbook_text() -> None:
    mapping = MAPPINGS[EVENTS[0]]
    values = extract(mapping, parse_event(BOOK.case(EVENTS[0], "success").record))
    remediation = RunbookPlan(mapping.remediation, mapping.cli, mapping.formats, None).render(values)
    assert remediation.runbook == "" and remediation.cli


def test_a_mapping_that_has_made_findings_still_pickles() -> None:
    mapping = load_mappings()[EVENTS[0]]
    values = extract(mapping, parse_event(BOOK.case(EVENTS[0], "success").record))
    first = build_remediation(mapping, values)
    assert mapping.runbooks is not None  # compiled and held by the mapping
    copy = pickle.loads(pickle.dumps(mapping))
    assert copy.id == mapping.id and build_remediation(copy, values) == first
