"""Dead-letter destinations: one module per kind, chosen by URL scheme through the shared registry.

``open_dead_letters`` is what the composition root calls; the two built-in stand-ins (no
destination configured, SQS redrive policy) live here because they have no URL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import urlparse

from connector.deadletters.base import KNOWN, REGISTRY, DeadLetterSink, letter_document, register
from connector.errors import ConfigError, DeliveryError
from connector.model import DeadLetter

log = logging.getLogger(__name__)


class MissingDeadLetters:
    """No destination configured: nothing can be dead-lettered, so nothing is acknowledged."""

    url = ""
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Passes: running without a destination is a choice (bad records then stay in the source)."""

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            log.error("no dead-letter destination configured; keeping record %s: %s", letter.record_id, letter.reason)
        raise DeliveryError("no dead-letter destination configured (set CONNECTOR_DEAD_LETTER)")


class LeaveToRedrive:
    """``sqs.use_redrive_policy``: leave bad messages in the queue; its redrive policy moves them
    to the queue's own DLQ after maxReceiveCount. The reason is logged each time (SQS's DLQ keeps
    only the body)."""

    url = "redrive-policy"
    iam_actions: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Passes: the queue's redrive policy is the destination."""

    def put(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            log.error("leaving %s to the queue's redrive policy: %s: %s", letter.record_id, letter.stage, letter.reason)
        raise DeliveryError("left for the SQS redrive policy")


def dead_letter_kind(url: str) -> type:
    """The registered class for ``url``'s scheme, or ``ConfigError`` naming what is supported."""
    scheme = urlparse(url).scheme
    try:
        return REGISTRY.get(scheme)
    except KeyError:
        raise ConfigError(
            f"setting dead_letter: unsupported destination {url!r} (an SQS queue URL, s3://bucket/prefix or file:///dir)"
        ) from None


def open_dead_letters(url: str, *, leave_to_redrive: bool = False) -> DeadLetterSink:
    if leave_to_redrive:
        return LeaveToRedrive()
    if not url:
        return MissingDeadLetters()
    destination: DeadLetterSink = dead_letter_kind(url)(url)
    return destination


def all_iam_actions() -> set[str]:
    """Every IAM action any destination kind calls (deploy/ grants them)."""
    return {action for module in set(KNOWN) for action in REGISTRY.get(module).iam_actions}


__all__ = [
    "KNOWN", "REGISTRY", "DeadLetterSink", "LeaveToRedrive", "MissingDeadLetters", "all_iam_actions",
    "dead_letter_kind", "letter_document", "open_dead_letters", "register",
]
