"""The OpenSearch sink against a plain ``helpers.bulk`` of the same documents, on a real node
(``OPENSEARCH_URL``, or one provisioned as the tests do).

The comparison is the same work on both sides:

* the same operations (the sink's bulk ``update`` + ``doc_as_upsert`` with the same ids and
  documents, built before the clock starts for the baseline: it is timed on sending only);
* the same index templates: the connector's templates are installed for both prefixes, so both
  sides write into indexes with the same mappings (``dynamic: false``), refresh interval and
  replicas. (Earlier the baseline wrote into indexes without a template: dynamic mappings of
  every field, 1 s refresh; not the work the sink does.) The bench checks the settings and
  mappings of the indexes both sides wrote into and fails if they differ;
* interleaved rounds, alternating which side goes first, each round into freshly created (empty)
  indexes, created before the clock starts (``opensearch_over_helpers_bulk``: new findings, the
  common case);
* and the redelivery case, the same documents again onto the ones written
  (``opensearch_redelivery_over_helpers_bulk``): the node finds them unchanged (``noop``), so
  this one is mostly the client's own cost.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import Any

import orjson

PREFIXES = ("bench-sink", "bench-plain")


def _interleaved(base: Callable[[], object], ours: Callable[[], object], rounds: int,
                 reset: Callable[[], object] | None = None) -> tuple[float, float, float]:
    """(median per-round ratio base/ours, median base seconds, median ours seconds); ``reset``
    runs before each timed call, outside the clock. Odd rounds time ``ours`` first, so neither
    side always follows the other's background work (refreshes, merges)."""
    from bench.timing import seconds

    ratios, bases, ourss = [], [], []
    for i in range(rounds):
        timed: dict[str, float] = {}
        for name, fn in (("ours", ours), ("base", base)) if i % 2 else (("base", base), ("ours", ours)):
            if reset is not None:
                reset()
            timed[name] = seconds(fn)
        ratios.append(timed["base"] / timed["ours"])
        bases.append(timed["base"])
        ourss.append(timed["ours"])
    return statistics.median(ratios), statistics.median(bases), statistics.median(ourss)


def _same_indexes(client: Any, sink_indexes: list[str]) -> None:
    """Raise unless every index the sink wrote into has a baseline twin with the same settings and mappings."""
    keys = ("number_of_shards", "number_of_replicas", "refresh_interval", "mapping")
    for name in sink_indexes:
        twin = name.replace(PREFIXES[0], PREFIXES[1], 1)
        ours = client.indices.get(index=name)[name]
        theirs = client.indices.get(index=twin)[twin]
        a = {k: v for k, v in ours["settings"]["index"].items() if k in keys}
        b = {k: v for k, v in theirs["settings"]["index"].items() if k in keys}
        if a != b or ours["mappings"] != theirs["mappings"]:
            raise RuntimeError(f"bench: {name} and {twin} differ in settings or mappings: {a} vs {b}")


def run(records: int, rounds: int) -> dict[str, Any]:
    from opensearchpy import OpenSearch, helpers

    from bench.corpus import target_record
    from connector.config import OpenSearchSettings
    from connector.factory import FindingFactory
    from connector.sinks.opensearch.setup import install
    from connector.sinks.opensearch.sink import OpenSearchSink, bulk_action, index_name

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
        client = OpenSearch(url, timeout=120)
        for prefix in PREFIXES:
            client.indices.delete(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)
            install(client, prefix, ism=False)
        sink = OpenSearchSink(OpenSearchSettings(url=url, index_prefix=PREFIXES[0]))
        actions = [bulk_action(PREFIXES[1], item) for item in rendered]
        indexes = sorted({index_name(prefix, item) for prefix in PREFIXES for item in rendered})
        failed: list[int] = []

        def reset() -> None:
            client.indices.delete(index=",".join(indexes), ignore_unavailable=True)
            for name in indexes:  # created (by the template) before the clock starts
                client.indices.create(index=name)
            client.cluster.health(index=",".join(indexes), wait_for_status="yellow")

        def plain() -> None:
            helpers.bulk(client, actions, chunk_size=5000, max_chunk_bytes=10 * 1024 * 1024)

        def ours() -> None:
            results = sink.send(rendered)
            failed.append(sum(1 for r in results if r.outcome.name != "OK"))

        sink.send(rendered[:2])  # templates checked, connections open, before the clock starts
        plain()
        fresh, base_s, ours_s = _interleaved(plain, ours, rounds, reset)
        _same_indexes(client, sorted({index_name(PREFIXES[0], item) for item in rendered}))
        redelivery, redo_base_s, redo_ours_s = _interleaved(plain, ours, rounds)
        size = sum(len(orjson.dumps(a["doc"])) for a in actions) / max(len(actions), 1)
        return {"opensearch_over_helpers_bulk": fresh, "opensearch_docs": len(rendered),
                "opensearch_docs_per_s": len(rendered) / ours_s,
                "helpers_bulk_docs_per_s": len(rendered) / base_s,
                "opensearch_redelivery_over_helpers_bulk": redelivery,
                "opensearch_redelivery_docs_per_s": len(rendered) / redo_ours_s,
                "helpers_bulk_redelivery_docs_per_s": len(rendered) / redo_base_s,
                "opensearch_mean_doc_bytes": round(size), "lost_opensearch": max(failed or [0])}
    finally:
        if node is not None:
            node.stop()
