"""Dead-letter destinations against moto (SQS, S3) and a file, and OpenSearch client auth modes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from opensearchpy import RequestsAWSV4SignerAuth

from connector.config import OpenSearchSettings
from connector.deadletters import open_dead_letters
from connector.deadletters.file import FileDeadLetters
from connector.errors import ConfigError, DeliveryError
from connector.model import DeadLetter
from connector.sinks.opensearch.client import make_client
from tests.support.moto import MotoServer

LETTERS = [
    DeadLetter("decode", "not JSON, gzip or base64", "sqs:m1", b"garbage", "sqs", "DecodeError"),
    DeadLetter("map", "eventTime missing", "ev-2", b"\xff\xfe binary", "sqs", "InvalidRecord"),
]


def test_sqs_dead_letters_carry_the_reason(aws_env: MotoServer) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    open_dead_letters(url).put(LETTERS)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    by_stage = {m["MessageAttributes"]["stage"]["StringValue"]: m for m in messages}
    assert by_stage["decode"]["Body"] == "garbage"
    assert by_stage["map"]["MessageAttributes"]["body_encoding"]["StringValue"] == "base64"
    assert by_stage["map"]["MessageAttributes"]["reason"]["StringValue"] == "eventTime missing"


def test_letters_too_large_for_sqs_are_stored_once_truncated_with_their_hash(aws_env: MotoServer) -> None:
    import hashlib

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    huge = b'{"Records":[' + b"{}," * 466_000 + b"{}]}"  # 1.4 MB, like the inflated double-gzip bomb
    binary = bytes(range(256)) * 2_000  # 512 KB, not UTF-8: base64 in the body
    letters = [DeadLetter("decode", "too deeply nested", "sqs:bomb", huge, "sqs", "DecodeError"),
               DeadLetter("decode", "not JSON", "sqs:bin", binary, "sqs", "DecodeError"), *LETTERS]
    open_dead_letters(url).put(letters)  # before: BatchRequestTooLong, on every retry
    messages = []
    for _ in range(5):
        messages += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
    by_id = {m["MessageAttributes"]["record_id"]["StringValue"]: m for m in messages}
    assert sorted(by_id) == ["ev-2", "sqs:bin", "sqs:bomb", "sqs:m1"], "each letter stored once"
    bomb = by_id["sqs:bomb"]
    reason = bomb["MessageAttributes"]["reason"]["StringValue"]
    assert reason.startswith("too deeply nested") and hashlib.sha256(huge).hexdigest() in reason
    assert f"truncated from {len(huge)}" in reason and huge.startswith(bomb["Body"].encode())
    assert by_id["sqs:m1"]["Body"] == "garbage", "small letters are untouched"


def test_s3_dead_letters(aws_env: MotoServer) -> None:
    s3 = boto3.client("s3")
    bucket = f"dl-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    open_dead_letters(f"s3://{bucket}/connector/dead").put(LETTERS)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 2 and all(k.startswith("connector/dead/") for k in keys)
    docs = [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    assert {d["record_id"] for d in docs} == {"sqs:m1", "ev-2"}


def test_an_unreachable_dead_letter_queue_raises(aws_env: MotoServer) -> None:
    with pytest.raises(DeliveryError):
        open_dead_letters(f"{aws_env.url}/123456789012/no-such-queue").put(LETTERS)


def test_file_dead_letters_and_unknown_schemes(tmp_path: Path) -> None:
    letters = FileDeadLetters(f"file://{tmp_path}/dl")
    letters.put(LETTERS)
    assert [d["stage"] for d in letters.read()] == ["decode", "map"]
    with pytest.raises(ConfigError, match="dead_letter"):
        open_dead_letters("ftp://somewhere")


def test_opensearch_auth_modes(aws_env: MotoServer) -> None:
    with pytest.raises(ConfigError, match=r"opensearch\.url"):
        make_client(OpenSearchSettings())
    with pytest.raises(ConfigError, match="username"):
        make_client(OpenSearchSettings(url="https://search.example", auth="basic"))
    basic = make_client(OpenSearchSettings(url="https://search.example", auth="basic", username="soc", password="pw"))
    assert basic.transport.kwargs["http_auth"] == ("soc", "pw")
    assert basic.transport.kwargs["verify_certs"] is True  # TLS verified by default
    signed = make_client(OpenSearchSettings(url="https://search.example", auth="sigv4", region="eu-west-1"))
    auth = signed.transport.kwargs["http_auth"]
    assert isinstance(auth, RequestsAWSV4SignerAuth) and auth.service == "es"
    request = requests.Request("GET", "https://search.example/_cluster/health").prepare()
    signed_request = auth(request)
    assert "/eu-west-1/es/aws4_request" in signed_request.headers["Authorization"]
    ca = make_client(OpenSearchSettings(url="https://search.example", ca_bundle="/etc/ssl/certs/ca-certificates.crt"))
    assert ca.transport.kwargs["ca_certs"] == "/etc/ssl/certs/ca-certificates.crt"
