"""The fault suite's accounting: what one scenario did with the events it sent.

Printed as a table (sent, delivered per sink, lost, duplicated, dead-lettered by reason) and
asserted on by the SQS and Kinesis fault scenarios alike (tests/integration/test_faults.py,
tests/integration/test_kinesis_source.py). A sink's ``delivered`` list holds the event ids it
was found holding or was sent, *with repeats*: for a sink that upserts by id (Security Hub,
OpenSearch) a repeat in what it holds is a real duplicate; in what it was sent (``*-imports``,
``*-writes``) a repeat is an at-least-once rewrite of the same id, counted and bounded.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from tests.support.faultproxy import FaultProxy

#: The issue's full counts (kill -9 ×20 for SQS, ×10 for Kinesis, a longer outage) run in CI
#: (``CI=true``) and with ``FAULTS_FULL=1``; a developer's plain run takes the short variants.
FULL = os.environ.get("FAULTS_FULL") == "1" or os.environ.get("CI", "").lower() == "true"

#: The test events' region (tests/support/records.py): where their findings are imported.
SH_REGION = "eu-west-1"


@dataclass
class Accounting:
    """What one scenario did with the events it sent; printed as a table and asserted on."""

    scenario: str
    sent: list[str]
    delivered: dict[str, list[str]] = field(default_factory=dict)  # sink → ids (with repeats)
    dead_lettered: Counter[str] = field(default_factory=Counter)  # reason → count

    #: sink → the ids it should hold (default: all sent)
    expected: dict[str, list[str]] = field(default_factory=dict)
    lettered_ids: list[str] = field(default_factory=list)

    def _expected(self, sink: str) -> set[str]:
        return set(self.expected.get(sink, self.sent))

    def lost(self, sink: str) -> int:
        return len(self._expected(sink) - set(self.delivered.get(sink, [])) - set(self.lettered_ids))

    def duplicated(self, sink: str) -> int:
        ids = [i for i in self.delivered.get(sink, []) if i in self._expected(sink)]
        return len(ids) - len(set(ids))

    def unexpected(self, sink: str) -> int:
        """Ids a sink holds that the scenario never sent (a forged or mangled finding)."""
        return len(set(self.delivered.get(sink, [])) - self._expected(sink) - set(self.sent))

    def table(self) -> str:
        rows = [f"scenario: {self.scenario}", f"sent: {len(self.sent)}",
                f"{'sink':<16}{'expected':>9}{'delivered':>11}{'lost':>6}{'duplicated':>12}"]
        for sink, ids in self.delivered.items():
            rows.append(f"{sink:<16}{len(self._expected(sink)):>9}{len(set(ids) & self._expected(sink)):>11}"
                        f"{self.lost(sink):>6}{self.duplicated(sink):>12}")
        repeats = len(self.lettered_ids) - len(set(self.lettered_ids))
        rows.append(f"dead-lettered: {len(self.lettered_ids)} ({repeats} repeated)"
                    + "".join(f"\n  {n} × {reason}" for reason, n in self.dead_lettered.most_common()))
        return "\n".join(rows)


# -- what the sinks hold ----------------------------------------------------------------


def jsonl_event_ids(directory: Path) -> list[str]:
    """The event ids of the ASFF findings the JSONL sink wrote (repeats included)."""
    ids = []
    for path in sorted(directory.glob("*asff*.jsonl*")):
        for line in path.read_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # empty, or a line torn by kill -9 (rewritten on redelivery)
            ids.append(doc["Id"].rsplit("/", 1)[-1])
    return ids


def forwarded_imports(proxy: FaultProxy, tag: str) -> list[str]:
    """Event ids in the imports the fault proxy let through to Security Hub (not those it
    answered 429/500), repeats included: the at-least-once rewrites a scenario counts."""
    return [i.rsplit("/", 1)[-1] for r in proxy.imports() if r.answer == "forwarded" for i in r.finding_ids if tag in i]


def security_hub_ids(tag: str, region: str = SH_REGION) -> list[str]:
    """The ids Security Hub (moto, via GetFindings) holds for this scenario, repeats included."""
    client = boto3.client("securityhub", region_name=region)
    ids, token = [], None
    while True:
        page = client.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
        ids += [f["Id"].rsplit("/", 1)[-1] for f in page["Findings"] if tag in f["Id"]]
        token = page.get("NextToken")
        if not token:
            return ids


def opensearch_event_ids(url: str, pattern: str) -> list[str]:
    """The event id of every document in the indexes matching ``pattern`` (one per document,
    so a finding stored twice — under two ids, or in two daily indexes — shows as a repeat)."""
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[url])
    client.indices.refresh(index=pattern, ignore_unavailable=True)
    ids: list[str] = []
    page = client.search(index=pattern, scroll="1m", size=500, _source_includes=["connector.event_id"],
                         body={"query": {"match_all": {}}}, ignore_unavailable=True)
    while page["hits"]["hits"]:
        ids += [hit["_source"]["connector"]["event_id"] for hit in page["hits"]["hits"]]
        page = client.scroll(scroll_id=page["_scroll_id"], scroll="1m")
    client.clear_scroll(scroll_id=page["_scroll_id"], ignore=(404,))
    client.close()
    return ids
