"""The bytes every bench path runs on: realistic CloudTrail records, 1 % of them targets.

Noise records have the size and shape of real traffic (reads, S3 data events, KMS, STS), with
compact separators as CloudTrail writes them, and include near misses (``DeleteNetworkAcl``)
that the byte pre-filter lets through and the exact match must drop.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import uuid
from dataclasses import dataclass

from tests.support.records import EVENTS, RESOURCE_IDS, make_record

NOISE = (
    ("s3.amazonaws.com", "GetObject"),
    ("s3.amazonaws.com", "PutObject"),
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("sts.amazonaws.com", "AssumeRole"),
    ("kms.amazonaws.com", "Decrypt"),
    ("ec2.amazonaws.com", "DeleteNetworkAcl"),  # a near miss: the pre-filter passes it
    ("logs.amazonaws.com", "PutLogEvents"),
)


def _compact(record: dict[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def noise_record(i: int, rng: random.Random | None = None) -> dict[str, object]:
    """A non-target record with the per-record entropy of real traffic (ids, addresses, times),
    so gzip ratios, and with them the floor, are those of real log files."""
    rng = rng or random.Random(i)
    source, name = NOISE[i % len(NOISE)]
    record = make_record(EVENTS[0], event_id=str(uuid.UUID(int=rng.getrandbits(128))))
    record.update(eventName=name, eventSource=source, requestID=str(uuid.UUID(int=rng.getrandbits(128))),
                  sourceIPAddress=f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                  eventTime=f"2026-12-01T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z")
    bucket, key = f"bucket-{rng.randrange(97)}", f"logs/{rng.getrandbits(64):016x}/{i}.json"
    record["requestParameters"] = {"bucketName": bucket, "key": key, "x-amz-id": f"{rng.getrandbits(96):024x}"}
    record["responseElements"] = None
    # The ``resources`` array CloudTrail writes for these (about 60 % of the records in the
    # shared corpus's trails carry one): a log file of records with arrays is not split the way
    # one without them is, so a corpus without them measured a path real trails do not take.
    account = str(record.get("recipientAccountId", "123456789012"))
    if source == "s3.amazonaws.com":
        record["resources"] = [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                               {"accountId": account, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"}]
    elif source == "kms.amazonaws.com":
        record["resources"] = [{"accountId": account, "type": "AWS::KMS::Key",
                                "ARN": f"arn:aws:kms:eu-west-1:{account}:key/{uuid.UUID(int=rng.getrandbits(128))}"}]
    elif source == "sts.amazonaws.com":
        record["resources"] = [{"ARN": f"arn:aws:iam::{account}:role/role-{rng.randrange(50)}", "accountId": account,
                                "type": "AWS::IAM::Role"}]
    return record


def _resource_id(template: str, i: int) -> str:
    """A resource id of the template's kind and length (``acl-`` + 17 hex digits), distinct per
    ``i``: records of one event must not share ids, or a per-resource cache would look free."""
    prefix, _, digits = template.rpartition("-")
    return f"{prefix}-{(i * 0x9E3779B97F4A7C15 + 0x1234567) % 16 ** len(digits):0{len(digits)}x}"


def target_record(i: int) -> dict[str, object]:
    """The i-th mapped event (in turn) with its own resource id, time, address and request id."""
    name = EVENTS[i % len(EVENTS)]
    own = _resource_id(RESOURCE_IDS[name], i)
    record = make_record(name, event_id=f"target-{i:08d}",
                         eventTime=f"2026-11-20T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
                         sourceIPAddress=f"198.51.{(i // 250) % 256}.{i % 250 + 1}",
                         requestID=str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 % 2**128)))
    for key in ("requestParameters", "responseElements"):
        if record.get(key) is not None:
            record[key] = json.loads(json.dumps(record[key]).replace(RESOURCE_IDS[name], own))
    return record


@dataclass(frozen=True)
class Corpus:
    """One set of records, and the same records in each envelope the connector reads."""

    records: list[bytes]
    targets: int

    @classmethod
    def build(cls, count: int, share: float = 0.01, seed: int = 7) -> Corpus:
        rng = random.Random(seed)
        records: list[bytes] = []
        targets = 0
        for i in range(count):
            if rng.random() < share:
                records.append(_compact(target_record(i)))
                targets += 1
            else:
                records.append(_compact(noise_record(i, rng)))
        return cls(records, targets)

    def chunks(self, size: int) -> list[list[bytes]]:
        return [self.records[i : i + size] for i in range(0, len(self.records), size)]

    def log_files(self, per_file: int = 1000) -> list[bytes]:
        """Gzipped S3 CloudTrail log files, as CloudTrail writes them."""
        return [gzip.compress(b'{"Records":[' + b",".join(c) + b"]}", 6) for c in self.chunks(per_file)]

    def cwl_payloads(self, per_payload: int = 100) -> list[bytes]:
        """CloudWatch Logs subscription payloads (gzip), as Kinesis delivers them."""
        out = []
        for n, chunk in enumerate(self.chunks(per_payload)):
            events = [{"id": f"{n}-{i}", "timestamp": 1764582930000, "message": r.decode()} for i, r in enumerate(chunk)]
            doc = {"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "aws-cloudtrail",
                   "logStream": "111122223333_CloudTrail_eu-west-1", "subscriptionFilters": ["connector"], "logEvents": events}
            out.append(gzip.compress(_compact(doc), 6))
        return out

    def sqs_bodies(self) -> list[bytes]:
        """One CloudTrail record per SQS message body."""
        return list(self.records)

    def eventbridge_bodies(self) -> list[bytes]:
        """EventBridge "AWS API Call via CloudTrail" events, one per SQS body."""
        head = b'{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"AWS API Call via CloudTrail",' \
               b'"source":"aws.ec2","account":"111122223333","time":"2026-12-01T09:00:00Z","region":"eu-west-1","resources":[],"detail":'
        return [head + r + b"}" for r in self.records]

    def kinesis_b64(self) -> list[bytes]:
        return [base64.b64encode(p) for p in self.cwl_payloads()]
