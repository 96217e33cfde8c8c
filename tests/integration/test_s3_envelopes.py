"""Envelopes that point at S3, against moto S3: SNS → S3 event notification → gzip log file,
CloudTrail's own SNS delivery notice, EventBridge Object Created, SQS → SNS → S3; and the pipeline
keeps a message whose object could not be read for a transient reason."""

from __future__ import annotations

import gzip
import json
import uuid

import boto3

from connector.config import LimitSettings
from connector.envelopes import DecodedRecord, DecodeFailure, Decoder
from connector.select import Selector
from tests.support.moto import MotoServer
from tests.support.records import EVENTS, an_event, make_record

NOISE = {"eventVersion": "1.08", "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventID": "noise"}


def upload(bucket: str, key: str, ids: list[str]) -> None:
    records = [make_record(an_event(i), event_id=e) for i, e in enumerate(ids)] + [NOISE]
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=gzip.compress(json.dumps({"Records": records}).encode()))


def decode(body: dict) -> tuple[list[str], list[DecodeFailure]]:
    decoder = Decoder(LimitSettings(), s3_client=boto3.client("s3"), prefilter=Selector(EVENTS).pattern)
    items = list(decoder.decode(json.dumps(body).encode(), origin="t"))
    found = sorted(i.record["eventID"] for i in items if isinstance(i, DecodedRecord) and Selector(EVENTS).matches(i.record))
    return found, [i for i in items if isinstance(i, DecodeFailure)]


def s3_notification(bucket: str, key: str) -> dict:
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace(" ", "+")}}}]}


def sns(message: dict) -> dict:
    return {"Type": "Notification", "MessageId": "m", "Message": json.dumps(message)}


def test_s3_envelopes_nested(aws_env: MotoServer) -> None:
    bucket = f"trail-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/123456789012_CloudTrail_us-east-1_20261120T1005Z_a b.json.gz"
    upload(bucket, key, ["s-1", "s-2"])
    upload(bucket, "second.json.gz", ["s-3"])

    assert decode(sns(s3_notification(bucket, key))) == (["s-1", "s-2"], [])
    assert decode(sns({"s3Bucket": bucket, "s3ObjectKey": [key, "second.json.gz"]})) == (["s-1", "s-2", "s-3"], [])
    object_created = {"version": "0", "detail-type": "Object Created", "source": "aws.s3",
                      "detail": {"bucket": {"name": bucket}, "object": {"key": "second.json.gz"}}}
    assert decode(object_created) == (["s-3"], [])
    sqs_sns_s3 = {"Records": [{"messageId": "1", "eventSource": "aws:sqs", "body": json.dumps(sns(s3_notification(bucket, key)))}]}
    assert decode(sqs_sns_s3) == (["s-1", "s-2"], [])
    test_event = sns({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket})
    assert decode(test_event) == ([], [])


def test_missing_objects_are_dead_lettered_with_the_object_named(aws_env: MotoServer) -> None:
    bucket = f"trail-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    found, failures = decode(sns({"s3Bucket": bucket, "s3ObjectKey": ["gone.json.gz"]}))
    assert found == [] and len(failures) == 1
    assert "gone.json.gz" in str(failures[0].error) and "NoSuchKey" in str(failures[0].error)


def test_large_objects_are_streamed_from_s3_and_by_replay(aws_env: MotoServer, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Above the stream threshold an object is inflated and split as it is read (through the
    notice path and through replay's file source), with the same records as a whole read."""
    import connector.envelopes
    import connector.sources.files
    from connector.sources.files import FilesSource

    monkeypatch.setattr(connector.envelopes, "STREAM_OVER_BYTES", 1000)
    monkeypatch.setattr(connector.sources.files, "STREAM_OVER_BYTES", 1000)
    monkeypatch.setattr(connector.envelopes, "STREAM_WINDOW", 4096)
    monkeypatch.setattr(connector.envelopes, "STREAM_CHUNK", 512)
    bucket = f"trail-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    ids = [f"big-{i}" for i in range(60)]
    upload(bucket, "AWSLogs/big.json.gz", ids)
    assert decode(sns({"s3Bucket": bucket, "s3ObjectKey": ["AWSLogs/big.json.gz"]})) == (sorted(ids), [])

    source = FilesSource(f"s3://{bucket}/AWSLogs/", s3_client=boto3.client("s3"))
    [message] = source.receive()
    assert message.chunks is not None and b"s3Bucket" in message.body  # a reference, not the object
    decoder = Decoder(LimitSettings(), s3_client=boto3.client("s3"), prefilter=Selector(EVENTS).pattern)
    items = list(decoder.decode_stream(message.chunks(), origin="r"))
    assert sorted(i.record["eventID"] for i in items if isinstance(i, DecodedRecord) and Selector(EVENTS).matches(i.record)) == sorted(ids)
