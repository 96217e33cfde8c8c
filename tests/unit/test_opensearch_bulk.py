"""The OpenSearch sink's own ``_bulk`` path against a scripted client: what is sent, what is
resent, and the outcome reported for each item (the real node is in tests/integration)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from connector.config import OpenSearchSettings
from connector.factory import FindingFactory
from connector.model import Outcome, RenderedFinding
from connector.retry import Backoff
from connector.sinks.opensearch import bulk
from connector.sinks.opensearch.sink import RETRY_ON_CONFLICT, OpenSearchSink, document, index_name
from tests.support.records import EVENTS, make_record

Answer = Callable[[list[tuple[dict[str, Any], dict[str, Any]]]], dict[str, Any]]


def ok(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    return {"errors": False, "items": [{"update": {"_index": a["update"]["_index"], "_id": a["update"]["_id"], "status": 201}}
                                       for a, _ in pairs]}


class ScriptedClient:
    """Answers each ``bulk`` call with the next answer of the script (then ``ok``), recording
    every request as its (action, document) pairs."""

    def __init__(self, *script: Answer | Exception) -> None:
        self.script = list(script)
        self.requests: list[list[tuple[dict[str, Any], dict[str, Any]]]] = []
        self.bodies: list[bytes] = []

    def bulk(self, *, body: bytes) -> dict[str, Any]:
        assert isinstance(body, bytes) and body.endswith(b"\n")
        lines = body.split(b"\n")[:-1]
        pairs = [(orjson.loads(a), orjson.loads(d)) for a, d in zip(lines[::2], lines[1::2], strict=True)]
        self.requests.append(pairs)
        self.bodies.append(body)
        step = self.script.pop(0) if self.script else ok
        if isinstance(step, Exception):
            raise step
        return step(pairs)

    def ids(self, request: int) -> list[str]:
        return [a["update"]["_id"] for a, _ in self.requests[request]]


@pytest.fixture(scope="module")
def batch() -> list[RenderedFinding]:
    factory = FindingFactory.load()
    return [r for i in range(6) for r in factory.render(make_record(EVENTS[i % len(EVENTS)], event_id=f"bulk-{i:04d}"))]


def sink_for(client: ScriptedClient, **settings: Any) -> OpenSearchSink:
    sink = OpenSearchSink(OpenSearchSettings(url="http://127.0.0.1:9", index_prefix="t", **settings), client=client)
    sink._templates_ready = True  # no templates to check on a scripted client
    sink.backoff = Backoff(base_seconds=0.001, cap_seconds=0.001, max_attempts=sink.backoff.max_attempts)
    return sink


def reject(ids: set[str], status: int = 429, kind: str = "es_rejected_execution_exception") -> Answer:
    def answer(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
        items = []
        for action, _ in pairs:
            meta = action["update"]
            failed = meta["_id"] in ids
            items.append({"update": {"_index": meta["_index"], "_id": meta["_id"], "status": status if failed else 200,
                                     **({"error": {"type": kind, "reason": "no"}} if failed else {})}})
        return {"errors": bool(ids), "items": items}
    return answer


def test_each_item_is_one_update_with_its_id_index_and_document(batch: list[RenderedFinding]) -> None:
    client = ScriptedClient()
    results = sink_for(client).send(batch)
    assert [(r.finding_id, r.format, r.outcome) for r in results] == [(i.finding_id, i.format, Outcome.OK) for i in batch]
    (request,) = client.requests
    for (action, body), item in zip(request, batch, strict=True):
        assert action == {"update": {"_index": index_name("t", item), "_id": item.finding_id, "retry_on_conflict": RETRY_ON_CONFLICT}}
        assert body == {"doc": orjson.loads(orjson.dumps(document(item))), "doc_as_upsert": True}
        assert "analyst" not in body["doc"] and "raw_data" not in body["doc"]


def test_only_the_rejected_items_are_sent_again_with_the_same_bytes(batch: list[RenderedFinding]) -> None:
    rejected = {batch[1].finding_id, batch[4].finding_id}
    client = ScriptedClient(reject(rejected))
    results = sink_for(client).send(batch)
    assert {r.outcome for r in results} == {Outcome.OK}
    assert len(client.requests) == 2
    assert sorted(client.ids(1)) == sorted(i.finding_id for i in batch if i.finding_id in rejected)
    first = client.bodies[0].split(b"\n")
    again = client.bodies[1].split(b"\n")
    assert set(again[:-1]) <= set(first[:-1])  # resent as they were first serialised


def test_a_permanent_item_error_is_reported_and_not_retried(batch: list[RenderedFinding]) -> None:
    bad = batch[2].finding_id
    client = ScriptedClient(reject({bad}, status=400, kind="mapper_parsing_exception"))
    results = sink_for(client).send(batch)
    assert len(client.requests) == 1
    failed = [r for r in results if r.outcome is not Outcome.OK]
    assert [(r.finding_id, r.outcome) for r in failed] == [(bad, Outcome.PERMANENT)] * len(failed) and failed
    assert "mapper_parsing_exception" in (failed[0].error or "")


def test_retries_are_bounded_and_a_still_rejected_item_stays_retryable(batch: list[RenderedFinding]) -> None:
    stuck = batch[0].finding_id
    client = ScriptedClient(*[reject({stuck})] * 10)
    results = sink_for(client, max_attempts=3).send(batch)
    assert len(client.requests) == 3
    assert [r.outcome for r in results if r.finding_id == stuck] == [Outcome.RETRYABLE] * 2  # its ASFF and OCSF documents
    assert "429" in (next(r for r in results if r.finding_id == stuck).error or "")
    assert {r.outcome for r in results if r.finding_id != stuck} == {Outcome.OK}


def test_an_unreachable_node_is_retryable_with_its_cause(batch: list[RenderedFinding]) -> None:
    refused = OSConnectionError("N/A", "Connection refused", OSError("Connection refused"))
    client = ScriptedClient(*[refused] * 3)
    results = sink_for(client, max_attempts=3).send(batch)
    assert len(client.requests) == 3
    assert {r.outcome for r in results} == {Outcome.RETRYABLE}
    assert all("Connection refused" in (r.error or "") for r in results)


def test_a_whole_request_rejection_is_retried_and_a_refusal_is_permanent(batch: list[RenderedFinding]) -> None:
    client = ScriptedClient(TransportError(429, "es_rejected_execution_exception", {}))
    assert {r.outcome for r in sink_for(client).send(batch)} == {Outcome.OK}
    assert len(client.requests) == 2
    client = ScriptedClient(TransportError(413, "content too long", {}))
    results = sink_for(client).send(batch)
    assert len(client.requests) == 1 and {r.outcome for r in results} == {Outcome.PERMANENT}
    assert (results[0].error or "").startswith("413")


def test_an_answer_cut_short_leaves_the_rest_undelivered(batch: list[RenderedFinding]) -> None:
    def short(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
        return {"errors": False, "items": ok(pairs)["items"][:3]}

    client = ScriptedClient(short)
    assert {r.outcome for r in sink_for(client).send(batch)} == {Outcome.OK}
    assert client.ids(1) == [i.finding_id for i in batch[3:]]


def test_requests_are_cut_at_the_byte_limit_and_every_item_goes_once(batch: list[RenderedFinding]) -> None:
    sizes = [len(bulk.update_lines(index_name("t", i), i.finding_id, document(i), RETRY_ON_CONFLICT)) for i in batch]
    limit = max(sizes) * 2
    client = ScriptedClient()
    sink_for(client, bulk_max_bytes=limit).send(batch)
    assert len(client.requests) > 1 and all(len(body) <= limit for body in client.bodies)
    assert [i for r in range(len(client.requests)) for i in client.ids(r)] == [i.finding_id for i in batch]


def test_a_document_that_is_not_json_is_permanent_and_the_others_go(batch: list[RenderedFinding]) -> None:
    broken = dataclasses.replace(batch[0], document={**batch[0].document, "odd": object()})
    client = ScriptedClient()
    results = sink_for(client).send([broken, *batch[1:]])
    assert results[0].outcome is Outcome.PERMANENT and broken.finding_id in (results[0].error or "")
    assert {r.outcome for r in results[1:]} == {Outcome.OK}
    sent = [(a["update"]["_index"], a["update"]["_id"]) for a, _ in client.requests[0]]
    assert sent == [(index_name("t", i), i.finding_id) for i in batch[1:]]


def test_dumps_falls_back_to_json_for_what_orjson_refuses() -> None:
    from decimal import Decimal

    assert orjson.loads(bulk.dumps({"n": 2**70, "d": Decimal("1.5")})) == {"n": 2**70, "d": 1.5}
    assert bulk.dumps({"b": 1, "a": "é"}, sort_keys=True) == '{"a":"é","b":1}'.encode()
