"""Settings: argument > environment (``CONNECTOR_*``) > YAML file > default, schema-validated.

Every component reads its own section of one frozen ``Settings``. The environment maps onto
sections generically: ``CONNECTOR_<SECTION>_<FIELD>`` (``CONNECTOR_SQS_QUEUE_URL`` →
``sqs.queue_url``) and ``CONNECTOR_<FIELD>`` for top-level fields, so a new setting needs a
dataclass field and a schema entry, nothing else. Errors name the setting.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from connector.errors import ConfigError
from connector.paths import schemas_dir

SECRET_FIELDS = frozenset({"password", "secret", "token", "api_key"})


@dataclass(frozen=True, slots=True)
class SqsSettings:
    queue_url: str = ""
    pollers: int = 2
    wait_seconds: int = 20
    max_messages: int = 10
    visibility_timeout: int = 120
    #: Leave undecodable messages to the queue's own redrive policy instead of moving them.
    use_redrive_policy: bool = False


@dataclass(frozen=True, slots=True)
class KinesisSettings:
    stream_name: str = ""
    start_position: str = "TRIM_HORIZON"  # TRIM_HORIZON | LATEST | AT_TIMESTAMP
    start_timestamp: str = ""
    checkpoint_table: str = ""
    max_records: int = 1000
    idle_sleep_seconds: float = 1.0
    consumer_name: str = "cloudtrail-findings-connector"


@dataclass(frozen=True, slots=True)
class SecurityHubSettings:
    region: str = ""
    product_arn: str = ""
    rate_per_second: float = 10.0
    burst: int = 30
    max_attempts: int = 8
    #: For findings of other accounts: e.g. ``arn:{partition}:iam::{account}:role/SecurityHubImporter``.
    assume_role_arn_template: str = ""
    external_id: str = ""
    #: Accounts whose findings are imported with this process's own credentials.
    local_accounts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OpenSearchSettings:
    url: str = ""
    auth: str = "none"  # none | basic | sigv4
    username: str = ""
    password: str = ""
    region: str = ""
    service: str = "es"  # es | aoss
    index_prefix: str = "cloudtrail-findings"
    ca_bundle: str = ""
    verify_tls: bool = True
    bulk_max_bytes: int = 10 * 1024 * 1024
    max_attempts: int = 6
    timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class JsonlSettings:
    directory: str = "./findings"
    max_bytes: int = 64 * 1024 * 1024
    backups: int = 10


@dataclass(frozen=True, slots=True)
class LimitSettings:
    max_decompressed_bytes: int = 256 * 1024 * 1024
    max_depth: int = 64
    max_record_bytes: int = 4 * 1024 * 1024
    max_nesting: int = 8


@dataclass(frozen=True, slots=True)
class Settings:
    source: str = "sqs"  # sqs | kinesis
    sinks: tuple[str, ...] = ("securityhub",)
    #: sqs queue URL, ``s3://bucket/prefix`` or ``file:///dir``.
    dead_letter: str = ""
    mappings_dir: str = ""
    http_port: int = 8080
    http_host: str = "0.0.0.0"
    grace_seconds: float = 30.0
    log_level: str = "INFO"
    max_in_flight: int = 4
    dedupe_ttl_seconds: int = 900
    dedupe_max_entries: int = 100_000
    sqs: SqsSettings = field(default_factory=SqsSettings)
    kinesis: KinesisSettings = field(default_factory=KinesisSettings)
    securityhub: SecurityHubSettings = field(default_factory=SecurityHubSettings)
    opensearch: OpenSearchSettings = field(default_factory=OpenSearchSettings)
    jsonl: JsonlSettings = field(default_factory=JsonlSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)


SECTIONS: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in dataclasses.fields(Settings)
    if str(f.type).endswith("Settings")
}


def _field_types(cls: type) -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(cls)}


def _coerce(name: str, text: str, type_name: str) -> Any:
    """Environment values are strings; turn them into what the field holds."""
    try:
        if type_name == "int":
            return int(text)
        if type_name == "float":
            return float(text)
        if type_name == "bool":
            lowered = text.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return lowered in ("1", "true", "yes", "on")
        if type_name.startswith("tuple"):
            return [part.strip() for part in text.split(",") if part.strip()]
        return text
    except ValueError:
        raise ConfigError(f"setting {name}: cannot read {text!r} as {type_name}") from None


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """``CONNECTOR_*`` variables as a nested dict shaped like the YAML file."""
    out: dict[str, Any] = {}
    top = _field_types(Settings)
    for key, value in environ.items():
        if not key.startswith("CONNECTOR_") or key == "CONNECTOR_CONFIG_FILE":
            continue
        name = key[len("CONNECTOR_"):].lower()
        section = next((s for s in SECTIONS if name.startswith(s + "_")), None)
        if section is not None:
            fname = name[len(section) + 1:]
            ftypes = _field_types(SECTIONS[section])
            if fname in ftypes:
                out.setdefault(section, {})[fname] = _coerce(key, value, ftypes[fname])
                continue
        if name in top and name not in SECTIONS:
            out[name] = _coerce(key, value, top[name])
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _validate(data: Mapping[str, Any]) -> None:
    schema = json.loads((schemas_dir() / "config.schema.json").read_text())
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path)
    )
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ConfigError(f"setting {where}: {first.message}")


def _build(cls: type, data: Mapping[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in SECTIONS and cls is Settings:
            value = _build(SECTIONS[f.name], value or {})
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the file (if any), then the environment, then explicit overrides; validate; freeze."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = config_file or environ.get("CONNECTOR_CONFIG_FILE")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping")
        data = loaded
    data = _merge(data, from_environ(environ))
    if overrides:
        data = _merge(data, overrides)
    _validate(data)
    return _build(Settings, data)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as a dict with every secret replaced by ``***``."""

    def walk(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {
                f.name: ("***" if f.name in SECRET_FIELDS and getattr(value, f.name) else walk(getattr(value, f.name)))
                for f in dataclasses.fields(value)
            }
        if isinstance(value, tuple):
            return list(value)
        return value

    return walk(settings)
