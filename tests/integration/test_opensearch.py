"""The OpenSearch sink, templates, setup and `connector findings` against a real OpenSearch node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opensearchpy import OpenSearch

from connector.config import OpenSearchSettings
from connector.factory import FindingFactory
from connector.model import Outcome, RenderedFinding
from connector.sinks.opensearch.client import make_client
from connector.sinks.opensearch.setup import install
from connector.sinks.opensearch.sink import OpenSearchSink
from tests.support.records import EVENT, EVENTS, make_record

pytestmark = pytest.mark.opensearch


@pytest.fixture()
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def client(opensearch_url: str) -> Iterator[OpenSearch]:
    c = make_client(OpenSearchSettings(url=opensearch_url))
    yield c
    c.close()


@pytest.fixture(scope="module")
def factory() -> FindingFactory:
    return FindingFactory.load()


def recent(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def findings(factory: FindingFactory, tag: str, **overrides: object) -> list[RenderedFinding]:
    out = []
    for i, event in enumerate(EVENTS):
        out += factory.render(make_record(event, event_id=f"{tag}-{i}", eventTime=recent(10 + i), **overrides))
    return out


def count(client: OpenSearch, index: str) -> int:
    client.indices.refresh(index=index, ignore_unavailable=True)
    return int(client.count(index=index, ignore_unavailable=True)["count"])


def test_setup_is_idempotent(client: OpenSearch, prefix: str) -> None:
    first = install(client, prefix)
    second = install(client, prefix)
    assert any(line.endswith("created") for line in first)
    assert all(line.endswith(("unchanged", "is not installed)")) for line in second), second


def test_bulk_is_idempotent_and_lands_in_event_day_indexes(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    sink = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    batch = findings(factory, "idem")
    results = sink.send(batch)
    assert [r.outcome for r in results] == [Outcome.OK] * len(batch)
    assert {r.format for r in results} == {"asff", "ocsf"}
    assert count(client, f"{prefix}-asff") == len(EVENTS) and count(client, f"{prefix}-ocsf") == len(EVENTS)
    sink.send(batch)  # redelivery overwrites by _id
    assert count(client, f"{prefix}-asff") == len(EVENTS) and count(client, f"{prefix}-ocsf") == len(EVENTS)
    day = datetime.now(UTC) - timedelta(minutes=10)
    assert client.indices.exists(index=f"{prefix}-ocsf-2004-{batch[0].finding.event.event_time:%Y.%m.%d}")
    assert day.strftime("%Y.%m.%d") in " ".join(client.indices.get_alias(index=f"{prefix}-asff"))


def test_search_by_resource_principal_and_severity(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    sink = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    sink.send(findings(factory, "search"))
    client.indices.refresh(index=f"{prefix}-*")

    def hits(field: str, value: str) -> int:
        body = {"query": {"term": {field: value}}}
        return int(client.search(index=f"{prefix}-ocsf", body=body)["hits"]["total"]["value"])

    for rendered in findings(factory, "search"):
        if rendered.format == "ocsf":
            assert hits("connector.resource_ids", rendered.finding.resources[0].id) == 1
            assert hits("resources.uid", rendered.document["resources"][0]["uid"]) == 1
    assert hits("connector.principal", "alice") == len(EVENTS)
    assert hits("connector.severity", "HIGH") >= 1
    body = {"query": {"term": {"connector.source_ip": "203.0.113.0/24"}}}
    assert client.search(index=f"{prefix}-asff", body=body)["hits"]["total"]["value"] == len(EVENTS)


def test_arbitrary_cloudtrail_payloads_do_not_grow_the_mapping(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    sink = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    wide = {f"field{i}": {"nested": i} for i in range(5000)}
    batch = factory.render(make_record(EVENT, event_id="wide", eventTime=recent(5), requestParameters={**make_record(EVENT)["requestParameters"], **wide}))
    assert all(r.outcome is Outcome.OK for r in sink.send(batch))
    mappings = client.indices.get_mapping(index=f"{prefix}-ocsf")
    text = json.dumps(mappings)
    assert "field4999" not in text and text.count('"type"') < 200


def test_mapping_conflicts_are_permanent(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    batch = [r for r in findings(factory, "conflict") if r.format == "asff"][:1]
    day = batch[0].finding.event.event_time.strftime("%Y.%m.%d")
    install(client, prefix, ism=False)
    # An index created by someone else, where Title is a number: the document cannot be indexed.
    client.indices.create(index=f"{prefix}-asff-{day}", body={"mappings": {"properties": {"Title": {"type": "long"}}}})
    sink = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    result = sink.send(batch)[0]
    assert result.outcome is Outcome.PERMANENT
    assert "mapper_parsing_exception" in (result.error or "") or "400" in (result.error or "")


def test_unreachable_cluster_is_retryable_not_lost(prefix: str, factory: FindingFactory) -> None:
    from tests.support.moto import free_port

    settings = OpenSearchSettings(url=f"http://127.0.0.1:{free_port()}", index_prefix=prefix, max_attempts=2, timeout_seconds=2)
    results = OpenSearchSink(settings).send(findings(factory, "down"))
    assert {r.outcome for r in results} == {Outcome.RETRYABLE}


def test_connector_setup_and_findings_cli(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    env = dict(os.environ, CONNECTOR_OPENSEARCH_URL=opensearch_url, CONNECTOR_OPENSEARCH_INDEX_PREFIX=prefix)
    setup = subprocess.run([sys.executable, "-m", "connector", "setup"], capture_output=True, text=True, env=env)
    assert setup.returncode == 0, setup.stderr
    assert "created" in setup.stdout
    again = subprocess.run([sys.executable, "-m", "connector", "setup"], capture_output=True, text=True, env=env)
    assert "created" not in again.stdout and "unchanged" in again.stdout
    OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix)).send(findings(factory, "cli"))
    old = factory.render(make_record(EVENT, event_id="old", eventTime="2020-01-01T00:00:00Z"))
    OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix)).send(old)
    client.indices.refresh(index=f"{prefix}-*")
    listed = subprocess.run([sys.executable, "-m", "connector", "findings", "--since", "1h"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["TIME", "EVENT"]
    assert len(lines) == 6 and not any("2020-01-01" in line for line in lines)
    assert {line.split()[1] for line in lines[1:]} == set(EVENTS)
    by_resource = subprocess.run(
        [sys.executable, "-m", "connector", "findings", "--resource", "acl-0123456789abcdef0", "--json", "--format", "ocsf"],
        capture_output=True, text=True, env=env,
    )
    docs = [json.loads(line) for line in by_resource.stdout.splitlines()]
    assert len(docs) == 1 and docs[0]["class_uid"] == 2004
