"""The OpenSearch sink, templates, setup and `connector findings` against a real OpenSearch node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

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
    assert hits("connector.severity", "MEDIUM") >= 1  # the calibrated base of most mappings
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


# ---- per-format aliases ----------------------------------------------------------------------

def test_aliases_are_per_format_and_the_combined_alias_is_removed(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    day = "2026.11.20"
    # An index made by the earlier templates: behind <prefix>, an alias over both formats.
    client.indices.create(index=f"{prefix}-asff-2020.01.01", body={"aliases": {prefix: {}, f"{prefix}-asff": {}}})
    client.indices.create(index=f"{prefix}-ocsf-2004-2020.01.01", body={"aliases": {prefix: {}, f"{prefix}-ocsf": {}}})
    lines = install(client, prefix, ism=False)
    assert any(line.startswith(f"alias {prefix}: removed from 2 index(es)") for line in lines), lines
    assert not client.indices.exists_alias(name=prefix)
    assert all(line.endswith("unchanged") for line in install(client, prefix, ism=False))
    sink = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    batch = [r for r in findings(factory, "alias")]
    assert all(r.outcome is Outcome.OK for r in sink.send(batch))
    made = client.indices.get_alias(index=f"{prefix}-*-{batch[0].finding.event.event_time:%Y.%m.%d}")
    assert {name: sorted(v["aliases"]) for name, v in made.items() if day not in name} == {
        f"{prefix}-asff-{batch[0].finding.event.event_time:%Y.%m.%d}": [f"{prefix}-asff"],
        f"{prefix}-ocsf-2004-{batch[0].finding.event.event_time:%Y.%m.%d}": [f"{prefix}-ocsf"],
    }
    assert count(client, f"{prefix}-asff") == len(EVENTS) == count(client, f"{prefix}-ocsf")
    assert not client.indices.exists_alias(name=prefix)  # nothing counts a finding twice


def test_a_changed_template_extends_existing_indexes(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    install(client, prefix, ism=False)
    name = f"{prefix}-asff"
    template = client.indices.get_index_template(name=name)["index_templates"][0]["index_template"]
    del template["template"]["mappings"]["properties"]["Action"]
    template["_meta"]["connector_fingerprint"] = "older"
    client.indices.put_index_template(name=name, body=template)
    client.indices.create(index=f"{prefix}-asff-2020.01.01")
    assert "Action" not in json.dumps(client.indices.get_mapping(index=f"{prefix}-asff-2020.01.01"))
    lines = install(client, prefix, ism=False)
    assert f"existing indexes {prefix}-asff-*: mapping extended" in lines
    mapping = client.indices.get_mapping(index=f"{prefix}-asff-2020.01.01")[f"{prefix}-asff-2020.01.01"]["mappings"]
    assert mapping["properties"]["Action"]["properties"]["AwsApiCallAction"]["properties"]["RemoteIpDetails"]["properties"]["IpAddressV4"]["type"] == "ip"


# ---- native OCSF and ASFF fields ---------------------------------------------------------------

def test_every_case_is_indexed_and_native_fields_are_searchable(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    """Every mapping case (every event × variant) goes in; an analyst can filter on the native fields."""
    from tests.support.records import BOOK

    batch = [r for case in BOOK.cases() for r in factory.render(case.record)]
    sink = OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    results = sink.send(batch)
    assert [r.error for r in results if r.outcome is not Outcome.OK] == []
    client.indices.refresh(index=f"{prefix}-*")
    ocsf = [r.document for r in batch if r.format == "ocsf"]
    asff = [r.document for r in batch if r.format == "asff"]

    def hits(index: str, query: dict[str, Any]) -> int:
        return int(client.count(index=f"{prefix}-{index}", body={"query": query})["count"])

    def ocsf_where(test: Any) -> int:
        return sum(1 for d in ocsf if any(test(e) for e in d.get("evidences", [])))

    in_doc_range = ocsf_where(lambda e: str(e.get("src_endpoint", {}).get("ip", "")).startswith("203.0.113."))
    assert in_doc_range > 0 and hits("ocsf", {"term": {"evidences.src_endpoint.ip": "203.0.113.0/24"}}) == in_doc_range
    ipv6 = ocsf_where(lambda e: str(e.get("src_endpoint", {}).get("ip", "")).startswith("2001:db8:"))
    assert ipv6 > 0 and hits("ocsf", {"term": {"evidences.src_endpoint.ip": "2001:db8::/32"}}) == ipv6
    alice = "arn:aws:iam::111122223333:user/alice"
    assert hits("ocsf", {"term": {"evidences.actor.user.uid": alice}}) == ocsf_where(lambda e: e.get("actor", {}).get("user", {}).get("uid") == alice) > 0
    assert hits("ocsf", {"term": {"evidences.actor.user.name": "root"}}) == ocsf_where(lambda e: e.get("actor", {}).get("user", {}).get("name") == "root") > 0
    issuer = "arn:aws:iam::111122223333:role/NetworkAdmin"
    assert hits("ocsf", {"term": {"evidences.actor.session.issuer": issuer}}) == ocsf_where(lambda e: e.get("actor", {}).get("session", {}).get("issuer") == issuer) > 0
    assert hits("ocsf", {"term": {"api.operation": EVENT}}) == sum(1 for d in ocsf if d["api"]["operation"] == EVENT)

    def call(d: dict[str, Any]) -> dict[str, Any]:
        return dict(d.get("Action", {}).get("AwsApiCallAction", {}))

    assert hits("asff", {"term": {"Action.AwsApiCallAction.Api": EVENT}}) == sum(1 for d in asff if call(d).get("Api") == EVENT) > 0
    remote = sum(1 for d in asff if call(d).get("RemoteIpDetails", {}).get("IpAddressV4", "").startswith("203.0.113."))
    assert remote > 0 and hits("asff", {"term": {"Action.AwsApiCallAction.RemoteIpDetails.IpAddressV4": "203.0.113.0/24"}}) == remote
    domain = sum(1 for d in asff if call(d).get("DomainDetails", {}).get("Domain") == "cloudformation.amazonaws.com")
    assert domain > 0 and hits("asff", {"term": {"Action.AwsApiCallAction.DomainDetails.Domain": "cloudformation.amazonaws.com"}}) == domain
    key = "ASIAEXAMPLESESSION01"
    assert hits("asff", {"term": {"Resources.Details.AwsIamAccessKey.AccessKeyId": key}}) == sum(1 for d in asff if key in json.dumps(d["Resources"])) > 0

    caps = client.field_caps(index=f"{prefix}-asff,{prefix}-ocsf", fields="*")["fields"]
    for field in ("evidences.src_endpoint.ip", "Action.AwsApiCallAction.RemoteIpDetails.IpAddressV4", "connector.source_ip"):
        assert set(caps[field]) == {"ip"}, field
    for field in ("evidences.actor.user.uid", "evidences.actor.user.account.uid", "evidences.api.request.uid", "metadata.uid",
                  "finding_info.uid", "resources.uid", "Id", "Resources.Id", "Action.AwsApiCallAction.Api", "connector.finding_id"):
        assert set(caps[field]) == {"keyword"}, field


# ---- Dashboards saved objects ------------------------------------------------------------------

def test_dashboard_panels_fit_the_grid_and_references_resolve(prefix: str) -> None:
    from connector.sinks.opensearch.setup import GRID_COLUMNS, layout_errors, panels, saved_objects

    objects = saved_objects(prefix)
    dashboards = [o for o in objects if o["type"] == "dashboard"]
    assert dashboards
    for dashboard in dashboards:
        for panel in panels(dashboard):
            grid = panel["gridData"]
            assert grid["x"] >= 0 and grid["w"] >= 1 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel
    assert layout_errors(objects) == []
    assert {o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"} == {f"{prefix}-asff*", f"{prefix}-ocsf*"}
    assert all(o["id"].startswith(f"{prefix}-") for o in objects)  # a second prefix does not overwrite the first
    assert {o["id"] for o in saved_objects("cloudtrail-findings")} == {o["id"].replace(prefix, "ctf") for o in objects}


def test_dashboard_fields_exist_in_the_index_mappings(client: OpenSearch, opensearch_url: str, prefix: str, factory: FindingFactory) -> None:
    """Every field a visualization aggregates on or the saved search shows is mapped and aggregatable."""
    from connector.sinks.opensearch.setup import aggregated_fields, saved_objects

    OpenSearchSink(OpenSearchSettings(url=opensearch_url, index_prefix=prefix)).send(findings(factory, "dash"))
    objects = saved_objects(prefix)
    patterns = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    for obj in objects:
        target = next((r["id"] for r in obj.get("references", []) if r["type"] == "index-pattern"), obj["id"])
        wanted = [field for oid, field in aggregated_fields([obj]) if oid == obj["id"]]
        if not wanted or target not in patterns:
            continue
        caps = client.field_caps(index=patterns[target], fields=",".join(wanted))["fields"]
        for field in wanted:
            assert field in caps, (obj["id"], field)
            assert all(info["aggregatable"] or info["type"] == "text" for info in caps[field].values()), (obj["id"], field)


def test_dashboards_import_request_carries_the_saved_objects(prefix: str) -> None:
    """No OpenSearch Dashboards server can be had here (it is not published to any registry this
    machine reaches), so the request setup sends is checked against the saved-objects file."""
    import base64
    import email.parser
    import email.policy

    from connector.sinks.opensearch.setup import import_request, saved_objects

    settings = OpenSearchSettings(url="http://127.0.0.1:9200", index_prefix=prefix, auth="basic", username="admin", password="s3cret")
    request = import_request("https://dashboards.example:5601/", settings)
    assert request.method == "POST"
    assert request.url == "https://dashboards.example:5601/api/saved_objects/_import?overwrite=true"
    assert request.headers["osd-xsrf"] == "true"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"admin:s3cret").decode()
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode() + body)
    parts = list(message.iter_parts())  # type: ignore[attr-defined]
    assert len(parts) == 1 and parts[0].get_param("name", header="content-disposition") == "file"
    assert parts[0].get_filename() == "findings.ndjson"
    sent = [json.loads(line) for line in parts[0].get_content().decode().splitlines()]
    assert sent == saved_objects(prefix)
    with pytest.raises(Exception, match="not an http"):
        import_request("file:///etc/passwd", settings)


def test_setup_says_what_it_did_with_the_dashboards(opensearch_url: str, prefix: str) -> None:
    from tests.support.moto import free_port

    env = dict(os.environ, CONNECTOR_OPENSEARCH_URL=opensearch_url, CONNECTOR_OPENSEARCH_INDEX_PREFIX=prefix)
    env.pop("CONNECTOR_DASHBOARDS_URL", None)
    skipped = subprocess.run([sys.executable, "-m", "connector", "setup", "--no-ism"], capture_output=True, text=True, env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert "dashboards: skipped (set CONNECTOR_DASHBOARDS_URL" in skipped.stdout
    down = f"http://127.0.0.1:{free_port()}"
    refused = subprocess.run([sys.executable, "-m", "connector", "setup", "--no-ism"], capture_output=True, text=True,
                             env=dict(env, CONNECTOR_DASHBOARDS_URL=down))
    assert refused.returncode == 1
    assert f"connector setup: Dashboards at {down}" in refused.stderr and "Traceback" not in refused.stderr
    assert "index template" in refused.stdout  # the templates went in first


# ---- Serverless, connection pool, refused connections ------------------------------------------

def test_serverless_is_refused_at_start_up(prefix: str) -> None:
    from connector.errors import ConfigError

    with pytest.raises(ConfigError, match="OpenSearch Serverless"):
        OpenSearchSink(OpenSearchSettings(url="https://x.aoss.amazonaws.com", service="aoss", auth="sigv4", region="eu-west-1"))
    env = dict(os.environ, CONNECTOR_OPENSEARCH_URL="https://x.eu-west-1.aoss.amazonaws.com", CONNECTOR_OPENSEARCH_SERVICE="aoss",
               CONNECTOR_OPENSEARCH_AUTH="sigv4", CONNECTOR_OPENSEARCH_REGION="eu-west-1")
    env.update(CONNECTOR_SINKS="opensearch", CONNECTOR_HTTP_PORT="0", AWS_DEFAULT_REGION="eu-west-1",
               CONNECTOR_SQS_QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/111122223333/q")
    for command in (["setup"], ["run", "--once"]):  # the service stops before it receives anything
        done = subprocess.run([sys.executable, "-m", "connector", *command], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "(OpenSearch Serverless) is not supported" in done.stderr and "Traceback" not in done.stderr


def test_connection_pool_is_sized_to_the_workers(opensearch_url: str, prefix: str, factory: FindingFactory, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from connector.config import Settings

    workers = 4
    settings = Settings(sinks=("opensearch",), max_in_flight=workers, opensearch=OpenSearchSettings(url=opensearch_url, index_prefix=prefix))
    sink = OpenSearchSink.from_settings(settings)
    batches = [findings(factory, f"pool{i}") for i in range(3 * workers)]
    sink.send(batches[0])  # templates in place first
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = [r.outcome for results in pool.map(sink.send, batches) for r in results]
    assert set(outcomes) == {Outcome.OK}
    assert [r.getMessage() for r in caplog.records if "Connection pool is full" in r.getMessage()] == []
    connection = sink.client.transport.connection_pool.connections[0]
    assert connection.pool.pool.maxsize == workers + 1  # urllib3: the queue of idle connections


class Relay:
    """A TCP relay to the node that can be cut (then connections are refused) and restored."""

    def __init__(self, target: str) -> None:
        from tests.support.moto import free_port

        host, port = target.rsplit("//", 1)[1].split(":")
        self.target = (host, int(port))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None
        self.sockets: list[Any] = []

    def start(self) -> None:
        import socket
        import socketserver
        import threading

        target, open_sockets = self.target, self.sockets

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.create_connection(target)
                open_sockets.extend([self.request, upstream])

                def pump(a: socket.socket, b: socket.socket) -> None:
                    try:
                        while data := a.recv(65536):
                            b.sendall(data)
                    except OSError:
                        pass
                    finally:
                        for s in (a, b):
                            try:
                                s.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass

                back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
                back.start()
                pump(self.request, upstream)
                back.join(timeout=5)
                upstream.close()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Pipe)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        import socket

        self.server.shutdown()
        self.server.server_close()
        for sock in self.sockets:  # kept-alive connections end too, as when a node goes away
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sockets.clear()


def test_refused_connection_is_retried_and_reported_with_its_cause(opensearch_url: str, prefix: str, factory: FindingFactory,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from connector import metrics

    def retries() -> float:
        return sum(s.value for m in metrics.RETRIES.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels.get("component") == "opensearch")

    relay = Relay(opensearch_url)
    relay.start()
    attempts = 3
    sink = OpenSearchSink(OpenSearchSettings(url=relay.url, index_prefix=prefix, max_attempts=attempts, timeout_seconds=5))
    try:
        assert {r.outcome for r in sink.send(findings(factory, "up"))} == {Outcome.OK}
        relay.stop()  # the node is now unreachable: connection refused
        batch = findings(factory, "refused")
        before = retries()
        results = sink.send(batch)  # raised ValueError: int("N/A") before
        assert {r.outcome for r in results} == {Outcome.RETRYABLE}
        assert all("Connection refused" in (r.error or "") and "object at 0x" not in (r.error or "") for r in results), results[0].error
        client_logs = [r for r in caplog.records if r.name.startswith("opensearch")]
        assert [(r.name, r.getMessage()) for r in client_logs if r.exc_info] == []  # one line each, no traceback
        assert any("Connection refused" in r.getMessage() for r in client_logs)
        assert retries() - before == (attempts - 1) * len(batch)
        # Unreachable from the start (templates not yet checked): the retries run too.
        cold = OpenSearchSink(OpenSearchSettings(url=relay.url, index_prefix=prefix, max_attempts=attempts, timeout_seconds=5))
        before = retries()
        assert {r.outcome for r in cold.send(batch)} == {Outcome.RETRYABLE}
        assert retries() - before == (attempts - 1) * len(batch)
        relay.start()
        assert {r.outcome for r in sink.send(batch)} == {Outcome.OK}
    finally:
        try:
            relay.stop()
        except Exception:
            pass
        sink.close()
