"""Settings: argument > environment (``CONNECTOR_*``) > YAML file > default, schema-validated.

The dataclasses below are the one source of truth. Each field's type (``Literal`` for a choice,
``tuple[...]`` for a list) and its ``limits`` metadata generate the JSON Schema the settings are
validated against (:func:`settings_schema`); ``schemas/config.schema.json`` is that schema written
out for editors and reviewers (``python -m connector.config --write-schema``), and a test fails
when the two differ. A new setting is one dataclass field, nothing else.

The environment maps onto sections generically: ``CONNECTOR_<SECTION>_<FIELD>``
(``CONNECTOR_SQS_QUEUE_URL`` → ``sqs.queue_url``) and ``CONNECTOR_<FIELD>`` for top-level fields.
A ``CONNECTOR_*`` variable that names no setting is an error that names the closest one, as is an
unknown key in the file: a typo must not silently leave a default in force.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import jsonschema
import yaml

from connector.errors import ConfigError
from connector.paths import schemas_dir

SourceKind = Literal["sqs", "kinesis"]
SinkKind = Literal["securityhub", "opensearch", "jsonl", "securitylake"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
StartPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
OpenSearchAuth = Literal["none", "basic", "sigv4"]
OpenSearchService = Literal["es", "aoss"]

SECRET_FIELDS = frozenset({"password", "secret", "token", "api_key"})

#: ``CONNECTOR_*`` variables that are not settings: where files live, and the test harness's own.
NON_SETTING_VARIABLES = frozenset({
    "CONNECTOR_CONFIG_FILE", "CONNECTOR_SCHEMAS_DIR", "CONNECTOR_DEPLOY_DIR", "CONNECTOR_SHARED_DIR",
})
NON_SETTING_PREFIXES = ("CONNECTOR_TEST_",)


def limits(**constraints: Any) -> Any:
    """Field metadata: JSON Schema keywords added to what the field's type implies."""
    return {"schema": constraints}


def _setting(default: Any, **constraints: Any) -> Any:
    return field(default=default, metadata=limits(**constraints))


@dataclass(frozen=True, slots=True)
class SqsSettings:
    queue_url: str = ""
    #: Receive loops. Four: a receive returns at most 10 messages, so a burst of one-record
    #: messages drains at pollers x 10 per round trip; Security Hub's quota takes 1,000 findings
    #: a second (10 requests of 100), which two pollers reach only at round trips under 20 ms.
    #: Idle, each is one long poll per ``wait_seconds``.
    pollers: int = _setting(4, minimum=1, maximum=64)
    wait_seconds: int = _setting(20, minimum=0, maximum=20)
    max_messages: int = _setting(10, minimum=1, maximum=10)
    visibility_timeout: int = 120
    #: Leave undecodable messages to the queue's own redrive policy instead of moving them.
    use_redrive_policy: bool = False


@dataclass(frozen=True, slots=True)
class KinesisSettings:
    stream_name: str = ""
    start_position: StartPosition = "TRIM_HORIZON"
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
    #: The SOC's OpenSearch Dashboards (https): when set, ``Remediation.Recommendation.Url`` opens
    #: the finding's OCSF document (its full runbook) there instead of the documentation. Off: "".
    recommendation_dashboards_url: str = _setting("", pattern="^($|https://)")


@dataclass(frozen=True, slots=True)
class OpenSearchSettings:
    url: str = ""
    auth: OpenSearchAuth = "none"
    username: str = ""
    password: str = ""
    region: str = ""
    service: OpenSearchService = "es"
    index_prefix: str = "cloudtrail-findings"
    ca_bundle: str = ""
    verify_tls: bool = True
    bulk_max_bytes: int = 10 * 1024 * 1024
    max_attempts: int = 6
    timeout_seconds: float = 30.0
    #: TLS verification off, or basic auth / a password over plain ``http://``, is refused
    #: unless this is set (and then warned about at start-up): for a lab node, never production.
    allow_insecure: bool = False


@dataclass(frozen=True, slots=True)
class JsonlSettings:
    directory: str = "./findings"
    max_bytes: int = 64 * 1024 * 1024
    backups: int = 10


@dataclass(frozen=True, slots=True)
class SecurityLakeSettings:
    """The Security Lake custom source (``connector/sinks/securitylake.py``; ``deploy/securitylake/``)."""

    #: The custom source's ``provider.location``: ``s3://<lake bucket>/ext/<source>/[<version>/]``.
    location: str = _setting("", pattern=r"^$|^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/ext/[A-Za-z0-9_.:-]{1,64}(/[A-Za-z0-9_.-]{1,32})?/?$")
    #: The provider role Security Lake made (``AmazonSecurityLake-Provider-<source>-<region>``); empty: own credentials.
    role_arn: str = _setting("", pattern=r"^$|^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
    external_id: str = ""
    #: The lake bucket's Region (empty: the SDK's default).
    region: str = ""
    #: A batch is written when it holds this many findings, this many bytes of JSON, or its
    #: oldest finding has waited ``max_age_seconds`` (each sender waits until its findings are written).
    max_findings: int = _setting(10_000, minimum=1, maximum=1_000_000)
    max_bytes: int = _setting(64 * 1024 * 1024, minimum=1024)
    max_age_seconds: float = _setting(20.0, minimum=0, maximum=3600)
    max_attempts: int = _setting(5, minimum=1, maximum=20)


@dataclass(frozen=True, slots=True)
class S3Settings:
    #: Where S3 notices may be followed: ``bucket`` (keys in the CloudTrail layout
    #: ``[prefix/]AWSLogs/...``) or ``bucket/prefix`` (any key under the prefix). Empty: every S3
    #: notice is dead-lettered unread (``connector.trust``).
    trail_buckets: tuple[str, ...] = _setting((), items={"type": "string", "pattern": "^(s3://)?[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"})


@dataclass(frozen=True, slots=True)
class LimitSettings:
    max_decompressed_bytes: int = 256 * 1024 * 1024
    #: Streamed objects (large S3 log files) may inflate beyond ``max_decompressed_bytes`` if they
    #: stay within this ratio of their compressed size (real log files ~10:1, bombs ~1000:1).
    max_gzip_ratio: int = 100
    max_depth: int = 64
    max_record_bytes: int = 4 * 1024 * 1024
    max_nesting: int = 8


CorrelationStore = Literal["memory", "dynamodb"]
CorrelationKey = Literal["principal", "vpc"]


@dataclass(frozen=True, slots=True)
class CorrelationSettings:
    """Teardown correlation (``connector.correlate``): ``threshold`` deletions by one principal (or
    in one VPC) within a ``window_seconds`` window give one extra finding. Several replicas need
    the ``dynamodb`` store (``table``, TTL attribute ``expires_at``)."""

    enabled: bool = False
    store: CorrelationStore = "memory"
    table: str = ""
    key: CorrelationKey = "principal"
    threshold: int = _setting(5, minimum=2, maximum=1000)
    #: Must divide a day: 60, 300, 600, 900, 1800, 3600, ...
    window_seconds: int = _setting(600, minimum=60, maximum=86400)
    retention_seconds: int = 2 * 86400


@dataclass(frozen=True, slots=True)
class EnrichmentSettings:
    """Read the removed resource and what its deletion broke (connector/enrich/); off by default."""

    enabled: bool = False
    #: A finding waits at most this long for its lookups, then goes out unenriched (marked so).
    budget_seconds: float = _setting(2.0, minimum=0.1, maximum=30)
    cache_ttl_seconds: int = 300
    cache_max_entries: int = 4096
    rate_per_second: float = 20.0
    burst: int = 40
    #: Role in other accounts; empty = the Security Hub fan-out's ``assume_role_arn_template``.
    assume_role_arn_template: str = ""


@dataclass(frozen=True, slots=True)
class ResolutionSettings:
    """Findings that resolve themselves (connector/resolve/): the mappings' ``restores:`` events
    are selected too, and mark the finding they undo resolved. Several replicas (and restarts)
    need the ``dynamodb`` store (``table``, TTL attribute ``expires_at``)."""

    enabled: bool = False
    store: CorrelationStore = "memory"
    table: str = ""
    #: How long open findings and restores are kept in the dynamodb store (its TTL).
    retention_seconds: int = _setting(30 * 86400, minimum=3600, maximum=366 * 86400)
    #: Memory store: open findings (and early restores) remembered, the oldest forgotten first.
    max_entries: int = _setting(100_000, minimum=1, maximum=10_000_000)


@dataclass(frozen=True, slots=True)
class TriageSettings:
    #: Context and suppression rules: "" the shipped deploy/triage-rules.yaml, "none" off, or a path.
    rules_file: str = ""
    #: DynamoDB table for first-seen sightings (shared by replicas); "" keeps them in memory.
    first_seen_table: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    source: SourceKind = "sqs"
    sinks: tuple[SinkKind, ...] = _setting(("securityhub",), minItems=1, uniqueItems=True)
    #: sqs queue URL, ``s3://bucket/prefix`` or ``file:///dir``.
    dead_letter: str = _setting("", pattern="^($|https?://|s3://|file://|arn:)")
    mappings_dir: str = ""
    http_port: int = _setting(8080, minimum=0, maximum=65535)
    http_host: str = "0.0.0.0"
    grace_seconds: float = 30.0
    log_level: LogLevel = "INFO"
    max_in_flight: int = _setting(4, minimum=1, maximum=256)
    #: Receives are gathered into one batch of up to this many messages (within
    #: ``gather_seconds``) so a burst reaches Security Hub 100 findings a request, not 10.
    gather_messages: int = _setting(100, minimum=1, maximum=10000)
    gather_seconds: float = _setting(0.5, minimum=0, maximum=30)
    #: While a sink is down, hold the failed batches and stop receiving (``run`` only; ``--once``
    #: releases and exits): an outage then spends no SQS receive count.
    hold_on_outage: bool = True
    #: A held batch older than this is released (SQS keeps a message invisible 12 h at most).
    max_hold_seconds: float = _setting(6 * 3600.0, minimum=1, maximum=43000)
    dedupe_ttl_seconds: int = 900
    #: OpenSearch Dashboards base URL; when set, ``connector setup`` imports the saved objects there.
    dashboards_url: str = _setting("", pattern="^($|https?://)")
    dedupe_max_entries: int = 100_000
    sqs: SqsSettings = field(default_factory=SqsSettings)
    kinesis: KinesisSettings = field(default_factory=KinesisSettings)
    securityhub: SecurityHubSettings = field(default_factory=SecurityHubSettings)
    opensearch: OpenSearchSettings = field(default_factory=OpenSearchSettings)
    jsonl: JsonlSettings = field(default_factory=JsonlSettings)
    securitylake: SecurityLakeSettings = field(default_factory=SecurityLakeSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    triage: TriageSettings = field(default_factory=TriageSettings)
    correlation: CorrelationSettings = field(default_factory=CorrelationSettings)
    enrichment: EnrichmentSettings = field(default_factory=EnrichmentSettings)
    resolution: ResolutionSettings = field(default_factory=ResolutionSettings)


# ---- the schema, generated from the dataclasses -------------------------------------------------

@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[__name__]))


def _type_schema(hint: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _object_schema(hint)
    origin = get_origin(hint)
    if origin is Literal:
        return {"enum": list(get_args(hint))}
    if origin is tuple:
        return {"type": "array", "items": _type_schema(get_args(hint)[0])}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer", "minimum": 0}
    if hint is float:
        return {"type": "number", "minimum": 0}
    if hint is str:
        return {"type": "string"}
    raise TypeError(f"no schema for a setting of type {hint!r}")


def _object_schema(cls: type) -> dict[str, Any]:
    hints = _hints(cls)
    properties = {
        f.name: {**_type_schema(hints[f.name]), **f.metadata.get("schema", {})} for f in dataclasses.fields(cls)
    }
    return {"type": "object", "additionalProperties": False, "properties": properties}


@cache
def settings_schema() -> dict[str, Any]:
    """The JSON Schema of the settings file, derived from :class:`Settings`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "connector settings (YAML file; CONNECTOR_<SECTION>_<FIELD> in the environment)",
        "$comment": "generated from connector/config.py by `python -m connector.config --write-schema`; do not edit",
        **_object_schema(Settings),
    }


def schema_text() -> str:
    return json.dumps(settings_schema(), indent=2) + "\n"


SECTIONS: dict[str, type] = {
    name: hint for name, hint in _hints(Settings).items() if isinstance(hint, type) and dataclasses.is_dataclass(hint)
}


# ---- the environment ---------------------------------------------------------------------------

def _variables() -> dict[str, tuple[str | None, str, Any]]:
    """Every settings variable → (section or None, field, type hint)."""
    out: dict[str, tuple[str | None, str, Any]] = {}
    for name, hint in _hints(Settings).items():
        if name in SECTIONS:
            for fname, fhint in _hints(SECTIONS[name]).items():
                out[f"CONNECTOR_{name}_{fname}".upper()] = (name, fname, fhint)
        else:
            out[f"CONNECTOR_{name}".upper()] = (None, name, hint)
    return out


def _coerce(name: str, text: str, hint: Any) -> Any:
    """Environment values are strings; turn them into what the field holds."""
    try:
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is bool:
            lowered = text.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return lowered in ("1", "true", "yes", "on")
        if get_origin(hint) is tuple:
            return [part.strip() for part in text.split(",") if part.strip()]
        return text
    except ValueError:
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"setting {name}: cannot read {text!r} as {kind}") from None


def _is_setting_variable(key: str) -> bool:
    return (key.startswith("CONNECTOR_") and key not in NON_SETTING_VARIABLES
            and not key.startswith(NON_SETTING_PREFIXES))


def _closest(word: str, choices: typing.Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {near[0]}?" if near else ""


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """``CONNECTOR_*`` variables as a nested dict shaped like the YAML file."""
    known = _variables()
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not _is_setting_variable(key):
            continue
        if key not in known:
            raise ConfigError(f"environment variable {key} is not a setting{_closest(key, known)}")
        section, fname, hint = known[key]
        target = out.setdefault(section, {}) if section else out
        target[fname] = _coerce(key, value, hint)
    return out


# ---- loading -----------------------------------------------------------------------------------

def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _message(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        unknown = [key for key in error.instance if key not in allowed]
        key = str(unknown[0]) if unknown else "?"
        name = f"{where}.{key}" if where else key
        return f"setting {name}: unknown setting{_closest(key, allowed)}"
    return f"setting {where or '(top level)'}: {error.message}"


def _validate(data: Mapping[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(settings_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(_message(errors[0]))


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
    settings: Settings = _build(Settings, data)
    return settings


# ---- showing -----------------------------------------------------------------------------------

_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def mask_text(text: str) -> str:
    """``https://user:pass@host`` → ``https://***@host``: credentials hide inside URLs too."""
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}***@", text)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as a dict with every secret replaced by ``***``."""

    def walk(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                f.name: ("***" if f.name in SECRET_FIELDS and getattr(value, f.name) else walk(getattr(value, f.name)))
                for f in dataclasses.fields(value)
            }
        if isinstance(value, tuple):
            return [walk(item) for item in value]
        if isinstance(value, str):
            return mask_text(value)
        return value

    result: dict[str, Any] = walk(settings)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m connector.config --write-schema``: regenerate schemas/config.schema.json."""
    args = sys.argv[1:] if argv is None else argv
    target = schemas_dir() / "config.schema.json"
    if args == ["--write-schema"]:
        target.write_text(schema_text())
        print(f"wrote {target}")
        return 0
    if args == ["--check-schema"]:
        if target.read_text() != schema_text():
            print(f"{target} differs from connector/config.py; run python -m connector.config --write-schema",
                  file=sys.stderr)
            return 1
        return 0
    print(schema_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
