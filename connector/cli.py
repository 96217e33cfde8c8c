"""The ``connector`` command: subcommands only, no logic.

Each subcommand lives in ``connector/commands/<name>.py`` with ``register(subparsers)``, which
adds its parser and sets ``func(args) -> int``. Adding a command is one module and one line here.

An error that escapes a command ends here as one line and an exit code (2 for settings the
user must fix — no region, no credentials, a bad setting —, 1 otherwise): a missing bucket, an
unreachable endpoint, an unreadable file. Only an unforeseen error carries a traceback. Once the
command configured logging the line is JSON in the same stream as the rest; before, plain text.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from connector import __version__
from connector.runtime import logs

COMMANDS = ("map", "replay", "redrive", "run", "setup", "query", "demo", "config", "remediate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector",
        description="CloudTrail EC2 network-deletion events → ASFF/OCSF findings for Security Hub and OpenSearch.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Also accepted before the command (``connector --config FILE findings``); see _settings_options.
    parser.add_argument("--config", dest="global_config", default=None, help="YAML settings file (any command that reads settings)")
    parser.add_argument("--log-level", dest="global_log_level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"connector.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"connector.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    for name in ("config", "log_level"):
        given = getattr(args, f"global_{name}")
        if given is None:
            continue
        if not hasattr(args, name):
            print(f"connector {args.command}: --{name.replace('_', '-')} is not read by this command", file=sys.stderr)
            return 2
        if getattr(args, name) is None:  # the option after the command wins
            setattr(args, name, given)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one clear line, a traceback only if unforeseen
        return fail(args.command, exc)
    finally:
        logs.flush()  # the count of warnings still held back by the repeat filter


def fail(command: str, exc: BaseException) -> int:
    """Report an error that escaped a command; the exit code (2: fix the settings, 1: otherwise)."""
    expected = describe(exc)
    log = logging.getLogger("connector.cli")
    if expected is not None:
        message, code = expected
        if logs.configured():
            log.error("connector %s: %s", command, message, extra={"error": logs.one_line(exc)})
        else:
            print(f"connector {command}: {message}", file=sys.stderr)
        return code
    if logs.configured():
        log.exception("connector %s failed unexpectedly: %s", command, logs.one_line(exc))
    else:
        print(f"connector {command} failed unexpectedly: {logs.one_line(exc)}\n{logs.format_exception(exc)}",
              file=sys.stderr, end="")
    return 1


def describe(exc: BaseException) -> tuple[str, int] | None:
    """The message and exit code of a failure we foresee (settings, AWS, files), else None."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    from connector.errors import ConfigError, ConnectorError

    if isinstance(exc, NoRegionError):
        return ("no AWS region: set AWS_REGION or AWS_DEFAULT_REGION, or configure a queue URL / stream ARN "
                "that names one"), 2
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (environment, profile, web identity or instance role)", 2
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "request")
        return f"AWS {operation} failed: {error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": "), 1
    if isinstance(exc, BotoCoreError):
        return f"AWS: {exc}", 1
    if isinstance(exc, ConfigError):
        return str(exc), 2
    if isinstance(exc, ConnectorError):
        return str(exc), 1
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot use{where}: {exc.strerror or exc}", 1
    return None


if __name__ == "__main__":
    sys.exit(main())
