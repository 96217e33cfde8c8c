"""``connector demo``: the real pipeline on an embedded default, with no AWS account needed.

Starts an in-process AWS emulation (moto's threaded server on 127.0.0.1), creates an SQS queue,
a dead-letter queue and a Security Hub hub, sends the embedded sample events (the five target
events in different envelopes, plus unrelated noise) as SQS messages, then runs exactly the code
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

from connector.demo.samples import ACCOUNT, REGION, noise_records, target_records


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run the real pipeline against an in-process AWS emulation")
    parser.add_argument("--out", default="./findings-demo", help="directory for the JSONL findings")
    parser.set_defaults(func=run)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _envelopes(records: list[dict[str, Any]], noise: list[dict[str, Any]]) -> list[str]:
    """One SQS body per envelope kind the connector unwraps."""
    detach, nat, acl, pcx, eni = records
    eventbridge = {"version": "0", "id": "demo-eb-1", "detail-type": "AWS API Call via CloudTrail",
                   "source": "aws.ec2", "account": ACCOUNT, "time": nat["eventTime"], "region": REGION,
                   "resources": [], "detail": nat}
    sns = {"Type": "Notification", "MessageId": "demo-sns-1", "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:trail",
           "Message": json.dumps(eventbridge | {"id": "demo-eb-2", "detail": acl})}
    logfile = base64.b64encode(gzip.compress(json.dumps({"Records": [pcx, *noise[:3]]}).encode())).decode()
    cwl = {"messageType": "DATA_MESSAGE", "owner": ACCOUNT, "logGroup": "aws-cloudtrail-logs", "logStream": "demo",
           "subscriptionFilters": ["network"], "logEvents": [
               {"id": "1", "timestamp": 0, "message": json.dumps(eni)},
               {"id": "2", "timestamp": 0, "message": json.dumps(noise[3])}]}
    return [
        json.dumps(detach),
        json.dumps(eventbridge),
        json.dumps(sns),
        logfile,
        base64.b64encode(gzip.compress(json.dumps(cwl).encode())).decode(),
        *(json.dumps(n) for n in noise[4:]),
        "this is not CloudTrail at all: DeleteNatGateway?",  # goes to the dead-letter queue
    ]


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
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
    })
    os.environ.pop("AWS_PROFILE", None)
    out = Path(args.out).resolve()
    try:
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="cloudtrail-network-events")["QueueUrl"]
        dlq_url = sqs.create_queue(QueueName="cloudtrail-network-events-dlq")["QueueUrl"]
        securityhub = boto3.client("securityhub")
        securityhub.enable_security_hub()
        bodies = _envelopes(target_records(), noise_records())
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
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
