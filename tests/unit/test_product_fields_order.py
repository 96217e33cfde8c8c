"""ASFF ``ProductFields`` keep their order: the record's fields, then the triage and enrichment
lines, the ATT&CK ids, the request values sorted, the runbook commands, information and impact
(the record's fixed fields are written apart from the rest; the order is what the console shows)."""

from __future__ import annotations

from connector.factory import FindingFactory
from tests.support.records import EVENTS, variants

FACTORY = FindingFactory.load()


def test_the_record_fields_come_first_and_the_rest_in_its_order() -> None:
    seen_triage = False
    for event in EVENTS:
        for name, record in variants(event).items():
            keys = list(FACTORY.render(record)[0].document["ProductFields"])
            mapping_at = keys.index("connector/mapping")
            fixed = ("connector/principal", "connector/outcome", "connector/severityReason")
            assert all((k.startswith("cloudtrail/") and "/requestParameters/" not in k) or k in fixed
                       for k in keys[:mapping_at]), (event, name)
            rest = keys[mapping_at + 1:]
            groups = ["connector/triage/", "connector/attack/", "cloudtrail/requestParameters/",
                      "connector/runbook/cli/", "connector/information", "connector/impact"]
            order = [next(i for i, g in enumerate(groups) if k.startswith(g)) for k in rest]
            assert order == sorted(order), (event, name, rest)
            params = [k for k in rest if k.startswith("cloudtrail/requestParameters/")]
            assert params == sorted(params)
            seen_triage |= any(k.startswith("connector/triage/") for k in rest)
    assert seen_triage  # some variant (root, an AWS service) is moved by the shipped rules
