"""The OpenSearch sink against a plain ``helpers.bulk`` of the same documents, on a real node
(``OPENSEARCH_URL``, or one provisioned as the tests do). Both index the same documents under
the same ids into their own indexes, round after round (each round overwrites the last)."""

from __future__ import annotations

import json
import os
from typing import Any


def run(records: int, rounds: int) -> dict[str, Any]:
    from opensearchpy import OpenSearch, helpers

    from bench.corpus import target_record
    from bench.timing import ratio
    from connector.config import OpenSearchSettings
    from connector.factory import FindingFactory
    from connector.sinks.opensearch.sink import OpenSearchSink

    node = None
    url = os.environ.get("OPENSEARCH_URL", "")
    if not url:
        from tests.support.opensearch import OpenSearchNode

        node = OpenSearchNode()
        node.start()
        url = node.url
    try:
        factory = FindingFactory.load()
        rendered = [r for i in range(records) for r in factory.render(target_record(i))]
        sink = OpenSearchSink(OpenSearchSettings(url=url, index_prefix="bench-sink"))
        sink.send(rendered[:2])  # templates installed before the clock starts
        actions = [dict(a, _index=str(a["_index"]).replace("bench-sink", "bench-plain")) for a in sink._actions(rendered)]
        client = OpenSearch(url, timeout=120)
        failed: list[int] = []

        def plain() -> None:
            helpers.bulk(client, actions, chunk_size=5000, max_chunk_bytes=10 * 1024 * 1024)

        def ours() -> None:
            results = sink.send(rendered)
            failed.append(sum(1 for r in results if r.outcome.name != "OK"))

        speed = ratio(plain, ours, rounds)
        size = sum(len(json.dumps(a.get("doc", a.get("_source")), default=str)) for a in actions) / max(len(actions), 1)
        return {"opensearch_over_helpers_bulk": speed.ratio, "opensearch_docs": len(rendered),
                "opensearch_docs_per_s": len(rendered) / speed.ours_seconds,
                "helpers_bulk_docs_per_s": len(rendered) / speed.base_seconds,
                "opensearch_mean_doc_chars": round(size), "lost_opensearch": max(failed or [0])}
    finally:
        if node is not None:
            node.stop()
