"""Security checks as tests: which S3 locations are trusted, identifier values refused before they
reach ids and endpoints, TLS verification on by default with an untrusted certificate refused
(a real local HTTPS server with a self-signed certificate), insecure OpenSearch settings only
with an explicit opt-in and a warning, no credential shown by `connector config`, and index
templates that do not map arbitrary fields."""

from __future__ import annotations

import http.server
import json
import logging
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import SSLError, TransportError

from connector.config import OpenSearchSettings, load_settings
from connector.errors import ConfigError, InvalidRecord
from connector.events import parse_event, partition_for
from connector.sinks.opensearch.client import make_client
from connector.trust import S3Trust, region_problem
from tests.conftest import REPO
from tests.support.records import EVENT, make_record

ORG_KEY = "org-trail/AWSLogs/o-abc123def4/123456789012/CloudTrail/eu-west-1/2026/11/20/123456789012_CloudTrail_eu-west-1_20261120T1000Z_a1.json.gz"


# ---- S3 trust ---------------------------------------------------------------------------------

def test_trail_buckets_admit_only_the_cloudtrail_layout_or_a_configured_prefix() -> None:
    trust = S3Trust.parse(["trail-bucket", "s3://feeds-bucket/firehose/"])
    assert trust.refusal("trail-bucket", ORG_KEY) is None
    assert trust.refusal("trail-bucket", ORG_KEY.split("/", 1)[1]) is None  # no trail prefix
    assert trust.refusal("feeds-bucket", "firehose/2026/11/20/part-1.gz") is None
    for bucket, key in [("trail-bucket", "payroll.csv"), ("trail-bucket", "AWSLogs/123456789012/Config/x.json.gz"),
                        ("trail-bucket", ORG_KEY.replace("CloudTrail/", "CloudTrail-Digest/")),
                        ("feeds-bucket", ORG_KEY), ("finance-private", ORG_KEY), ("feeds-bucket", "firehose/../x"),
                        ("trail-bucket", ORG_KEY + "\n"), ("../../etc", ORG_KEY), ("TRAIL-BUCKET", ORG_KEY)]:
        reason = trust.refusal(bucket, key)
        assert reason is not None and reason.startswith("S3 notice refused"), (bucket, key)
        assert "\n" not in reason
    assert S3Trust().refusal("trail-bucket", ORG_KEY) is not None, "nothing configured: nothing followed"


def test_a_misconfigured_trail_bucket_is_a_settings_error() -> None:
    with pytest.raises(ConfigError, match=r"s3\.trail_buckets"):
        S3Trust.parse(["../../etc"])
    with pytest.raises(ConfigError, match=r"s3\.trail_buckets"):
        load_settings(environ={"CONNECTOR_S3_TRAIL_BUCKETS": "Not_A_Bucket"})
    assert load_settings(environ={"CONNECTOR_S3_TRAIL_BUCKETS": "a-trail, b-trail/prefix/"}).s3.trail_buckets == ("a-trail", "b-trail/prefix/")


# ---- identifiers from the record ------------------------------------------------------------------

@pytest.mark.parametrize("region", ["../../etc", "us-east-1/../x", "us-east-1.evil.example", "", "US-EAST-1", "us east 1"])
def test_hostile_regions_are_invalid_records(region: str) -> None:
    assert region_problem(region) is not None
    with pytest.raises(InvalidRecord, match="awsRegion"):
        parse_event(make_record(EVENT, awsRegion=region or " x "))


@pytest.mark.parametrize("region", ["us-east-1", "us-gov-west-1", "cn-north-1", "ap-southeast-5", "il-central-1", "us-isob-east-1"])
def test_real_regions_pass(region: str) -> None:
    assert parse_event(make_record(EVENT, awsRegion=region)).region == region


@pytest.mark.parametrize("event_id", ["a/b", "../../x", "id with space", "x" * 300, "\u202eabc"])
def test_event_ids_that_would_change_the_finding_id_are_refused(event_id: str) -> None:
    with pytest.raises(InvalidRecord, match="eventID"):
        parse_event(make_record(EVENT, event_id=event_id))


def test_an_arn_partition_is_believed_only_when_it_is_one() -> None:
    assert partition_for("cn-north-1", "arn:aws-cn:iam::123456789012:user/x") == "aws-cn"
    assert partition_for("us-east-1", "arn:../../etc:iam::123456789012:user/x") == "aws"
    assert partition_for("us-gov-west-1", "arn:evil:iam::1:user/x") == "aws-us-gov"


# ---- TLS and insecure OpenSearch settings ----------------------------------------------------

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real HTTPS server on 127.0.0.1 with a freshly made self-signed certificate."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # whatever it answers, the point is whether TLS got this far
            self.send_response(418)
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_tls_is_verified_by_default_and_an_untrusted_certificate_is_refused(self_signed: tuple[str, Path]) -> None:
    url, cert = self_signed
    assert OpenSearchSettings().verify_tls is True and load_settings(environ={}).opensearch.verify_tls is True
    client = make_client(OpenSearchSettings(url=url, timeout_seconds=5))
    with pytest.raises((SSLError, OSConnectionError)) as refused:
        client.info()
    assert "certificate" in str(refused.value).lower()
    # The same server with its certificate trusted: TLS succeeds and the HTTP answer comes back.
    trusted = make_client(OpenSearchSettings(url=url, ca_bundle=str(cert), timeout_seconds=5))
    with pytest.raises(TransportError) as answered:
        trusted.info()
    assert answered.value.status_code == 418


@pytest.mark.parametrize("settings", [
    OpenSearchSettings(url="https://search.example", verify_tls=False),
    OpenSearchSettings(url="http://search.example:9200", auth="basic", username="soc", password="pw"),
    OpenSearchSettings(url="http://soc:pw@search.example:9200"),
])
def test_insecure_opensearch_settings_need_the_opt_in_and_are_warned_about(
    settings: OpenSearchSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="allow_insecure"):
        make_client(settings)
    opted_in = OpenSearchSettings(**{**{f: getattr(settings, f) for f in settings.__slots__}, "allow_insecure": True})
    with caplog.at_level(logging.WARNING, logger="connector.sinks.opensearch.client"):
        make_client(opted_in)
    assert any("insecure" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert not any("pw" in r.getMessage().split() for r in caplog.records)


def test_secure_opensearch_settings_need_no_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        make_client(OpenSearchSettings(url="https://search.example", auth="basic", username="soc", password="pw"))
        make_client(OpenSearchSettings(url="http://127.0.0.1:9200"))  # no credentials to give away
    assert not caplog.records


# ---- secrets in `connector config` ---------------------------------------------------------

def test_connector_config_shows_no_credential() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           "CONNECTOR_OPENSEARCH_URL": "https://soc:url-secret-31c@search.example",
           "CONNECTOR_OPENSEARCH_PASSWORD": "field-secret-77a", "CONNECTOR_SECURITYHUB_EXTERNAL_ID": "ext-id-9f1",
           "CONNECTOR_DEAD_LETTER": "https://user:dl-secret-2b@sqs.example/1/q",
           "AWS_SECRET_ACCESS_KEY": "aws-secret-5d", "AWS_SESSION_TOKEN": "aws-token-6e"}
    for extra in ([], ["--json"]):
        shown = subprocess.run([sys.executable, "-m", "connector", "config", *extra], env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        for secret in ("url-secret-31c", "field-secret-77a", "dl-secret-2b", "aws-secret-5d", "aws-token-6e"):
            assert secret not in shown.stdout + shown.stderr, secret


# ---- index templates -------------------------------------------------------------------------

def test_index_templates_do_not_map_arbitrary_fields() -> None:
    for path in sorted((REPO / "deploy" / "opensearch" / "templates").glob("*.json")):
        mappings = json.loads(path.read_text())["template"]["mappings"]
        assert mappings.get("dynamic") in (False, "false", "strict"), f"{path.name}: unknown fields would be mapped"
        assert mappings["properties"]["connector"].get("dynamic") == "strict", path.name
        raw = mappings["properties"]["connector"]["properties"]["raw_event"]
        assert raw.get("index") is False or raw.get("enabled") is False or raw.get("type") == "binary", path.name
