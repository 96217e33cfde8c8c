"""The source contract.

``receive`` returns the next batch of ``SourceMessage`` (possibly empty after its wait).
``ack`` is called with messages whose every finding is in every enabled sink (or
dead-lettered): SQS deletes them, Kinesis advances the shard checkpoint past them (only over a
contiguous prefix of acknowledged records). ``release`` is called for messages that could not be
delivered now: SQS makes them visible again (or lets them time out), Kinesis rewinds to the
checkpoint so they are read again. ``keep_alive`` is called while delivery of a batch is still
running (SQS extends the visibility timeout). ``drained`` is True once a finite source (files,
``run --once``) has nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

from connector.config import Settings
from connector.model import SourceMessage
from connector.registry import Registry


@runtime_checkable
class Source(Protocol):
    name: ClassVar[str]
    iam_actions: ClassVar[tuple[str, ...]]

    @classmethod
    def from_settings(cls, settings: Settings) -> Source: ...

    def receive(self) -> list[SourceMessage]: ...

    def ack(self, messages: Sequence[SourceMessage]) -> None: ...

    def release(self, messages: Sequence[SourceMessage]) -> None: ...

    def keep_alive(self, messages: Sequence[SourceMessage]) -> None: ...

    @property
    def drained(self) -> bool: ...

    def check(self) -> None:
        """Raise if the source is unreachable (used by /readyz)."""

    def close(self) -> None: ...


KNOWN: dict[str, str] = {
    "sqs": "connector.sources.sqs",
    "kinesis": "connector.sources.kinesis.source",
    "files": "connector.sources.files",
}
REGISTRY: Registry[Source] = Registry("source", KNOWN)
register = REGISTRY.register
