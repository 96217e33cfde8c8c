"""Kinesis checkpoints in DynamoDB: per shard, the last sequence number whose records (and all
before it in that shard) are delivered, and whether the shard was read to its end.

Writes are conditional — a checkpoint only moves forward — so a stale writer (an old process
still shutting down) cannot move it back. Sequence numbers are decimal strings of up to 128
digits; they are stored zero-padded so DynamoDB's string order is their numeric order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from connector.dynamo import TableSpec, create_table_if_missing
from connector.errors import SourceError

WIDTH = 128
SHARD_END = "9" * WIDTH  # past every sequence number: the shard is finished
#: Per stream, one item per shard (deploy/cloudformation/kinesis.yaml ``CheckpointTable``); no TTL.
TABLE = TableSpec(hash_key="stream", range_key="shard_id")


def pad(sequence_number: str) -> str:
    return sequence_number.zfill(WIDTH)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    shard_id: str
    sequence_number: str | None  # unpadded; None when finished before any record
    finished: bool


class CheckpointStore:
    #: What the source calls (``create_table_if_missing`` is for tests and set-up, not the service).
    iam_actions = ("dynamodb:PutItem", "dynamodb:Query")

    def __init__(self, table: str, stream: str, client: Any = None) -> None:
        if not table:
            raise SourceError("setting kinesis.checkpoint_table (CONNECTOR_KINESIS_CHECKPOINT_TABLE) is required")
        self.table = table
        self.stream = stream
        self.client = client or boto3.client("dynamodb")

    def create_table_if_missing(self) -> None:
        """For tests and the demo; production creates it with deploy/cloudformation/kinesis.yaml."""
        create_table_if_missing(self.client, self.table, TABLE)

    def load(self) -> dict[str, Checkpoint]:
        out: dict[str, Checkpoint] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "stream"},
            "ExpressionAttributeValues": {":s": {"S": self.stream}},
            "ConsistentRead": True,
        }
        while True:
            response = self.client.query(**kwargs)
            for item in response.get("Items", []):
                padded = item.get("sequence_number", {}).get("S")
                finished = padded == SHARD_END
                sequence = None if padded in (None, SHARD_END) else padded.lstrip("0") or "0"
                if finished and "last_sequence_number" in item:
                    sequence = item["last_sequence_number"]["S"]
                out[item["shard_id"]["S"]] = Checkpoint(item["shard_id"]["S"], sequence, finished)
            if "LastEvaluatedKey" not in response:
                return out
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def save(self, shard_id: str, sequence_number: str | None, *, finished: bool = False) -> bool:
        """Move the checkpoint forward; False if it already stood further (nothing written)."""
        value = SHARD_END if finished else pad(sequence_number or "0")
        item = {
            "stream": {"S": self.stream},
            "shard_id": {"S": shard_id},
            "sequence_number": {"S": value},
            "updated_at": {"N": str(int(time.time()))},
        }
        if finished and sequence_number:
            item["last_sequence_number"] = {"S": sequence_number}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(sequence_number) OR sequence_number < :new",
                ExpressionAttributeValues={":new": {"S": value}},
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise SourceError(f"checkpoint {shard_id}: {exc}") from exc
