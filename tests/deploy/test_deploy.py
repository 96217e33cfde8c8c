"""deploy/ checked the way CI would: hadolint, cfn-lint, kubernetes-validate --strict, checkov;
the Dashboards objects structurally against the index templates; the IaC filters and the IAM
policy against the code; and the image's entrypoint command line run against moto."""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
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
    from connector.correlate.store import DynamoWindowStore
    from connector.deadletters import all_iam_actions
    from connector.resolve.store import DynamoResolutionStore
    from connector.sinks import KNOWN as SINKS
    from connector.sinks import sink_class
    from connector.sources import KNOWN as SOURCES
    from connector.sources import source_class
    from connector.sources.kinesis.checkpoints import CheckpointStore
    from connector.triage.firstseen import IAM_ACTIONS as FIRST_SEEN

    declared = set(CheckpointStore.iam_actions)
    declared |= {*DynamoResolutionStore.iam_actions, *DynamoWindowStore.iam_actions, *FIRST_SEEN}
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


# ---- the IAM policy equals the actions the code calls (collected against moto) ---------------

#: botocore operations whose IAM action has another name (batch forms, ListObjectsV2).
OPERATION_ACTIONS = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
}


class CallRecorder:
    """Every AWS API operation made through botocore while recording, as an IAM action name."""

    def __init__(self) -> None:
        self.actions: set[str] = set()
        #: DynamoDB calls as (action, table), and which policy parameter names each table.
        self.table_calls: set[tuple[str, str]] = set()
        self.table_parameters: dict[str, str] = {}
        self.recording = False

    def __call__(self, original: Any) -> Any:
        recorder = self

        def make_api_call(client: Any, operation_name: str, params: Any) -> Any:
            if recorder.recording:
                name = f"{client.meta.service_model.signing_name}:{operation_name}"
                recorder.actions.add(OPERATION_ACTIONS.get(name, name))
                if name.startswith("dynamodb:"):
                    recorder.table_calls.add((name, str(params.get("TableName"))))
            return original(client, operation_name, params)

        return make_api_call


def policy_actions(path: Path, name: str) -> set[str]:
    """Every action a policy's statements grant (each conditional statement counted)."""
    granted: set[str] = set()
    for statement in cfn(path)["Resources"][name]["Properties"]["PolicyDocument"]["Statement"]:
        if "If" in statement:  # !If [Condition, statement, !Ref AWS::NoValue]
            statement = statement["If"][1]
        actions = statement["Action"]
        granted |= set([actions] if isinstance(actions, str) else actions)
    return granted


def exercise_everything(tmp_path: Path, recorder: CallRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each AWS-facing path of the product once against moto: the SQS service with Security
    Hub (own and member accounts), S3 notices and SQS dead letters; Kinesis with checkpoints;
    S3 dead letters; replay from S3; redrive from SQS and S3."""
    import boto3

    from connector import cli
    from connector.build import build_pipeline, build_runner, build_stages
    from connector.config import load_settings
    from connector.deadletters import open_dead_letters
    from connector.model import DeadLetter
    from connector.sources.kinesis.checkpoints import CheckpointStore
    from connector.sources.kinesis.source import KinesisSource
    from connector.sources.sqs import SqsSource
    from tests.support.records import an_event, make_record

    s3, sqs, kinesis = boto3.client("s3"), boto3.client("sqs"), boto3.client("kinesis")
    tag = uuid.uuid4().hex[:8]
    bucket, dl_bucket = f"trail-{tag}", f"letters-{tag}"
    for name in (bucket, dl_bucket):
        s3.create_bucket(Bucket=name)
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/20/123456789012_CloudTrail_us-east-1_20261120T1000Z_x.json.gz"
    records = [make_record(an_event(i), event_id=f"iam-s3-{i}", recipientAccountId="123456789012") for i in range(2)]
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(json.dumps({"Records": records}).encode()))
    queue, dlq = make_queues(f"iam-{tag}")
    send_events(queue, "iam-own", 3)
    send_events(queue, "iam-member", 2, account="111111111111")
    sqs.send_message(QueueUrl=queue, MessageBody="poison: not json")
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {
        "bucket": {"name": bucket}, "object": {"key": key}}}]}))
    stream = f"iam-{tag}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    CheckpointStore(f"cp-{tag}", stream).create_table_if_missing()
    # The shared state's tables (deploy/cloudformation/state.yaml), each store in use.
    from connector.correlate.store import DynamoWindowStore
    from connector.resolve.store import DynamoResolutionStore
    from connector.triage.firstseen import create_table as create_first_seen_table

    DynamoResolutionStore(f"res-{tag}").create_table_if_missing()
    DynamoWindowStore(f"corr-{tag}").create_table_if_missing()
    create_first_seen_table(boto3.client("dynamodb"), f"seen-{tag}")
    recorder.table_parameters.update({f"cp-{tag}": "CheckpointTableArn", f"res-{tag}": "ResolutionTableArn",
                                      f"corr-{tag}": "CorrelationTableArn", f"seen-{tag}": "FirstSeenTableArn"})
    rules = tmp_path / "first-seen-rules.yaml"
    rules.write_text("version: 1\ncontext:\n  - id: new-principal\n    reason: not seen for 30 days\n"
                     "    match:\n      - {first_seen: {field: userIdentity.arn, days: 30}}\n    raise: 1\n")
    for i in range(3):
        kinesis.put_record(StreamName=stream, PartitionKey=str(i),
                           Data=json.dumps(make_record(an_event(i), event_id=f"iam-k-{i}", recipientAccountId="123456789012")).encode())
    env = {
        "CONNECTOR_SINKS": "securityhub", "CONNECTOR_SQS_QUEUE_URL": queue, "CONNECTOR_SQS_WAIT_SECONDS": "0",
        "CONNECTOR_GATHER_SECONDS": "0", "CONNECTOR_DEAD_LETTER": dlq, "CONNECTOR_S3_TRAIL_BUCKETS": bucket,
        "CONNECTOR_SECURITYHUB_ASSUME_ROLE_ARN_TEMPLATE": "arn:{partition}:iam::{account}:role/SecurityHubFindingsImporter",
        "CONNECTOR_KINESIS_STREAM_NAME": stream, "CONNECTOR_KINESIS_CHECKPOINT_TABLE": f"cp-{tag}",
        "CONNECTOR_KINESIS_IDLE_SLEEP_SECONDS": "0.1",
        # Enrichment reads the deleted resource (EC2 describes, AWS Config history); on moto the
        # lookups find nothing, but the calls are made, and the policy must grant exactly them.
        "CONNECTOR_ENRICHMENT_ENABLED": "true",
        "CONNECTOR_RESOLUTION_ENABLED": "true", "CONNECTOR_RESOLUTION_STORE": "dynamodb", "CONNECTOR_RESOLUTION_TABLE": f"res-{tag}",
        "CONNECTOR_CORRELATION_ENABLED": "true", "CONNECTOR_CORRELATION_STORE": "dynamodb", "CONNECTOR_CORRELATION_TABLE": f"corr-{tag}",
        "CONNECTOR_TRIAGE_FIRST_SEEN_TABLE": f"seen-{tag}", "CONNECTOR_TRIAGE_RULES_FILE": str(rules),
    }
    try:
        boto3.client("securityhub").enable_security_hub()
    except boto3.client("securityhub").exceptions.ResourceConflictException:
        pass
    recorder.recording = True
    for kind in ("sqs", "kinesis"):
        settings = load_settings(environ={**env, "CONNECTOR_SOURCE": kind})
        source = SqsSource.from_settings(settings) if kind == "sqs" else KinesisSource.from_settings(settings)
        pipeline = build_pipeline(settings)
        pipeline.check()
        source.check()
        build_runner(settings, source, pipeline, once=True).run()
        if kind == "sqs":  # a release and a heartbeat, which a quick run does not need
            send_events(queue, "iam-again", 1)
            messages = source.receive()
            source.keep_alive(messages)
            source.release(messages)
        pipeline.close()
        source.close()
    letter = DeadLetter(stage="decode", reason="test", body=b"{}", record_id="r", source="test", error_type="DecodeError")
    open_dead_letters(f"s3://{dl_bucket}/dead").put([letter])
    state = tmp_path / "replay.sqlite"
    for name, value in {"CONNECTOR_SINKS": "jsonl", "CONNECTOR_JSONL_DIRECTORY": str(tmp_path / "out"), "CONNECTOR_HTTP_PORT": "0",
                        "CONNECTOR_DEAD_LETTER": f"file://{tmp_path}/letters"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["replay", f"s3://{bucket}/AWSLogs/", "--state", str(state)]) == 0
    for letters in (dlq, f"s3://{dl_bucket}/dead"):
        cli.main(["redrive", letters])
    # Each event's enrichment against real resources (the run above found none to describe).
    from tests.support import network

    recorder.recording = False
    ec2 = boto3.client("ec2", region_name=network.REGION)
    scenarios = [make(ec2) for make in (network.nat_gateway, network.network_acl_entry, network.peering,
                                        network.network_interface, network.internet_gateway)]
    # The VPC's main route table routes through the gateway too: the blast radius then lists the
    # subnets that use the main table implicitly (DescribeSubnets).
    nat = scenarios[0].ids
    main = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [nat["vpc"]]},
                                              {"Name": "association.main", "Values": ["true"]}])["RouteTables"][0]
    ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat["nat"])
    recorder.recording = True
    stages = build_stages(load_settings(environ={**env, "CONNECTOR_SOURCE": "sqs"}))
    for scenario in scenarios:
        stages.factory.render(scenario.record)
    # The internet gateway attached again: its restore resolves the finding (the shared store's claim).
    from tests.integration.test_resolution import restore_of

    resolved = stages.factory.render(restore_of(scenarios[-1], ec2))
    assert resolved and all(r.document.get("RecordState", "ARCHIVED") == "ARCHIVED" for r in resolved)
    recorder.recording = False


def test_the_iam_policy_equals_the_actions_the_code_calls_against_moto(aws_env: MotoServer, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.client

    from connector.sinks.opensearch.sink import OpenSearchSink

    recorder = CallRecorder()
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recorder(botocore.client.BaseClient._make_api_call))
    exercise_everything(tmp_path, recorder, monkeypatch)
    called = recorder.actions
    # SigV4 to OpenSearch is HTTP, not botocore: those actions come from the sink's declaration.
    signed_http = set(OpenSearchSink.iam_actions)
    granted = policy_actions(DEPLOY / "cloudformation" / "iam-policy.yaml", "ConnectorPolicy")
    assert granted - signed_http == called, {"granted, never called": granted - signed_http - called,
                                             "called, not granted": called - granted}
    # DynamoDB: exactly the actions each table's store calls, on that table's ARN parameter.
    table_grants = {(a, s["Resource"]["Ref"]) for s in statements(DEPLOY / "cloudformation" / "iam-policy.yaml", "ConnectorPolicy")
                    for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]) if a.startswith("dynamodb:")}
    table_calls = {(a, recorder.table_parameters.get(t, t)) for a, t in recorder.table_calls}
    assert table_grants == table_calls, {"granted, never called": table_grants - table_calls,
                                         "called, not granted": table_calls - table_grants}
    assert {p for _, p in table_calls} == {"CheckpointTableArn", "ResolutionTableArn", "CorrelationTableArn", "FirstSeenTableArn"}


# ---- deploy/ that builds (issue 14.4) and is scoped (issue 10.4) ----------------------------------

def statements(path: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for statement in cfn(path)["Resources"][name]["Properties"]["PolicyDocument"]["Statement"]:
        out.append(statement["If"][1] if "If" in statement else statement)
    return out


ENRICHMENT_READS = frozenset({
    "ec2:DescribeNatGateways", "ec2:DescribeNetworkAcls", "ec2:DescribeVpcPeeringConnections",
    "ec2:DescribeRouteTables", "ec2:DescribeSubnets", "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeAddresses", "ec2:DescribeInternetGateways", "config:GetResourceConfigHistory",
})


def test_iam_resources_and_conditions_are_narrowed() -> None:
    policy = statements(DEPLOY / "cloudformation" / "iam-policy.yaml", "ConnectorPolicy")
    by_action = {a: s for s in policy for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assume = by_action["sts:AssumeRole"]
    assert assume["Condition"]["StringEquals"]["aws:ResourceOrgID"] == {"Ref": "OrganizationId"}
    assert "!If" not in json.dumps(assume) and "UseOrganisationImport" in (DEPLOY / "cloudformation" / "iam-policy.yaml").read_text()
    assert ":product/${AWS::AccountId}/default" in json.dumps(by_action["securityhub:BatchImportFindings"]["Resource"])
    assert by_action["securityhub:DescribeHub"]["Resource"] == {"Sub": "arn:${AWS::Partition}:securityhub:*:${AWS::AccountId}:hub/default"}
    # Only actions without resource-level permissions may have Resource "*": the caller identity
    # and the enrichment's reads (EC2 Describe* and AWS Config history support none).
    unscoped = {"sts:GetCallerIdentity", *ENRICHMENT_READS}
    assert {a for a, s in by_action.items() if s["Resource"] == "*"} <= unscoped
    assert "sts:GetCallerIdentity" in {a for a, s in by_action.items() if s["Resource"] == "*"}
    sam = cfn(DEPLOY / "sam" / "template.yaml")["Resources"]["ConnectorFunction"]["Properties"]["Policies"][0]["Statement"]
    sam = [s["If"][1] if "If" in s else s for s in sam]
    assert {a for s in sam if s["Resource"] == "*" for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} <= unscoped


def test_queues_dead_letter_queue_and_stream_survive_stack_deletion() -> None:
    for path, names in [("sqs.yaml", ["Queue", "DeadLetterQueue"]), ("kinesis.yaml", ["Stream", "CheckpointTable"])]:
        resources = cfn(DEPLOY / "cloudformation" / path)["Resources"]
        for name in names:
            assert resources[name].get("DeletionPolicy") == "Retain", (path, name)
            assert resources[name].get("UpdateReplacePolicy") == "Retain", (path, name)


def test_the_state_tables_are_the_ones_the_code_creates(aws_env: MotoServer) -> None:
    """deploy/cloudformation/state.yaml (and kinesis.yaml's checkpoints): each table has the key
    schema and TTL attribute of the store that uses it (created by the code on moto, described),
    on demand, kept when the stack goes; the container and the Lambda are given their names."""
    import boto3

    from connector.correlate.store import DynamoWindowStore
    from connector.resolve.store import DynamoResolutionStore
    from connector.sources.kinesis.checkpoints import CheckpointStore
    from connector.triage.firstseen import create_table as create_first_seen_table

    client = boto3.client("dynamodb")
    tag = uuid.uuid4().hex[:8]
    DynamoResolutionStore(f"res-{tag}").create_table_if_missing()
    DynamoWindowStore(f"corr-{tag}").create_table_if_missing()
    create_first_seen_table(client, f"seen-{tag}")
    CheckpointStore(f"cp-{tag}", "s").create_table_if_missing()
    templates = {"state.yaml": {"ResolutionTable": f"res-{tag}", "FirstSeenTable": f"seen-{tag}", "CorrelationTable": f"corr-{tag}"},
                 "kinesis.yaml": {"CheckpointTable": f"cp-{tag}"}}
    for path, tables in templates.items():
        resources = cfn(DEPLOY / "cloudformation" / path)["Resources"]
        for name, table in tables.items():
            declared = resources[name]
            props = declared["Properties"]
            described = client.describe_table(TableName=table)["Table"]
            assert props["KeySchema"] == described["KeySchema"], (path, name)
            assert sorted(props["AttributeDefinitions"], key=str) == sorted(described["AttributeDefinitions"], key=str)
            ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
            code_ttl = ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") else None
            template_ttl = props.get("TimeToLiveSpecification", {})
            assert (template_ttl.get("AttributeName") if template_ttl.get("Enabled") else None) == code_ttl, (path, name)
            assert props["BillingMode"] == "PAY_PER_REQUEST"
            assert declared.get("DeletionPolicy") == "Retain" and declared.get("UpdateReplacePolicy") == "Retain", (path, name)
    names = {"CONNECTOR_RESOLUTION_TABLE", "CONNECTOR_TRIAGE_FIRST_SEEN_TABLE", "CONNECTOR_CORRELATION_TABLE"}
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "connector.yaml").read_text()) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert names <= set(config) and config["CONNECTOR_RESOLUTION_STORE"] == config["CONNECTOR_CORRELATION_STORE"] == "dynamodb"
    assert all(config[n].startswith(cfn(DEPLOY / "cloudformation" / "state.yaml")["Parameters"]["TablePrefix"]["Default"]) for n in names)
    sam = cfn(DEPLOY / "sam" / "template.yaml")["Resources"]["ConnectorFunction"]["Properties"]
    assert names <= set(sam["Environment"]["Variables"])
    # The Lambda's DynamoDB grants are the policy's, table by table.
    policy = {s["Resource"]["Ref"].removesuffix("Arn"): sorted(s["Action"]) for s in statements(
        DEPLOY / "cloudformation" / "iam-policy.yaml", "ConnectorPolicy") if str(s["Action"]).startswith("['dynamodb:")}
    lambda_grants = {s["Resource"]["Sub"].rsplit("${", 1)[1].rstrip("}").removesuffix("Name"): sorted(s["Action"])
                     for s in (x["If"][1] if "If" in x else x for x in sam["Policies"][0]["Statement"])
                     if "dynamodb:" in str(s["Action"])}
    assert lambda_grants == {k: v for k, v in policy.items() if k != "CheckpointTable"}


def test_kubernetes_has_no_api_token_and_a_scoped_network_policy() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "connector.yaml").read_text()) if d}
    assert docs["ServiceAccount"]["automountServiceAccountToken"] is False
    assert docs["Deployment"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    policy = docs["NetworkPolicy"]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [8080]
    [source] = ingress["from"]  # namespace AND pod in one peer: Prometheus pods in the monitoring namespace only
    assert source["namespaceSelector"]["matchLabels"] and source["podSelector"]["matchLabels"]
    for rule in policy["egress"]:
        assert rule.get("to"), f"an egress rule without peers admits every destination: {rule}"
        ports = {p["port"] for p in rule["ports"]}
        assert ports in ({53}, {443}), rule
        if ports == {53}:
            [dns] = rule["to"]
            assert dns["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"} and dns["namespaceSelector"]
        else:
            assert all("169.254.0.0/16" in peer["ipBlock"].get("except", []) for peer in rule["to"]), "IMDS must be out of reach"


def test_sam_either_source_arn_is_optional() -> None:
    template = cfn(DEPLOY / "sam" / "template.yaml")
    params = template["Parameters"]
    assert params["QueueArn"].get("Default") == "" and params["StreamArn"].get("Default") == ""
    resources = template["Resources"]
    mappings = {r["Properties"]["EventSourceArn"]["Ref"]: r.get("Condition") for r in resources.values()
                if r["Type"] == "AWS::Lambda::EventSourceMapping"}
    assert mappings == {"QueueArn": "UseQueue", "StreamArn": "UseStream"}
    assert "Events" not in resources["ConnectorFunction"]["Properties"], "function Events cannot be conditional"
    assert "NeedsASource" in template["Rules"]


def lock_pins(path: Path) -> dict[str, str]:
    text = path.read_text().replace("\\\n", " ")
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert match, f"{path.name}: not an exact pin: {line[:80]}"
        assert "--hash=sha256:" in line, f"{path.name}: {match[1]} has no hash"
        pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def test_the_lock_files_are_hashed_complete_and_used_by_the_builds() -> None:
    from packaging.requirements import Requirement

    image, sam = lock_pins(DEPLOY / "requirements.lock"), lock_pins(DEPLOY / "sam" / "requirements.txt")
    excluded = {"opensearch-protobufs", "grpcio", "protobuf"}
    assert not excluded & set(image), "opensearch-py's gRPC transport is not in the image"
    assert {k: v for k, v in sam.items() if k not in excluded} == image, "the image and Lambda pins agree"
    import tomllib

    for spec in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in image, f"{name} (pyproject.toml) is not in deploy/requirements.lock: run deploy/lock.sh"
        assert requirement.specifier.contains(image[name], prereleases=True), f"{name}=={image[name]} does not satisfy {spec}"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements.lock" in dockerfile and "COPY deploy/requirements.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile, "nothing unpinned is fetched to build the project"
    assert 'manifest = "requirements.txt"' in (DEPLOY / "sam" / "samconfig.toml").read_text()


def test_the_image_healthcheck_follows_the_configured_port(aws_env: MotoServer, tmp_path: Path) -> None:
    from tests.support.moto import free_port
    from tests.support.service import http_get, service_env, start_service, wait_for

    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    healthcheck = re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", text, re.M)
    assert healthcheck and "8080" not in healthcheck.group(1)
    assert json.loads(healthcheck.group(1)) == ["python3", "/app/healthcheck.py"]
    assert "COPY --chown=root:root deploy/healthcheck.py /app/healthcheck.py" in text
    queue, dlq = make_queues(f"health-{uuid.uuid4().hex[:8]}")
    port = free_port()
    env = service_env(aws_env, queue, dlq, tmp_path, CONNECTOR_HTTP_PORT=str(port), PYTHONPATH=str(REPO))
    proc = start_service(env)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=60)
        check = [sys.executable, str(DEPLOY / "healthcheck.py")]
        assert subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0
        elsewhere = subprocess.run(check, env={**env, "CONNECTOR_HTTP_PORT": str(free_port())}, capture_output=True, text=True, timeout=30)
        assert elsewhere.returncode == 1 and "unhealthy" in elsewhere.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture(scope="session")
def sam() -> str:
    """The SAM CLI in a venv of its own (it pins its own boto3), cached like checkov's."""
    home = CACHE / "sam-venv"
    exe = home / "bin" / "sam"
    if not exe.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        proc = subprocess.run([str(home / "bin" / "pip"), "install", "-q", "aws-sam-cli==1.170.0"], capture_output=True, text=True, timeout=1800)
        require(proc.returncode == 0 and exe.exists(), f"could not install the SAM CLI: {proc.stderr[-1500:]}")
    return str(exe)


def sam_env() -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def test_sam_validate_with_lint(sam: str) -> None:
    proc = subprocess.run([sam, "validate", "--lint"], cwd=DEPLOY / "sam", env=sam_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


#: sam build resolves the Lambda's arm64 wheels one package at a time (minutes, network-bound):
#: run it with CONNECTOR_TEST_SAM_BUILD=1 (it needs a python3.13 on PATH or in pyenv, as the runtime).
SAM_BUILD = os.environ.get("CONNECTOR_TEST_SAM_BUILD", "").lower() in ("1", "true", "yes")


@pytest.mark.skipif(not SAM_BUILD, reason="slow (minutes): set CONNECTOR_TEST_SAM_BUILD=1")
def test_sam_build_installs_the_locked_dependencies(sam: str, tmp_path: Path) -> None:
    python313 = shutil.which("python3.13") or next((str(p) for p in Path("/root/.pyenv/versions").glob("3.13*/bin/python3.13")), None)
    require(python313 is not None, "sam build for the python3.13 runtime needs a python3.13")
    env = {**sam_env(), "PATH": f"{Path(str(python313)).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sam, "build", "--build-dir", str(tmp_path / "build")], cwd=DEPLOY / "sam", env=env,
                          capture_output=True, text=True, timeout=1800)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Build Succeeded" in output, output[-3000:]
    assert "requirements.txt file not found" not in output
    built = tmp_path / "build" / "ConnectorFunction"
    assert (built / "connector" / "aws_lambda.py").exists() and (built / "mappings").is_dir()
    assert list((built / "orjson").glob("*aarch64*.so")), "arm64 wheels for the arm64 function"
    installed = {p.name.split("-")[0].lower().replace("_", "-") for p in built.glob("*.dist-info")}
    assert {"boto3", "opensearch-py", "orjson", "msgspec", "isal"} <= installed


# ---- the image, built with podman from Debian packages (skipped where podman is absent) ------

IMAGE = "localhost/cloudtrail-findings-connector:test"
BASE_IMAGE = "localhost/connector-base:bookworm"


def podman_base() -> None:
    """A Debian bookworm base with python3 made by mmdebstrap (no image registry is reachable),
    cached as a tarball and imported once."""
    if run(["podman", "image", "exists", BASE_IMAGE]).returncode == 0:
        return
    tarball = CACHE / "image" / "bookworm-python.tar"
    if not tarball.exists():
        require(shutil.which("mmdebstrap") is not None, "mmdebstrap is not installed (apt-get install mmdebstrap)")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        proc = run(["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm",
                    str(tarball) + ".part", "http://deb.debian.org/debian"], timeout=1800)
        assert proc.returncode == 0, proc.stderr[-2000:]
        Path(str(tarball) + ".part").rename(tarball)
    proc = run(["podman", "import", str(tarball), BASE_IMAGE], timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(shutil.which("podman") is None or shutil.which("buildah") is None, reason="podman/buildah not installed (apt-get install podman)")
def test_the_image_builds_from_the_lock_and_runs_against_moto(aws_env: MotoServer, tmp_path: Path) -> None:
    podman_base()
    build = ["podman", "build", "--isolation", "chroot", "--format", "docker", "--network", "host",
             "--build-arg", f"BASE={BASE_IMAGE}", "-f", "deploy/Dockerfile", "-t", IMAGE, "."]
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():  # a TLS-inspecting proxy's CA, as a build secret (never in a layer)
        build[2:2] = ["--secret", f"id=pip_cert,src={ca}"]
    proc = run(build, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    inspect = json.loads(run(["podman", "image", "inspect", IMAGE]).stdout)[0]
    config = inspect["Config"]
    healthcheck = inspect.get("Healthcheck") or config.get("Healthcheck") or {}
    assert healthcheck.get("Test") == ["CMD", "python3", "/app/healthcheck.py"], "--format docker keeps HEALTHCHECK"
    assert config["User"] == "10001:10001" and config["Entrypoint"] == ["connector"]
    # Run it (buildah's chroot isolation: this sandbox refuses the OCI runtime's rlimits) against moto.
    container = run(["buildah", "from", IMAGE]).stdout.strip()
    try:
        def inside(*argv: str, env: dict[str, str] | None = None, volume: str | None = None) -> subprocess.CompletedProcess[str]:
            cmd = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
            cmd += [f"--env={k}={v}" for k, v in (env or {}).items()]
            cmd += ["--volume", volume] if volume else []
            return run([*cmd, container, "--", *argv], timeout=300)

        found = inside("python3", "-c", "import importlib.util as u; print(sorted(m for m in ('grpc', 'opensearch_protobufs', 'setuptools', 'wheel') if u.find_spec(m)))")
        assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr
        queue, dlq = make_queues(f"image-{uuid.uuid4().hex[:8]}")
        ids = send_events(queue, "in-image", 5)
        out = tmp_path / "findings"
        out.mkdir()
        out.chmod(0o777)
        env = {**aws_env.env(), "CONNECTOR_SOURCE": "sqs", "CONNECTOR_SQS_QUEUE_URL": queue, "CONNECTOR_SQS_WAIT_SECONDS": "1",
               "CONNECTOR_DEAD_LETTER": dlq, "CONNECTOR_SINKS": "jsonl", "CONNECTOR_JSONL_DIRECTORY": "/out",
               "CONNECTOR_HTTP_PORT": "0", "CONNECTOR_MAPPINGS_DIR": "/app/mappings", "CONNECTOR_SCHEMAS_DIR": "/app/schemas",
               "CONNECTOR_DEPLOY_DIR": "/app/deploy"}
        proc = inside("connector", "run", "--once", env=env, volume=f"{out}:/out")
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        assert sorted(jsonl_ids(out)) == sorted(ids)
        assert queue_depth(queue) == 0
    finally:
        run(["buildah", "rm", container])
