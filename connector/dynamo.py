"""DynamoDB tables of the connector's shared state, described once.

Each store that keeps state in DynamoDB (Kinesis checkpoints, correlation windows, resolution
links) declares its table as a :class:`TableSpec`: key schema and TTL attribute. The same spec
creates the table for tests and the demo (:func:`create_table_if_missing`) and is what the
tables in ``deploy/`` are checked against (tests/deploy/test_deploy.py). Production creates the
tables with CloudFormation (``deploy/cloudformation/state.yaml``, ``kinesis.yaml``): creating a
table needs permissions the service does not have.
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table's string keys (partition, optional sort) and its TTL attribute (epoch seconds)."""

    hash_key: str
    range_key: str | None = None
    ttl_attribute: str | None = None

    @property
    def key_schema(self) -> list[dict[str, str]]:
        keys = [{"AttributeName": self.hash_key, "KeyType": "HASH"}]
        if self.range_key:
            keys.append({"AttributeName": self.range_key, "KeyType": "RANGE"})
        return keys

    @property
    def attribute_definitions(self) -> list[dict[str, str]]:
        return [{"AttributeName": k["AttributeName"], "AttributeType": "S"} for k in self.key_schema]


def create_table_if_missing(client: Any, table: str, spec: TableSpec) -> None:
    """Create ``table`` on demand (PAY_PER_REQUEST) with TTL on, unless it exists; idempotent,
    and safe when several processes do it at once (the loser's ``ResourceInUseException`` is
    the winner's table). For tests and the demo only."""
    try:
        client.describe_table(TableName=table)
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    try:
        client.create_table(TableName=table, KeySchema=spec.key_schema,
                            AttributeDefinitions=spec.attribute_definitions, BillingMode="PAY_PER_REQUEST")
    except ClientError as exc:  # another process created it first
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=table)
    if spec.ttl_attribute:
        try:
            client.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute})
        except ClientError as exc:  # the other creator enabled it already
            if "already enabled" not in str(exc).lower():
                raise
