"""``connector demo``: the real pipeline on an embedded default, with no AWS account needed.

Starts an in-process AWS emulation (moto's threaded server on 127.0.0.1), creates an SQS queue,
a dead-letter queue and a Security Hub hub, sends the sample events (one per mapping file, from
its test cases, in different envelopes, plus unrelated noise) as SQS messages, then runs exactly the code
path of ``connector run --once`` with the Security Hub and JSONL sinks (and OpenSearch when
``OPENSEARCH_URL`` is set), and prints what Security Hub now holds.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from connector.demo import samples


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run the real pipeline against an in-process AWS emulation")
    parser.add_argument("--out", default="./findings-demo", help="directory for the JSONL findings")
    parser.set_defaults(func=run)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _envelopes(records: list[dict[str, Any]], noise: list[dict[str, Any]]) -> list[str]:
    """SQS bodies in every envelope kind the connector unwraps; the records take them in turn."""
    account, region = samples.account(), samples.region()
    kinds: list[list[dict[str, Any]]] = [[], [], [], [], []]  # bare, EventBridge, SNS, log file, CWL
    for index, record in enumerate(records):
        kinds[index % len(kinds)].append(record)
    bare, bridged, notified, logged, streamed = kinds

    def eventbridge(record: dict[str, Any], envelope_id: str) -> dict[str, Any]:
        return {"version": "0", "id": envelope_id, "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
                "account": account, "time": record["eventTime"], "region": region, "resources": [], "detail": record}

    bodies = [json.dumps(r) for r in bare]
    bodies += [json.dumps(eventbridge(r, f"demo-eb-{i}")) for i, r in enumerate(bridged)]
    bodies += [json.dumps({"Type": "Notification", "MessageId": f"demo-sns-{i}", "TopicArn": f"arn:aws:sns:{region}:{account}:trail",
                           "Message": json.dumps(eventbridge(r, f"demo-sns-eb-{i}"))}) for i, r in enumerate(notified)]
    if logged:
        bodies.append(base64.b64encode(gzip.compress(json.dumps({"Records": [*logged, *noise[:3]]}).encode())).decode())
    if streamed:
        events = [{"id": str(i), "timestamp": 0, "message": json.dumps(r)} for i, r in enumerate([*streamed, noise[3]])]
        cwl = {"messageType": "DATA_MESSAGE", "owner": account, "logGroup": "aws-cloudtrail-logs", "logStream": "demo",
               "subscriptionFilters": ["network"], "logEvents": events}
        bodies.append(base64.b64encode(gzip.compress(json.dumps(cwl).encode())).decode())
    bodies += [json.dumps(n) for n in noise[4:]]
    # Not CloudTrail at all, though it names a mapped event: it goes to the dead-letter queue.
    bodies.append(f"this is not CloudTrail at all: {records[0]['eventName']}?")
    return bodies


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("connector demo needs moto: pip install -e '.[demo]'", file=sys.stderr)
        return 2
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the emulator's access log is noise here
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": samples.region(), "AWS_REGION": samples.region(),
    })
    os.environ.pop("AWS_PROFILE", None)
    out = Path(args.out).resolve()
    try:
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="cloudtrail-network-events")["QueueUrl"]
        dlq_url = sqs.create_queue(QueueName="cloudtrail-network-events-dlq")["QueueUrl"]
        securityhub = boto3.client("securityhub")
        securityhub.enable_security_hub()
        targets = samples.target_records()
        bodies = _envelopes(targets, samples.noise_records())
        for body in bodies:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)

        from connector.config import load_settings
        from connector.runtime import logs, service

        sinks = ["securityhub", "jsonl"] + (["opensearch"] if os.environ.get("OPENSEARCH_URL") else [])
        overrides: dict[str, Any] = {
            "source": "sqs", "sinks": sinks, "dead_letter": dlq_url, "http_port": 0,
            "sqs": {"queue_url": queue_url, "wait_seconds": 1, "pollers": 1, "visibility_timeout": 30},
            "jsonl": {"directory": str(out)},
        }
        if os.environ.get("OPENSEARCH_URL"):
            overrides["opensearch"] = {"url": os.environ["OPENSEARCH_URL"]}
        settings = load_settings(environ={}, overrides=overrides)
        logs.configure("WARNING")
        code = service.run(settings, once=True, serve_http=False)

        findings = securityhub.get_findings(MaxResults=100)["Findings"]
        dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
        _print_table(findings)
        print(f"\n{len(bodies)} SQS messages → {len(findings)} findings in Security Hub (emulated), "
              f"{len(dead)} message(s) dead-lettered with a reason:")
        for message in dead:
            reason = message.get("MessageAttributes", {}).get("reason", {}).get("StringValue", "?")
            print(f"  - {reason}")
        print(f"ASFF and OCSF findings (JSON Lines): {out / 'asff.jsonl'}  {out / 'ocsf.jsonl'}")
        print(f"Done in {time.monotonic() - started:.1f}s. Against real AWS: set CONNECTOR_SQS_QUEUE_URL, "
              "CONNECTOR_SINKS and CONNECTOR_DEAD_LETTER, then run `connector run`.")
        return code
    finally:
        logging.getLogger().handlers.clear()
        server.stop()


def _print_table(findings: list[dict[str, Any]]) -> None:
    rows = []
    for f in sorted(findings, key=lambda f: f["ProductFields"].get("cloudtrail/eventTime", "")):
        fields = f["ProductFields"]
        text = f["Remediation"]["Recommendation"]["Text"]
        first = text.split(". ")[0][:70] + ("…" if len(text.split(". ")[0]) > 70 else "")
        rows.append((fields.get("cloudtrail/eventName", "?"), f["Resources"][0]["Id"].rsplit("/", 1)[-1][:26],
                     fields.get("connector/principal", "?")[:24], f["Severity"]["Label"], first))
    headers = ("EVENT", "RESOURCE", "PRINCIPAL", "SEVERITY", "FIRST REMEDIATION STEP")
    widths = [max(len(str(r[i])) for r in [*rows, headers]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
