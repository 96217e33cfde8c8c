"""The records of one Lambda invocation (SQS or Kinesis event-source mapping) as a finite source.

The Lambda handler runs them through the same runner loop as ``connector run --once``; what
the runner acknowledges is done, everything else is reported back in ``batchItemFailures`` so
that Lambda retries only those. It is not in the registry: it is built from the event, not
from settings.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from connector.config import Settings
from connector.errors import SourceError
from connector.model import SourceMessage


def to_messages(event: Mapping[str, Any]) -> list[SourceMessage]:
    """SQS and Kinesis Lambda records → SourceMessages whose ids are Lambda's item identifiers."""
    out: list[SourceMessage] = []
    for record in event.get("Records", []) or []:
        source = record.get("eventSource") if isinstance(record, dict) else None
        if source == "aws:sqs":
            out.append(SourceMessage(id=record["messageId"], body=record["body"].encode("utf-8"), source="sqs"))
        elif source == "aws:kinesis":
            kinesis = record["kinesis"]
            out.append(SourceMessage(id=kinesis["sequenceNumber"], body=base64.b64decode(kinesis["data"]), source="kinesis"))
        else:
            # An unexpected record shape: let the decoder try it as a whole message.
            ident = record.get("messageId") or record.get("eventID") if isinstance(record, dict) else None
            out.append(SourceMessage(id=str(ident or len(out)), body=json.dumps(record).encode(),
                                     attributes={"eventSource": str(source or "lambda")}))
    return out


class LambdaBatch:
    """One invocation's messages: received once, then drained; remembers what was acknowledged."""

    name: ClassVar[str] = "lambda"
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, messages: Sequence[SourceMessage]) -> None:
        self.messages = list(messages)
        #: Kinesis records are handled in order on one worker (the runner reads ``ordered``).
        self.ordered = bool(self.messages) and self.messages[0].source == "kinesis"
        self.acked: set[str] = set()
        self._given = False

    @classmethod
    def from_settings(cls, settings: Settings) -> LambdaBatch:
        raise SourceError("the Lambda batch source is built from the invocation's event, not from settings")

    def receive(self) -> list[SourceMessage]:
        if self._given:
            return []
        self._given = True
        return list(self.messages)

    def ack(self, messages: Sequence[SourceMessage]) -> None:
        self.acked.update(m.id for m in messages)

    def release(self, messages: Sequence[SourceMessage]) -> None:
        """Nothing to do: a message not acknowledged is reported as a batch item failure."""

    def keep_alive(self, messages: Sequence[SourceMessage]) -> None:
        """Lambda owns the records' visibility while the invocation runs."""

    @property
    def drained(self) -> bool:
        return self._given

    def check(self) -> None:
        """Always reachable: the records are in memory."""

    def close(self) -> None:
        """Nothing held."""

    def failures(self) -> list[str]:
        """Ids to report in ``batchItemFailures``, in event order.

        For Kinesis, Lambda retries from the *lowest* reported sequence number, so every record
        from the first failure on is reported: records are never skipped past a failure.
        """
        failed = [m.id for m in self.messages if m.id not in self.acked]
        if self.ordered and failed:
            first = next(i for i, m in enumerate(self.messages) if m.id not in self.acked)
            return [m.id for m in self.messages[first:]]
        return failed
