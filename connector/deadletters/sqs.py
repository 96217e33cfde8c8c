"""An SQS queue URL: the original bytes as the body (base64 when not UTF-8), the stage, reason
and record id as message attributes, so the queue's console shows why without opening the body."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import boto3

from connector.deadletters.base import MAX_REASON, StoredLetter, bounded, letter_document, register
from connector.errors import DeliveryError
from connector.model import DeadLetter

log = logging.getLogger(__name__)

#: SQS takes 256 KiB per message and per SendMessageBatch call (body and attributes), the
#: limit every queue has. A body is cut to 180 KiB: even base64-encoded it fits with its
#: attributes (six of at most ``MAX_REASON`` characters).
MAX_BODY_BYTES = 180 * 1024
ATTRIBUTES_BYTES = 6 * (MAX_REASON + 32)
MAX_BATCH_BYTES = 250 * 1024


@register("https")
@register("http")
class SqsDeadLetters:
    scheme: ClassVar[str] = "https"
    iam_actions: ClassVar[tuple[str, ...]] = ("sqs:SendMessage", "sqs:GetQueueAttributes")

    def __init__(self, url: str, client: Any = None) -> None:
        self.url = url
        self.client = client or boto3.client("sqs")

    def _entry(self, index: int, letter: DeadLetter) -> dict[str, Any]:
        doc = letter_document(bounded(letter, MAX_BODY_BYTES))
        attrs = {
            key: {"DataType": "String", "StringValue": (str(doc[key]) or "-")[:MAX_REASON]}
            for key in ("stage", "reason", "error_type", "record_id", "source", "body_encoding")
        }
        return {"Id": str(index), "MessageBody": doc["body"] or "(empty)", "MessageAttributes": attrs}

    def _chunks(self, letters: Sequence[DeadLetter]) -> Iterator[list[dict[str, Any]]]:
        """SendMessageBatch calls of at most 10 entries and ``MAX_BATCH_BYTES`` in all."""
        chunk: list[dict[str, Any]] = []
        size = 0
        for letter in letters:
            entry = self._entry(len(chunk), letter)
            entry_size = len(entry["MessageBody"].encode()) + ATTRIBUTES_BYTES
            if chunk and (len(chunk) == 10 or size + entry_size > MAX_BATCH_BYTES):
                yield chunk
                chunk, size = [], 0
                entry["Id"] = "0"
            chunk.append(entry)
            size += entry_size
        if chunk:
            yield chunk

    def check(self) -> None:
        """The queue exists and we may use it (``/readyz``): without it nothing bad can be acknowledged."""
        try:
            self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        except Exception as exc:
            raise DeliveryError(f"dead-letter queue {self.url}: {exc}") from exc

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for entries in self._chunks(letters):
            try:
                response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            except Exception as exc:  # botocore errors, connection errors
                raise DeliveryError(f"dead-letter queue {self.url}: {exc}") from exc
            if response.get("Failed"):
                raise DeliveryError(f"dead-letter queue {self.url}: {response['Failed']}")

    # -- redrive -----------------------------------------------------------------------------
    iam_redrive_actions: ClassVar[tuple[str, ...]] = (
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
    )
    #: How long a taken letter stays invisible to others while the redrive handles it.
    HOLD_SECONDS = 300

    def take(self) -> Iterator[StoredLetter]:
        """Every visible message, until two receives in a row come back empty. Messages moved
        here by a queue's redrive policy carry no attributes: they are letters without a stage."""
        self._held: list[str] = []
        empty = 0
        while empty < 2:
            answer = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=self.HOLD_SECONDS,
                MessageAttributeNames=["All"], AttributeNames=["SentTimestamp"],
            )
            messages = answer.get("Messages", [])
            empty = 0 if messages else empty + 1
            for message in messages:
                attrs = {k: v.get("StringValue", "") for k, v in (message.get("MessageAttributes") or {}).items()}
                sent = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
                doc = {
                    "stage": attrs.get("stage", ""), "reason": attrs.get("reason", ""),
                    "error_type": attrs.get("error_type", ""), "record_id": attrs.get("record_id", message["MessageId"]),
                    "source": attrs.get("source", "sqs"), "body_encoding": attrs.get("body_encoding", "utf-8"),
                    "body": message.get("Body", ""),
                    "dead_lettered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent)),
                }
                self._held.append(message["ReceiptHandle"])
                yield StoredLetter(message["ReceiptHandle"], doc)

    def remove(self, handles: Sequence[str]) -> None:
        for handle in handles:
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=handle)
            if handle in self._held:
                self._held.remove(handle)

    def restore(self) -> None:
        """Make every letter not removed visible again at once (not after the hold)."""
        for handle in getattr(self, "_held", []):
            try:
                self.client.change_message_visibility(QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=0)
            except Exception as exc:  # it becomes visible after the hold anyway
                log.warning("could not release dead letter: %s", exc)
        self._held = []
