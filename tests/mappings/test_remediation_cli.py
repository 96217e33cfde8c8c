"""Remediation that works: every rendered CLI command is accepted by the real AWS CLI, and every
boto3 snippet compiles and calls only methods and keywords that exist in botocore's model.

The CLI runs against a moto server (``--endpoint-url``): an API answer such as NotFound or
InvalidID is fine — the ids are samples — but a usage or parameter-validation error means the
command as written would not run for a user, and fails the test.
"""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys
from typing import Any

import botocore.session
import pytest

from connector.events import parse_event
from connector.factory import FindingFactory
from connector.mapping import build_finding, load_mappings
from tests.support.moto import MotoServer
from tests.support.records import EVENTS, make_record

CLI_REJECTIONS = (
    "usage:", "Unknown options", "Invalid choice", "Parameter validation failed", "argument ",
    "Invalid type for parameter", "Error parsing parameter", "Missing required parameter",
    "the following arguments are required", "Invalid value for parameter", "doesn't match a supported format",
)
SEED_DEFECTS = ("--image-id", "--source ", "--destination ", "<instance-id>", "<AMI_ID>")


def rendered_commands() -> list[tuple[str, str]]:
    mappings = load_mappings()
    out = []
    for event in EVENTS:
        finding = build_finding(parse_event(make_record(event)), mappings[event])
        out += [(event, c.command) for c in finding.remediation.cli]
    return out


COMMANDS = rendered_commands()


@pytest.mark.parametrize(("event", "command"), COMMANDS, ids=[f"{e}-{i}" for i, (e, _) in enumerate(COMMANDS)])
def test_the_aws_cli_accepts_every_command(moto_server: MotoServer, event: str, command: str) -> None:
    argv = shlex.split(command)
    assert argv[0] == "aws"
    assert "<" not in command, f"unfilled placeholder in {command}"
    assert not any(defect in command for defect in SEED_DEFECTS), command
    env = dict(moto_server.env())
    env.pop("AWS_ENDPOINT_URL")
    proc = subprocess.run(
        [sys.executable, "-m", "awscli", *argv[1:], "--endpoint-url", moto_server.url, "--output", "json"],
        capture_output=True, text=True, timeout=120, env={**env, "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    rejected = [marker for marker in CLI_REJECTIONS if marker in proc.stderr]
    assert not rejected, f"{command}\n{proc.stderr}"
    # Either it ran, or the API (moto) answered with an error about the sample ids.
    assert proc.returncode == 0 or "An error occurred (" in proc.stderr, f"{command}\n{proc.returncode}\n{proc.stderr}"


def _calls(tree: ast.AST) -> list[tuple[str, str, list[str]]]:
    """(client variable, method, keywords) for every ``x.method(...)`` where x is a boto3 client."""
    clients: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and func.attr == "client" and node.value.args:
                service = node.value.args[0]
                if isinstance(service, ast.Constant) and isinstance(node.targets[0], ast.Name):
                    clients[node.targets[0].id] = str(service.value)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in clients:
                out.append((clients[owner.id], node.func.attr, [k.arg for k in node.keywords if k.arg]))
    return out


@pytest.mark.parametrize("event", EVENTS)
def test_boto3_snippets_compile_and_exist_in_botocore(event: str) -> None:
    factory = FindingFactory.load()
    finding = factory.render(make_record(event))[0].finding
    snippet = finding.remediation.boto3
    tree = ast.parse(snippet)
    compile(snippet, f"<{event} boto3 snippet>", "exec")
    session = botocore.session.get_session()
    calls = _calls(tree)
    assert calls, "the snippet calls the AWS API"
    for service, method, keywords in calls:
        if method in ("get_waiter", "get_paginator", "can_paginate"):
            continue
        model = session.get_service_model(service)
        operations = {botocore.xform_name(name): name for name in model.operation_names}
        assert method in operations, f"{service}.{method} does not exist"
        members = model.operation_model(operations[method]).input_shape.members
        for keyword in keywords:
            assert keyword in members, f"{service}.{method} has no parameter {keyword}"
    waiters: list[Any] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "get_waiter"]
    for call in waiters:
        name = call.args[0].value  # type: ignore[attr-defined]
        client = session.create_client("ec2", region_name="us-east-1")
        assert name in client.waiter_names, f"no waiter {name}"
