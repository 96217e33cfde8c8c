"""The Security Lake sink against moto's S3 over HTTP: the custom-source layout, Parquet read
back with pyarrow and checked by the independent OCSF validator, idempotent object names,
batching by count, bytes, age, waiting workers and shutdown, and hostile partition values."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from connector.build import build_pipeline
from connector.config import load_settings
from connector.deadletters.file import FileDeadLetters
from connector.errors import ConfigError
from connector.factory import FindingFactory
from connector.model import Outcome, RenderedFinding, SourceMessage
from connector.sinks import sink_class
from connector.sinks.securitylake import SecurityLakeSink
from connector.sinks.securitylake_schema import SCHEMA, document_from_row
from tests.conftest import REPO
from tests.support.moto import MotoServer
from tests.support.records import BOOK, EVENT, make_record
from tests.support.sink_contents import findings

SOURCE = "cloudtrail-findings"
LAYOUT = re.compile(
    rf"ext/{SOURCE}/region=(?P<region>[a-z0-9-]+)/accountId=(?P<account>[0-9]{{12}})/eventDay=(?P<day>[0-9]{{8}})/"
    r"[0-9a-f]{32}\.parquet"
)


@pytest.fixture()
def bucket(aws_env: MotoServer) -> str:
    name = f"aws-security-data-lake-us-east-1-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def make_sink(bucket: str, **options: Any) -> SecurityLakeSink:
    options.setdefault("callers", 1)  # one caller: every send is written before it returns
    return SecurityLakeSink(f"s3://{bucket}/ext/{SOURCE}/", client=boto3.client("s3"), **options)


def keys(bucket: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def rows(bucket: str, key: str) -> list[dict[str, Any]]:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert table.schema.equals(SCHEMA)
    return [document_from_row(row) for row in table.to_pylist()]


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


@functools.cache
def every_case() -> list[RenderedFinding]:
    """One OCSF finding per mapping case and variant: every attribute the renderer can emit."""
    factory = FindingFactory.load()
    return [r for case in BOOK.cases() for r in factory.render(case.record, origin=case.variant) if r.format == "ocsf"]


def wait_until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# -- layout and round trip -------------------------------------------------------------------

def test_findings_land_in_the_layout_and_read_back_as_written(bucket: str) -> None:
    batch = (findings(3, fmt="ocsf", prefix="a") + findings(2, fmt="ocsf", prefix="b", account="210987654321")
             + findings(2, fmt="ocsf", prefix="c", region="eu-west-1") + every_case())
    sink = make_sink(bucket)
    results = sink.send(batch)
    assert [r.finding_id for r in results] == [i.finding_id for i in batch]
    assert {r.outcome for r in results} == {Outcome.OK}, [r.error for r in results if r.error]
    sent = {i.finding_id: without_nulls(dict(i.document)) for i in batch}
    read: dict[str, dict[str, Any]] = {}
    for key in keys(bucket):
        match = LAYOUT.fullmatch(key)
        assert match, key
        documents = rows(bucket, key)
        assert [d["time"] for d in documents] == sorted(d["time"] for d in documents)  # time order
        for document in documents:
            # Each row is in its own partition: the key's values are the finding's.
            assert match["region"] == document["cloud"]["region"]
            assert match["account"] == document["cloud"]["account"]["uid"]
            day = time.strftime("%Y%m%d", time.gmtime(document["time"] / 1000))
            assert match["day"] == day
            read[document["finding_info"]["uid"]] = document
    assert sorted(read) == sorted(sent)
    assert read == sent  # every attribute survives Parquet (less the renderer's nulls)
    assert {LAYOUT.fullmatch(k)["region"] for k in keys(bucket)} >= {"us-east-1", "eu-west-1"}
    sink.close()


def test_rows_read_back_pass_the_independent_ocsf_validator(bucket: str, shared_dir: Path, tmp_path: Path) -> None:
    batch = every_case() + findings(4, fmt="ocsf", prefix="v")
    sink = make_sink(bucket)
    assert {r.outcome for r in sink.send(batch)} == {Outcome.OK}
    documents = [d for key in keys(bucket) for d in rows(bucket, key)]
    assert sorted(d["finding_info"]["uid"] for d in documents) == sorted(i.finding_id for i in batch)
    path = tmp_path / "from-parquet.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    proc = subprocess.run([sys.executable, str(shared_dir / "tools" / "check_ocsf.py"), "--strict", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(documents)} passed, 0 failed" in proc.stdout


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_every_column_has_the_type_ocsf_gives_the_attribute(shared_dir: Path) -> None:
    """The fixed schema is the OCSF class's: each column exists in Detection Finding 1.8.0 with
    a matching type (integer_t → int32, long_t/timestamp_t → int64, boolean_t → bool, strings)."""
    import pyarrow as pa

    ocsf = json.loads((shared_dir / "ocsf" / "1.8.0" / "detection_finding.schema.json").read_text())
    integer = {"integer_t": pa.int32(), "long_t": pa.int64(), "timestamp_t": pa.int64(), "port_t": pa.int32()}
    checked = 0

    def walk(kind: Any, node: dict[str, Any], path: str) -> None:
        nonlocal checked
        node = _resolve(ocsf, node)
        if pa.types.is_list(kind):
            assert node.get("type") == "array", path
            walk(kind.value_type, node["items"], path + "[]")
        elif pa.types.is_struct(kind):
            assert node.get("type") == "object", path
            for field in kind:
                assert field.name in node["properties"], f"{path}.{field.name} is not an OCSF attribute"
                walk(field.type, node["properties"][field.name], f"{path}.{field.name}")
        else:
            ocsf_type = node.get("x-ocsf-type", "")
            if ocsf_type in integer:
                assert kind == integer[ocsf_type], f"{path}: {ocsf_type} as {kind}"
            elif ocsf_type == "boolean_t":
                assert kind == pa.bool_(), path
            else:
                assert node.get("type") == "string" and kind == pa.string(), f"{path}: {ocsf_type} as {kind}"
            checked += 1

    for field in SCHEMA:
        if field.name == "unmapped":  # free-form in OCSF; ours has a fixed shape
            continue
        assert field.name in ocsf["properties"], field.name
        walk(field.type, ocsf["properties"][field.name], field.name)
    assert checked > 80


def test_an_attribute_the_schema_lacks_is_refused_not_silently_dropped(bucket: str) -> None:
    good, odd = findings(2, fmt="ocsf", prefix="schema")
    document = {**odd.document, "finding_info": {**odd.document["finding_info"], "new_attribute": "x"}}
    odd = dataclasses.replace(odd, document=document)
    results = {r.finding_id: r for r in make_sink(bucket).send([good, odd])}
    assert results[good.finding_id].outcome is Outcome.OK
    assert results[odd.finding_id].outcome is Outcome.PERMANENT
    assert "finding_info.new_attribute: not in the Security Lake Parquet schema" in results[odd.finding_id].error
    assert [d["finding_info"]["uid"] for k in keys(bucket) for d in rows(bucket, k)] == [good.finding_id]


# -- idempotency -----------------------------------------------------------------------------

def test_the_same_batch_twice_writes_the_same_object_with_no_duplicate_rows(bucket: str) -> None:
    batch = findings(6, fmt="ocsf", prefix="idem")
    sink = make_sink(bucket)
    assert {r.outcome for r in sink.send(batch)} == {Outcome.OK}
    first = keys(bucket)
    first_bytes = boto3.client("s3").get_object(Bucket=bucket, Key=first[0])["Body"].read()
    assert {r.outcome for r in make_sink(bucket).send(list(reversed(batch)))} == {Outcome.OK}  # redelivered, any order
    assert keys(bucket) == first and len(first) == 1
    assert boto3.client("s3").get_object(Bucket=bucket, Key=first[0])["Body"].read() == first_bytes
    ids = [d["finding_info"]["uid"] for d in rows(bucket, first[0])]
    assert sorted(ids) == sorted(i.finding_id for i in batch) and len(ids) == len(set(ids))
    # A batch holding the same finding twice (a redelivery racing its original) keeps one row.
    other = findings(2, fmt="ocsf", prefix="twice")
    assert {r.outcome for r in sink.send([other[0], other[1], other[0]])} == {Outcome.OK}
    new = sorted(set(keys(bucket)) - set(first))
    assert len(new) == 1 and len(rows(bucket, new[0])) == 2


# -- batching ---------------------------------------------------------------------------------

def test_a_batch_waits_for_its_age_then_is_written(bucket: str) -> None:
    sink = make_sink(bucket, callers=4, max_age_seconds=0.5)
    batch = findings(3, fmt="ocsf", prefix="age")
    out: list[Any] = []
    started = time.monotonic()
    sender = threading.Thread(target=lambda: out.append(sink.send(batch)))
    sender.start()
    wait_until(lambda: sink.pending == 3, "the findings to be buffered")
    assert keys(bucket) == []  # held, not yet written (and not yet answered)
    assert out == []
    sender.join(timeout=30)
    assert time.monotonic() - started >= 0.5
    assert {r.outcome for r in out[0]} == {Outcome.OK}
    assert len(keys(bucket)) == 1 and len(rows(bucket, keys(bucket)[0])) == 3


def test_concurrent_senders_share_one_object_once_every_worker_waits(bucket: str) -> None:
    sink = make_sink(bucket, callers=2, max_age_seconds=600)
    a, b = findings(2, fmt="ocsf", prefix="wa"), findings(3, fmt="ocsf", prefix="wb")
    out: dict[str, Any] = {}
    threads = [threading.Thread(target=lambda n=n, x=x: out.__setitem__(n, sink.send(x))) for n, x in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(out) == ["a", "b"], "a sender was left waiting although no other worker could add to its batch"
    assert {r.outcome for r in out["a"] + out["b"]} == {Outcome.OK}
    (key,) = keys(bucket)
    assert sorted(d["finding_info"]["uid"] for d in rows(bucket, key)) == sorted(i.finding_id for i in a + b)


def test_a_batch_is_cut_by_count_and_by_bytes(bucket: str) -> None:
    batch = findings(10, fmt="ocsf", prefix="count")
    sink = make_sink(bucket, callers=8, max_age_seconds=600, max_findings=4)
    assert {r.outcome for r in sink.send(batch)} == {Outcome.OK}  # full: written at once, no waiting
    assert sorted(len(rows(bucket, k)) for k in keys(bucket)) == [2, 4, 4]

    other = make_bucket_like(bucket)
    size = max(len(json.dumps(i.document, separators=(",", ":"))) for i in batch)
    sink = make_sink(other, max_bytes=size * 3)
    assert {r.outcome for r in sink.send(batch)} == {Outcome.OK}
    counts = sorted(len(rows(other, k)) for k in keys(other))
    assert sum(counts) == 10 and max(counts) <= 3 and len(counts) >= 4


def make_bucket_like(bucket: str) -> str:
    name = f"{bucket[:50]}-{uuid.uuid4().hex[:6]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def test_close_writes_the_waiting_batch_and_later_sends_are_retried(bucket: str) -> None:
    sink = make_sink(bucket, callers=4, max_age_seconds=600)
    batch = findings(2, fmt="ocsf", prefix="close")
    out: list[Any] = []
    sender = threading.Thread(target=lambda: out.append(sink.send(batch)))
    sender.start()
    wait_until(lambda: sink.pending == 2, "the findings to be buffered")
    sink.close()
    sender.join(timeout=30)
    assert {r.outcome for r in out[0]} == {Outcome.OK}
    assert len(keys(bucket)) == 1
    late = sink.send(findings(1, fmt="ocsf", prefix="late"))
    assert late[0].outcome is Outcome.RETRYABLE and "closed" in late[0].error


def test_an_s3_failure_is_retryable_and_names_the_object(aws_env: MotoServer) -> None:
    missing = f"aws-security-data-lake-missing-{uuid.uuid4().hex[:8]}"
    results = make_sink(missing).send(findings(2, fmt="ocsf", prefix="down"))
    assert {r.outcome for r in results} == {Outcome.RETRYABLE}
    assert all(f"s3://{missing}/ext/{SOURCE}/region=us-east-1/" in r.error and "NoSuchBucket" in r.error for r in results)


# -- hostile partition values ----------------------------------------------------------------

def with_cloud(item: RenderedFinding, **cloud: Any) -> RenderedFinding:
    document = {**item.document, "cloud": {**item.document["cloud"], **cloud}}
    return dataclasses.replace(item, document=document)


def test_an_invalid_region_or_account_is_refused_and_nothing_leaves_the_layout(bucket: str) -> None:
    (good,) = findings(1, fmt="ocsf", prefix="good")
    # A record's awsRegion "../../../escape" is refused by the mapper already (test_fuzz.py); the
    # sink refuses such a document too, whoever rendered it.
    base = findings(5, fmt="ocsf", prefix="crafted")
    traversal = with_cloud(base[4], region="../../../escape")
    crafted = [
        with_cloud(base[0], region="us-east-1\n"),
        with_cloud(base[1], region="us-east-1/accountId=000000000000"),
        with_cloud(base[2], account={"uid": "١٢٣٤٥٦٧٨٩٠١٢", "type_id": 10, "type": "AWS Account"}),  # Arabic-Indic digits
        with_cloud(base[3], account={"uid": "12345678901/../", "type_id": 10, "type": "AWS Account"}),
    ]
    results = {r.finding_id: r for r in make_sink(bucket).send([good, traversal, *crafted])}
    assert results[good.finding_id].outcome is Outcome.OK
    for item in (traversal, crafted[0], crafted[1]):
        assert results[item.finding_id].outcome is Outcome.PERMANENT
        assert "is not an AWS Region name; not written" in results[item.finding_id].error
    for item in crafted[2:]:
        assert results[item.finding_id].outcome is Outcome.PERMANENT
        assert "is not a 12-digit account id; not written" in results[item.finding_id].error
    written = keys(bucket)
    assert len(written) == 1 and all(LAYOUT.fullmatch(k) for k in written)


def test_through_the_pipeline_a_hostile_region_is_dead_lettered_and_the_message_acked(
    bucket: str, tmp_path: Path
) -> None:
    settings = load_settings(environ={}, overrides={"sinks": ["securitylake"], "max_in_flight": 1,
                                                    "securitylake": {"location": f"s3://{bucket}/ext/{SOURCE}/"}})
    letters = FileDeadLetters(f"file://{tmp_path}/dlq")
    sink = sink_class("securitylake").from_settings(settings)
    pipeline = build_pipeline(settings, sinks=[sink], dead_letters=letters, s3=boto3.client("s3"))
    records = [make_record(EVENT, event_id="fine"), make_record(EVENT, event_id="hostile", awsRegion="us-east-1/../x")]
    message = SourceMessage(id="m1", body=json.dumps({"Records": records}).encode(), source="test")
    result = pipeline.handle([message])
    assert result.done == (message,) and not result.retry
    (letter,) = letters.read()  # refused by the mapper, before any sink (connector/events.py)
    assert letter["stage"] == "map" and "is not an AWS Region name" in letter["reason"]
    assert letter["record_id"] == "hostile"
    (key,) = keys(bucket)
    assert LAYOUT.fullmatch(key) and [d["metadata"]["original_event_uid"] for d in rows(bucket, key)] == ["fine"]
    pipeline.close()


# -- settings and deploy/ --------------------------------------------------------------------

def test_the_provider_role_is_assumed_once_and_its_credentials_write(bucket: str) -> None:
    role = boto3.client("iam").create_role(
        RoleName=f"AmazonSecurityLake-Provider-t{uuid.uuid4().hex[:8]}-us-east-1",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    settings = load_settings(environ={}, overrides={"sinks": ["securitylake"], "max_in_flight": 1, "securitylake": {
        "location": f"s3://{bucket}/ext/{SOURCE}/", "role_arn": role, "external_id": "xid", "region": "us-east-1"}})
    sink = sink_class("securitylake").from_settings(settings)
    sink.check()
    for prefix in ("r1", "r2"):
        assert {r.outcome for r in sink.send(findings(2, fmt="ocsf", prefix=prefix))} == {Outcome.OK}
    assert len(keys(bucket)) == 2
    assert sink._client_factory._cache.assume_calls == 1  # cached until near expiry, not per flush


def test_settings_and_registry() -> None:
    env = {"CONNECTOR_SINKS": "securitylake", "CONNECTOR_SECURITYLAKE_LOCATION": "s3://aws-security-data-lake-eu-west-1-abc/ext/cloudtrail/1.0/",
           "CONNECTOR_SECURITYLAKE_MAX_AGE_SECONDS": "5", "CONNECTOR_MAX_IN_FLIGHT": "3"}
    sink = sink_class("securitylake").from_settings(load_settings(environ=env))
    assert isinstance(sink, SecurityLakeSink)
    assert (sink.bucket, sink.root, sink.max_age_seconds, sink.callers) == (
        "aws-security-data-lake-eu-west-1-abc", "ext/cloudtrail/1.0", 5.0, 3)
    kinesis = sink_class("securitylake").from_settings(load_settings(environ={**env, "CONNECTOR_SOURCE": "kinesis"}))
    assert kinesis.callers == 1  # one ordered worker: never wait for a second sender
    for bad in ("s3://bucket/not-ext/x/", "s3://bucket/ext/a/b/c/", "https://bucket/ext/x/", "s3://bucket/ext/a b/"):
        with pytest.raises(ConfigError, match=r"securitylake\.location"):
            load_settings(environ={**env, "CONNECTOR_SECURITYLAKE_LOCATION": bad})
    for dots in ("s3://bucket/ext/../", "s3://bucket/ext/source/../"):
        with pytest.raises(ConfigError, match="only dots"):
            SecurityLakeSink(dots)
    with pytest.raises(ConfigError, match=r"securitylake\.location is required"):
        sink_class("securitylake").from_settings(load_settings(environ={"CONNECTOR_SINKS": "securitylake"}))


def cfn_lint_targets() -> Iterator[Path]:
    yield from sorted((REPO / "deploy" / "securitylake").glob("*.yaml"))


def test_the_custom_source_template_is_valid_cloudformation() -> None:
    from tests.deploy.test_deploy import cfn, run, tool

    targets = list(cfn_lint_targets())
    assert targets
    proc = run([tool("cfn-lint"), *map(str, targets)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    template = cfn(targets[0])
    crawler = template["Resources"]["CrawlerRole"]["Properties"]
    assert crawler["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "glue.amazonaws.com"}
    # The connector may assume the provider role Security Lake makes, and nothing else.
    policy = template["Resources"]["AssumeProviderRolePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in policy] == ["sts:AssumeRole"]
