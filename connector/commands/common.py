"""What every subcommand does first: load the settings, or say in one line why it cannot."""

from __future__ import annotations

import sys
from typing import Any, Mapping

from connector.config import Settings, load_settings
from connector.errors import ConnectorError


def settings_or_report(command: str, *, config_file: str | None = None, overrides: Mapping[str, Any] | None = None) -> Settings | None:
    """The effective settings, or None after printing ``connector <command>: <reason>`` to stderr."""
    try:
        return load_settings(config_file=config_file, overrides=overrides)
    except ConnectorError as exc:
        print(f"connector {command}: {exc}", file=sys.stderr)
        return None
