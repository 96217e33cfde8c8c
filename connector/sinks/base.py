"""The sink contract.

``send`` takes a batch of rendered findings (only in the formats the sink declares) and returns
exactly one ``DeliveryResult`` per finding document: OK, RETRYABLE (the pipeline leaves the
source record unacknowledged so it is redelivered) or PERMANENT (the pipeline dead-letters the
finding with the error). A sink that takes several formats sets ``DeliveryResult.format`` so that
each rendering has its own answer (a result without a format applies to every rendering of that
finding id, and the worst answer wins). A sink retries transient errors itself, with capped exponential backoff
and jitter, before it answers RETRYABLE; it never drops a finding without saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

from connector.config import Settings
from connector.model import DeliveryResult, FindingFormat, RenderedFinding
from connector.registry import Registry


@runtime_checkable
class Sink(Protocol):
    name: ClassVar[str]
    #: Which renderings the sink takes: ("asff",), ("asff", "ocsf"), ...
    formats: ClassVar[tuple[FindingFormat, ...]]
    #: IAM actions the sink calls, for deploy/ and the README.
    iam_actions: ClassVar[tuple[str, ...]]

    @classmethod
    def from_settings(cls, settings: Settings) -> Sink: ...

    def send(self, batch: Sequence[RenderedFinding]) -> list[DeliveryResult]: ...

    def check(self) -> None:
        """Raise if the destination is unreachable (used by /readyz)."""

    def close(self) -> None: ...


KNOWN: dict[str, str] = {
    "securityhub": "connector.sinks.securityhub.sink",
    "opensearch": "connector.sinks.opensearch.sink",
    "jsonl": "connector.sinks.jsonl",
    "securitylake": "connector.sinks.securitylake",
}
REGISTRY: Registry[Sink] = Registry("sink", KNOWN)
register = REGISTRY.register
