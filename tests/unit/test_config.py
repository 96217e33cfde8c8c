"""Settings: one source of truth, typos named, credentials never shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector.config import (
    Settings,
    load_settings,
    masked,
    schema_text,
    settings_schema,
)
from connector.errors import ConfigError
from connector.paths import schemas_dir


def test_the_committed_schema_is_the_one_the_dataclasses_generate() -> None:
    assert (schemas_dir() / "config.schema.json").read_text() == schema_text()


def test_every_dataclass_field_has_a_schema_entry_and_back() -> None:
    import dataclasses

    schema = settings_schema()
    for f in dataclasses.fields(Settings):
        assert f.name in schema["properties"]
        sub = getattr(Settings(), f.name)
        if dataclasses.is_dataclass(sub):
            assert set(schema["properties"][f.name]["properties"]) == {g.name for g in dataclasses.fields(sub)}
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(Settings)}


def test_defaults_pass_the_schema() -> None:
    assert load_settings(environ={}) == Settings()


@pytest.mark.parametrize(("variable", "suggestion"), [
    ("CONNECTOR_SQS_QUEUEURL", "CONNECTOR_SQS_QUEUE_URL"),
    ("CONNECTOR_SINK", "CONNECTOR_SINKS"),
    ("CONNECTOR_OPENSEARCH_PASSWD", "CONNECTOR_OPENSEARCH_PASSWORD"),
])
def test_an_unknown_variable_is_an_error_naming_the_closest(variable: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: "x"})
    assert variable in str(caught.value) and suggestion in str(caught.value)


def test_non_setting_variables_are_left_alone(tmp_path: Path) -> None:
    environ = {"CONNECTOR_SCHEMAS_DIR": str(tmp_path), "CONNECTOR_TEST_CACHE": "/x", "CONNECTOR_SHARED_DIR": "/y"}
    assert load_settings(environ=environ) == Settings()


def test_environment_values_reach_their_section_with_their_type() -> None:
    settings = load_settings(environ={
        "CONNECTOR_SQS_POLLERS": "3", "CONNECTOR_SINKS": "jsonl, opensearch", "CONNECTOR_OPENSEARCH_VERIFY_TLS": "no",
        "CONNECTOR_GRACE_SECONDS": "2.5", "CONNECTOR_KINESIS_START_POSITION": "LATEST",
    })
    assert settings.sqs.pollers == 3 and settings.sinks == ("jsonl", "opensearch")
    assert settings.opensearch.verify_tls is False and settings.grace_seconds == 2.5
    assert settings.kinesis.start_position == "LATEST"


@pytest.mark.parametrize(("environ", "named"), [
    ({"CONNECTOR_SQS_POLLERS": "0"}, "sqs.pollers"),
    ({"CONNECTOR_SQS_WAIT_SECONDS": "21"}, "sqs.wait_seconds"),
    ({"CONNECTOR_SINKS": "jsonl,jsonl"}, "sinks"),
    ({"CONNECTOR_OPENSEARCH_AUTH": "kerberos"}, "opensearch.auth"),
    ({"CONNECTOR_DEAD_LETTER": "ftp://x"}, "dead_letter"),
    ({"CONNECTOR_HTTP_PORT": "70000"}, "http_port"),
    ({"CONNECTOR_OPENSEARCH_VERIFY_TLS": "maybe"}, "CONNECTOR_OPENSEARCH_VERIFY_TLS"),
])
def test_bad_values_name_the_setting(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert named in str(caught.value)


def test_an_unknown_file_key_names_the_closest(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("sqs:\n  queue_ulr: x\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config, environ={})
    assert "sqs.queue_ulr" in str(caught.value) and "queue_url" in str(caught.value)


def test_precedence_is_override_then_environment_then_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("sqs:\n  pollers: 5\n  wait_seconds: 3\nhttp_port: 1\n")
    settings = load_settings(config_file=config, environ={"CONNECTOR_SQS_POLLERS": "6", "CONNECTOR_HTTP_PORT": "2"},
                             overrides={"http_port": 3})
    assert (settings.sqs.pollers, settings.sqs.wait_seconds, settings.http_port) == (6, 3, 3)


def test_masking_covers_secret_fields_and_credentials_inside_urls() -> None:
    settings = load_settings(environ={
        "CONNECTOR_OPENSEARCH_URL": "https://soc:hunter2@search.example:9200/",
        "CONNECTOR_OPENSEARCH_PASSWORD": "s3cret", "CONNECTOR_OPENSEARCH_USERNAME": "soc",
        "CONNECTOR_DEAD_LETTER": "https://user:pw@sqs.example/123/dlq",
    })
    shown = json.dumps(masked(settings))
    assert "hunter2" not in shown and "s3cret" not in shown and ":pw@" not in shown
    data = masked(settings)
    assert data["opensearch"]["url"] == "https://***@search.example:9200/"
    assert data["opensearch"]["password"] == "***" and data["opensearch"]["username"] == "soc"
    assert data["dead_letter"] == "https://***@sqs.example/123/dlq"


def test_an_unset_secret_is_shown_empty_not_starred() -> None:
    assert masked(Settings())["opensearch"]["password"] == ""


def test_run_with_a_mistyped_variable_exits_naming_the_right_one() -> None:
    proc = subprocess.run([sys.executable, "-m", "connector", "run"],
                          env={"PATH": "/usr/bin:/bin", "CONNECTOR_SQS_QUEUEURL": "x"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "CONNECTOR_SQS_QUEUEURL" in proc.stderr and "CONNECTOR_SQS_QUEUE_URL" in proc.stderr


def test_schema_check_command_reports_drift(tmp_path: Path) -> None:
    (tmp_path / "config.schema.json").write_text("{}\n")
    proc = subprocess.run([sys.executable, "-m", "connector.config", "--check-schema"],
                          env={"PATH": "/usr/bin:/bin", "CONNECTOR_SCHEMAS_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "--write-schema" in proc.stderr
