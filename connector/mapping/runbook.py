"""The whole remediation runbook as one text: what OCSF ``remediation.desc`` and OpenSearch hold.

Ordered as an on-call engineer uses it: restore what was removed first, then the commands, then
how to stop it happening again. Plain text with light Markdown, readable in a SOC console.
"""

from __future__ import annotations

from connector.model import Remediation


def _numbered(steps: tuple[str, ...]) -> list[str]:
    return [f"{index}. {step}" for index, step in enumerate(steps, 1)]


def render_runbook(remediation: Remediation, *, first: str = "Recover what was removed") -> str:
    """``first`` names the opening section: restore steps, or an attempt's investigation."""
    lines: list[str] = [remediation.summary, "", f"## {first}"]
    lines += _numbered(remediation.recovery)
    lines += ["", "## In the console"]
    lines += _numbered(remediation.console_steps)
    lines += ["", "## With the AWS CLI"]
    for command in remediation.cli:
        lines += [f"# {command.description}", command.command]
    lines += ["", "## With Python (boto3)", remediation.boto3.rstrip()]
    lines += ["", "## Prevent it"]
    lines += _numbered(remediation.hardening)
    lines += ["", "## References"]
    lines += [f"- {url}" for url in remediation.references]
    return "\n".join(lines)
