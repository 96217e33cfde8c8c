"""The deploy-side event filters, derived from the mapping files.

Both delivery paths filter upstream so that the connector only receives the events it maps:
an EventBridge rule (→ SQS) and a CloudWatch Logs subscription filter (→ Kinesis). They are
written in ``deploy/cloudformation``; ``tests/deploy`` checks them against these functions, so
a new mapping file that is not added to the filters fails CI instead of never seeing an event.
``python -m connector.mapping.filters`` prints both for pasting.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from connector.mapping.loader import EventMapping, load_mappings

#: CloudWatch Logs rejects a subscription filter pattern longer than this.
CWL_PATTERN_LIMIT = 1024


class FilterTooLongError(ValueError):
    """The mapped events no longer fit one CloudWatch Logs filter pattern."""


def _names_by_source(mappings: Mapping[str, EventMapping]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for mapping in mappings.values():
        grouped[mapping.event_source].append(mapping.event_name)
    return {source: sorted(names) for source, names in sorted(grouped.items())}


def eventbridge_pattern(mappings: Mapping[str, EventMapping]) -> dict[str, Any]:
    """The rule's ``EventPattern`` (CloudTrail management events as EventBridge delivers them)."""
    grouped = _names_by_source(mappings)
    return {
        "source": sorted({"aws." + source.split(".")[0] for source in grouped}),
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {
            "eventSource": list(grouped),
            "eventName": sorted(name for names in grouped.values() for name in names),
        },
    }


def cloudwatch_filter_pattern(mappings: Mapping[str, EventMapping]) -> str:
    """The subscription filter's ``FilterPattern``; fails rather than exceed the service limit."""
    clauses = []
    for source, names in _names_by_source(mappings).items():
        either = " || ".join(f'($.eventName = "{name}")' for name in names)
        clauses.append(f'($.eventSource = "{source}") && ({either})')
    body = clauses[0] if len(clauses) == 1 else " || ".join(f"({clause})" for clause in clauses)
    pattern = "{ " + body + " }"
    if len(pattern) > CWL_PATTERN_LIMIT:
        raise FilterTooLongError(f"filter pattern is {len(pattern)} characters, CloudWatch Logs allows {CWL_PATTERN_LIMIT}")
    return pattern


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    mappings = load_mappings(args[0] if args else None)
    print("EventBridge EventPattern:")
    print(json.dumps(eventbridge_pattern(mappings), indent=2))
    print("CloudWatch Logs FilterPattern:")
    print(cloudwatch_filter_pattern(mappings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
