"""What every subcommand does first, one way: options, settings, logging, one-line errors.

Every command that needs settings takes ``--config FILE`` (else ``CONNECTOR_CONFIG_FILE``) and
``--log-level``; settings are then read from the file, the ``CONNECTOR_*`` environment and the
command's own overrides, in that order (``connector.config.load_settings``). A setting that
cannot be read is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from connector import aws_region
from connector.config import Settings, load_settings
from connector.errors import ConnectorError
from connector.runtime import logs

#: Exit code for a configuration or usage error (a retry without a change cannot help).
USAGE_ERROR = 2


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--log-level``, the same on every command that reads settings."""
    parser.add_argument("--config", default=None, help="YAML settings file (else CONNECTOR_CONFIG_FILE)")
    parser.add_argument("--log-level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log level (else CONNECTOR_LOG_LEVEL, default INFO)")


def report(command: str, error: object) -> None:
    """``connector <command>: <reason>`` on stderr."""
    print(f"connector {command}: {error}", file=sys.stderr)


def settings_or_report(
    command: str, args: argparse.Namespace | None = None, *, overrides: Mapping[str, Any] | None = None,
    configure_logging: bool = True,
) -> Settings | None:
    """The effective settings (and JSON logging configured), or None after a one-line reason."""
    merged: dict[str, Any] = dict(overrides or {})
    level = getattr(args, "log_level", None)
    if level:
        merged["log_level"] = level
    try:
        settings = load_settings(config_file=getattr(args, "config", None), overrides=merged or None)
    except ConnectorError as exc:
        report(command, exc)
        return None
    if configure_logging:
        logs.configure(settings.log_level, secrets=[settings.opensearch.password])
    aws_region.resolve(settings)  # AWS_REGION alone, or the queue URL / stream ARN, names it for boto3
    return settings
