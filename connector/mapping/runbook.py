"""The whole remediation runbook as one text: what OCSF ``remediation.desc`` and OpenSearch hold.

Ordered as an on-call engineer uses it: restore what was removed first, then the commands, then
how to stop it happening again. Plain text with light Markdown, readable in a SOC console.
"""

from __future__ import annotations

from connector.model import CliCommand, Remediation


def numbered(steps: tuple[str, ...]) -> list[str]:
    return [f"{index}. {step}" for index, step in enumerate(steps, 1)]


def render_runbook(remediation: Remediation, *, first: str = "Recover what was removed") -> str:
    """``first`` names the opening section: restore steps, or an attempt's investigation."""
    r = remediation
    return runbook_text(r.summary, r.recovery, r.console_steps, r.cli, r.boto3, r.hardening, r.references, first=first)


def runbook_text(summary: str, recovery: tuple[str, ...], console_steps: tuple[str, ...], cli: tuple[CliCommand, ...],
                 boto3: str, hardening: tuple[str, ...], references: tuple[str, ...], *, first: str) -> str:
    """``render_runbook`` of the parts, before the ``Remediation`` that holds them is made."""
    lines: list[str] = [summary, "", f"## {first}"]
    lines += numbered(recovery)
    lines += ["", "## In the console"]
    lines += numbered(console_steps)
    lines += ["", "## With the AWS CLI"]
    for command in cli:
        lines += [f"# {command.description}", command.command]
    lines += ["", "## With Python (boto3)", boto3.rstrip()]
    lines += ["", "## Prevent it"]
    lines += numbered(hardening)
    lines += ["", "## References"]
    lines += [f"- {url}" for url in references]
    return "\n".join(lines)
