"""The dead-letter destination: where a record or finding that cannot be processed goes, with why.

Chosen by the URL in ``settings.dead_letter``: an SQS queue URL (the original bytes as the body,
base64 when not UTF-8, and the stage/reason/record id as message attributes), ``s3://bucket/prefix``
(one JSON object per letter) or ``file:///dir`` (JSON Lines, for local use and tests). With no
destination configured letters go to the log *and* the process refuses to acknowledge nothing
silently: ``put`` raises, so the record stays in its source.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol, Sequence
from urllib.parse import urlparse

import boto3

from connector.errors import ConfigError, DeliveryError
from connector.model import DeadLetter

log = logging.getLogger(__name__)

#: IAM actions by destination kind (deploy/cloudformation/iam-policy.yaml lists them).
IAM_ACTIONS = {"sqs": ("sqs:SendMessage",), "s3": ("s3:PutObject",), "file": ()}

#: SQS message attribute values are capped; keep the reason readable but bounded.
MAX_REASON = 1024


def letter_document(letter: DeadLetter) -> dict[str, Any]:
    """A JSON-safe description of a letter: body as text when it is UTF-8, else base64."""
    try:
        body_text, encoding = letter.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body_text, encoding = base64.b64encode(letter.body).decode("ascii"), "base64"
    return {
        "stage": letter.stage,
        "reason": letter.reason,
        "error_type": letter.error_type,
        "record_id": letter.record_id,
        "source": letter.source,
        "body_encoding": encoding,
        "body": body_text,
        "dead_lettered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class DeadLetterSink(Protocol):
    url: str

    def put(self, letters: Sequence[DeadLetter]) -> None:
        """Store every letter durably or raise ``DeliveryError``."""


class FileDeadLetters:
    def __init__(self, url: str) -> None:
        self.url = url
        self.directory = Path(urlparse(url).path)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def put(self, letters: Sequence[DeadLetter]) -> None:
        with self._lock, open(self.directory / "dead-letters.jsonl", "a", encoding="utf-8") as out:
            for letter in letters:
                out.write(json.dumps(letter_document(letter), sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def read(self) -> list[dict[str, Any]]:
        path = self.directory / "dead-letters.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


class SqsDeadLetters:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = boto3.client("sqs")

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


class S3DeadLetters:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.lstrip("/")
        self.client = boto3.client("s3")

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            doc = letter_document(letter)
            digest = hashlib.sha256(letter.body + letter.record_id.encode()).hexdigest()[:16]
            key = f"{self.prefix.rstrip('/')}/{time.strftime('%Y/%m/%d', time.gmtime())}/{letter.stage}-{digest}.json"
            try:
                self.client.put_object(Bucket=self.bucket, Key=key.lstrip("/"), Body=json.dumps(doc).encode())
            except Exception as exc:
                raise DeliveryError(f"dead-letter bucket {self.url}: {exc}") from exc


class MissingDeadLetters:
    """No destination configured: nothing can be dead-lettered, so nothing is acknowledged."""

    url = ""

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            log.error("no dead-letter destination configured; keeping record %s: %s", letter.record_id, letter.reason)
        raise DeliveryError("no dead-letter destination configured (set CONNECTOR_DEAD_LETTER)")


class LeaveToRedrive:
    """``sqs.use_redrive_policy``: leave bad messages in the queue; its redrive policy moves them
    to the queue's own DLQ after maxReceiveCount. The reason is logged each time (SQS's DLQ keeps
    only the body)."""

    url = "redrive-policy"

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            log.error("leaving %s to the queue's redrive policy: %s: %s", letter.record_id, letter.stage, letter.reason)
        raise DeliveryError("left for the SQS redrive policy")


def open_dead_letters(url: str, *, leave_to_redrive: bool = False) -> DeadLetterSink:
    if leave_to_redrive:
        return LeaveToRedrive()
    if not url:
        return MissingDeadLetters()
    scheme = urlparse(url).scheme
    if scheme == "file":
        return FileDeadLetters(url)
    if scheme == "s3":
        return S3DeadLetters(url)
    if scheme in ("http", "https"):
        return SqsDeadLetters(url)
    raise ConfigError(f"setting dead_letter: unsupported destination {url!r} (SQS URL, s3:// or file://)")
