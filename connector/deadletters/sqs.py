"""An SQS queue URL: the original bytes as the body (base64 when not UTF-8), the stage, reason
and record id as message attributes, so the queue's console shows why without opening the body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import boto3

from connector.deadletters.base import MAX_REASON, letter_document, register
from connector.errors import DeliveryError
from connector.model import DeadLetter


@register("https")
@register("http")
class SqsDeadLetters:
    scheme: ClassVar[str] = "https"
    iam_actions: ClassVar[tuple[str, ...]] = ("sqs:SendMessage",)

    def __init__(self, url: str, client: Any = None) -> None:
        self.url = url
        self.client = client or boto3.client("sqs")

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for start in range(0, len(letters), 10):
            chunk = letters[start : start + 10]
            entries = []
            for index, letter in enumerate(chunk):
                doc = letter_document(letter)
                attrs = {
                    key: {"DataType": "String", "StringValue": (str(doc[key]) or "-")[:MAX_REASON]}
                    for key in ("stage", "reason", "error_type", "record_id", "source", "body_encoding")
                }
                entries.append({"Id": str(index), "MessageBody": doc["body"] or "(empty)", "MessageAttributes": attrs})
            try:
                response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            except Exception as exc:  # botocore errors, connection errors
                raise DeliveryError(f"dead-letter queue {self.url}: {exc}") from exc
            if response.get("Failed"):
                raise DeliveryError(f"dead-letter queue {self.url}: {response['Failed']}")
