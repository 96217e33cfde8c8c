"""The dead-letter contract: where a record or finding that cannot be processed goes, with why.

A destination is chosen by the URL in ``settings.dead_letter``; its scheme picks the plug-in
(``https`` → an SQS queue URL, ``s3``, ``file``) through the same lazy ``Registry`` that sources
and sinks use. Adding a destination is one module in ``connector/deadletters/`` with a class
decorated ``@register("<scheme>")``, its entry in ``KNOWN`` and a test module.

With no destination configured letters go to the log *and* ``put`` raises, so the record stays
in its source: nothing is acknowledged silently.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from connector.model import DeadLetter
from connector.registry import Registry

log = logging.getLogger(__name__)

#: SQS message attribute values are capped; keep the reason readable but bounded.
MAX_REASON = 1024


def bounded(letter: DeadLetter, max_body: int) -> DeadLetter:
    """``letter`` with a body of at most ``max_body`` bytes, for destinations with a size limit.

    Why: an SQS message holds 256 KiB (1 MiB on newer queues) with its attributes, and a letter
    larger than that was refused with ``BatchRequestTooLong`` on every retry, forever. A larger
    body is cut to its head, and the reason says so with the original size and SHA-256, so the
    letter is stored once and the original can still be recognised (a streamed file's letter
    carries a reference to the file instead of its bytes, and is small anyway).
    """
    if len(letter.body) <= max_body:
        return letter
    digest = hashlib.sha256(letter.body).hexdigest()
    note = f" [body truncated from {len(letter.body)} to {max_body} bytes; sha256 {digest}]"
    return dataclasses.replace(letter, body=letter.body[:max_body], reason=letter.reason[: MAX_REASON - len(note)] + note,
                               error_type=letter.error_type or "Truncated")


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


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A letter read back for ``connector redrive``: its handle in the destination and its document."""

    handle: str
    document: Mapping[str, Any]

    def body(self) -> bytes:
        """The original bytes, exactly as they arrived."""
        text = str(self.document.get("body", ""))
        if self.document.get("body_encoding") == "base64":
            return base64.b64decode(text)
        return text.encode("utf-8")


@runtime_checkable
class Redrivable(Protocol):
    """A destination whose letters can be read back, removed once handled, and the rest put back."""

    url: str

    def take(self) -> Iterator[StoredLetter]: ...

    def remove(self, handles: Sequence[str]) -> None: ...

    def restore(self) -> None: ...


class DeadLetterSink(Protocol):
    url: str

    def put(self, letters: Sequence[DeadLetter]) -> None:
        """Store every letter durably or raise ``DeliveryError``."""

    def check(self) -> None:
        """Raise if letters could not be stored now (``/readyz``). Destinations whose check
        would need more permissions than storing (S3: ``ListBucket``) may pass."""


class DeadLetterKind(Protocol):
    """A registered destination class: built from its URL."""

    scheme: ClassVar[str]
    #: IAM actions the destination calls, for deploy/ and the IAM test.
    iam_actions: ClassVar[tuple[str, ...]]

    def __init__(self, url: str) -> None: ...

    def put(self, letters: Sequence[DeadLetter]) -> None: ...

    def check(self) -> None: ...


KNOWN: dict[str, str] = {
    "https": "connector.deadletters.sqs",
    "http": "connector.deadletters.sqs",
    "s3": "connector.deadletters.s3",
    "file": "connector.deadletters.file",
}
REGISTRY: Registry[DeadLetterKind] = Registry("dead-letter destination", KNOWN)
register = REGISTRY.register
