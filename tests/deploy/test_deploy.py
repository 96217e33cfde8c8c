"""deploy/ checked the way CI would: hadolint, cfn-lint, kubernetes-validate --strict, checkov;
the Dashboards objects structurally against the index templates; the IaC filters and the IAM
policy against the code; and the image's entrypoint command line run against moto."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.mapping import load_mappings
from connector.mapping.filters import cloudwatch_filter_pattern, eventbridge_pattern
from tests.conftest import REPO, require
from tests.support.moto import MotoServer
from tests.support.service import jsonl_ids, make_queues, queue_depth, send_events

DEPLOY = REPO / "deploy"
CACHE = Path(os.environ.get("CONNECTOR_TEST_CACHE", "/var/cache/cloudtrail-connector" if os.geteuid() == 0 else Path.home() / ".cache" / "cloudtrail-connector"))


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    require(Path(path).exists(), f"{name} is not installed (pip install -e '.[test]')")
    return path


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


class CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub ...) as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


CfnLoader.add_multi_constructor("!", _tag)


def cfn(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=CfnLoader)


def test_hadolint() -> None:
    proc = run([tool("hadolint"), "deploy/Dockerfile"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cfn_lint() -> None:
    proc = run([tool("cfn-lint"), *map(str, sorted((DEPLOY / "cloudformation").glob("*.yaml"))), str(DEPLOY / "sam" / "template.yaml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kubernetes_validate_strict() -> None:
    proc = run([tool("kubernetes-validate"), "--strict", *map(str, sorted((DEPLOY / "kubernetes").glob("*.yaml")))])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def checkov() -> str:
    """checkov pins old boto3/botocore; it gets a venv of its own, cached outside the repository."""
    home = CACHE / "checkov-venv"
    exe = home / "bin" / "checkov"
    if not exe.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        proc = subprocess.run([str(home / "bin" / "pip"), "install", "-q", "checkov==3.3.30"], capture_output=True, text=True, timeout=1200)
        require(proc.returncode == 0 and exe.exists(), f"could not install checkov: {proc.stderr[-1500:]}")
    return str(exe)


def test_checkov(checkov: str) -> None:
    proc = run([checkov, "-d", "deploy", "--compact", "--quiet", "--skip-download", "-o", "json"], timeout=900)
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [(r.get("check_type"), c["check_id"], c.get("file_path")) for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    assert not failed, failed
    frameworks = {r.get("check_type") for r in reports}
    assert {"dockerfile", "kubernetes", "cloudformation"} <= frameworks
    assert proc.returncode == 0, proc.stderr[-2000:]


def template_fields() -> set[str]:
    fields: set[str] = set()

    def walk(props: dict[str, Any], prefix: str) -> None:
        for name, spec in props.items():
            path = f"{prefix}{name}"
            if "properties" in spec:
                walk(spec["properties"], path + ".")
            else:
                fields.add(path)

    for path in (DEPLOY / "opensearch" / "templates").glob("*.json"):
        walk(json.loads(path.read_text())["template"]["mappings"]["properties"], "")
    return fields


def dashboard_objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DEPLOY / "opensearch" / "dashboards" / "findings.ndjson").read_text().splitlines() if line.strip()]


def used_fields(obj: dict[str, Any]) -> Iterator[str]:
    attrs = obj["attributes"]
    if obj["type"] == "index-pattern":
        yield attrs["timeFieldName"]
    if "visState" in attrs:
        for agg in json.loads(attrs["visState"])["aggs"]:
            if "field" in agg.get("params", {}):
                yield agg["params"]["field"]
    yield from attrs.get("columns", [])
    for field, _ in attrs.get("sort", []):
        yield field


def test_dashboards_are_consistent_with_the_index_templates() -> None:
    objects = dashboard_objects()
    ids = [(o["type"], o["id"]) for o in objects]
    assert len(ids) == len(set(ids))
    assert {t for t, _ in ids} == {"index-pattern", "visualization", "search", "dashboard"}
    known = set(ids)
    fields = template_fields()
    patterns = [o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"]
    templates = [p for path in (DEPLOY / "opensearch" / "templates").glob("*.json") for p in json.loads(path.read_text())["index_patterns"]]
    for pattern in patterns:
        assert any(t.startswith(pattern.rstrip("*")) for t in templates), pattern
    for obj in objects:
        for ref in obj.get("references", []):
            assert (ref["type"], ref["id"]) in known, (obj["id"], ref)
        for field in used_fields(obj):
            assert field in fields, f"{obj['id']} uses {field}, which no index template maps"
        if obj["type"] == "dashboard":
            panels = json.loads(obj["attributes"]["panelsJSON"])
            names = {r["name"] for r in obj["references"]}
            assert panels and all(p["panelRefName"] in names for p in panels)


def deployed_filters(deploy: Path) -> tuple[dict[str, Any], str]:
    """The EventBridge pattern (SQS path) and the subscription filter pattern (Kinesis path) in deploy/."""
    rule = cfn(deploy / "cloudformation" / "sqs.yaml")["Resources"]["NetworkDeletionRule"]["Properties"]["EventPattern"]
    pattern = cfn(deploy / "cloudformation" / "kinesis.yaml")["Resources"]["NetworkDeletionSubscription"]["Properties"]["FilterPattern"]
    return rule, " ".join(pattern.split())


def check_filters(mappings_root: Path, deploy: Path) -> None:
    """deploy/'s filters are exactly what the mapping files call for (a function of a mappings dir)."""
    mappings = load_mappings(mappings_root)
    rule, pattern = deployed_filters(deploy)
    assert rule == eventbridge_pattern(mappings)
    assert pattern == cloudwatch_filter_pattern(mappings)
    assert set(re.findall(r'\$\.eventName = "([A-Za-z]+)"', pattern)) == set(mappings) == set(rule["detail"]["eventName"])


def test_the_event_filters_name_exactly_the_mapped_events() -> None:
    check_filters(REPO / "mappings", DEPLOY)


def test_the_iam_policy_grants_every_action_the_code_declares() -> None:
    from connector.deadletters import all_iam_actions
    from connector.sinks import KNOWN as SINKS
    from connector.sinks import sink_class
    from connector.sources import KNOWN as SOURCES
    from connector.sources import source_class
    from connector.sources.kinesis.checkpoints import CheckpointStore

    declared = set(CheckpointStore.iam_actions)
    declared |= {a for name in SINKS for a in sink_class(name).iam_actions}
    declared |= {a for name in SOURCES for a in source_class(name).iam_actions}
    declared |= all_iam_actions()
    from connector.enrich.engine import IAM_ACTIONS as ENRICHMENT_READS

    declared |= set(ENRICHMENT_READS)
    policy = cfn(DEPLOY / "cloudformation" / "iam-policy.yaml")["Resources"]["ConnectorPolicy"]["Properties"]["PolicyDocument"]
    granted: set[str] = set()
    for statement in policy["Statement"]:
        if "If" in statement:  # !If [Condition, statement, !Ref AWS::NoValue]
            statement = statement["If"][1]
        actions = statement["Action"]
        granted |= set([actions] if isinstance(actions, str) else actions)
    assert declared <= granted, declared - granted
    assert not any(a.endswith("*") for a in granted), "least privilege: no wildcards in actions"


def dockerfile_command() -> tuple[list[str], dict[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    final_stage = text.split("\nFROM ")[-1]
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", final_stage, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", final_stage, re.M).group(1))
    env: dict[str, str] = {}
    for match in re.finditer(r"^ENV (.+)$", final_stage, re.M):
        for part in shlex.split(match.group(1)):
            key, _, value = part.partition("=")
            env[key] = value
    return entrypoint + cmd, env


def test_the_image_entrypoint_runs_against_moto(aws_env: MotoServer, tmp_path: Path) -> None:
    argv, image_env = dockerfile_command()
    assert argv == ["connector", "run"]
    assert image_env["CONNECTOR_HTTP_PORT"] == "8080" and image_env["CONNECTOR_MAPPINGS_DIR"] == "/app/mappings"
    queue, dlq = make_queues("image-entrypoint")
    ids = send_events(queue, "image", 7)
    # The image's environment, with its /app paths mapped onto this checkout (the image copies
    # mappings/, schemas/ and deploy/opensearch/ there) and the findings volume onto tmp_path.
    env = {k: v.replace("/app/", f"{REPO}/") for k, v in image_env.items() if k != "PATH"}
    env.update(aws_env.env())
    env.update(PATH=os.environ["PATH"], CONNECTOR_JSONL_DIRECTORY=str(tmp_path), CONNECTOR_HTTP_PORT="0",
               CONNECTOR_SOURCE="sqs", CONNECTOR_SQS_QUEUE_URL=queue, CONNECTOR_SQS_WAIT_SECONDS="1",
               CONNECTOR_DEAD_LETTER=dlq, CONNECTOR_SINKS="jsonl")
    executable = shutil.which(argv[0]) or str(Path(sys.executable).parent / argv[0])
    proc = subprocess.run([executable, *argv[1:], "--once"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(jsonl_ids(tmp_path)) == sorted(ids)
    assert queue_depth(queue) == 0
