"""``s3://bucket/prefix``: one JSON object per letter under ``prefix/YYYY/MM/DD/``."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import urlparse

import boto3

from connector.deadletters.base import StoredLetter, letter_document, register
from connector.errors import DeliveryError
from connector.model import DeadLetter

log = logging.getLogger(__name__)


@register("s3")
class S3DeadLetters:
    scheme: ClassVar[str] = "s3"
    iam_actions: ClassVar[tuple[str, ...]] = ("s3:PutObject",)

    def __init__(self, url: str, client: Any = None) -> None:
        self.url = url
        parsed = urlparse(url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.lstrip("/")
        self.client = client or boto3.client("s3")

    def check(self) -> None:
        """Passes: checking the bucket would need ``s3:ListBucket``, which storing does not."""

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            doc = letter_document(letter)
            digest = hashlib.sha256(letter.body + letter.record_id.encode()).hexdigest()[:16]
            key = f"{self.prefix.rstrip('/')}/{time.strftime('%Y/%m/%d', time.gmtime())}/{letter.stage}-{digest}.json"
            try:
                self.client.put_object(Bucket=self.bucket, Key=key.lstrip("/"), Body=json.dumps(doc).encode())
            except Exception as exc:
                raise DeliveryError(f"dead-letter bucket {self.url}: {exc}") from exc

    # -- redrive -----------------------------------------------------------------------------
    iam_redrive_actions: ClassVar[tuple[str, ...]] = ("s3:ListBucket", "s3:GetObject", "s3:DeleteObject")

    def take(self) -> Iterator[StoredLetter]:
        """Every letter under the prefix, streamed page by page."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                try:
                    body = self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                    yield StoredLetter(item["Key"], json.loads(body))
                except (ValueError, KeyError) as exc:
                    log.warning("skipping %s: not a dead letter (%s)", item["Key"], exc)

    def remove(self, handles: Sequence[str]) -> None:
        for key in handles:
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def restore(self) -> None:
        """Letters not removed stay where they are."""
