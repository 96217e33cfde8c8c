"""The ``connector`` command: subcommands only, no logic.

Each subcommand lives in ``connector/commands/<name>.py`` with ``register(subparsers)``, which
adds its parser and sets ``func(args) -> int``. Adding a command is one module and one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from connector import __version__

COMMANDS = ("map", "replay", "redrive", "run", "setup", "query", "demo", "config", "remediate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector",
        description="CloudTrail EC2 network-deletion events → ASFF/OCSF findings for Security Hub and OpenSearch.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
