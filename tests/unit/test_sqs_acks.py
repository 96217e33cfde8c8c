"""SQS acknowledgement answers, against a client that answers as DeleteMessageBatch documents.

Seen in CI under load: a message's visibility ran out during delivery, it was received again,
and the newer receive deleted it first; deleting with the old receipt then answers
``ReceiptHandleIsInvalid`` (a sender fault). The message is gone or owned by the newer receive,
so the old acknowledgement must not fail the run; any other refusal still must.
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.errors import SourceError
from connector.model import SourceMessage
from connector.retry import Backoff
from connector.sources.sqs import SqsSource


class AnsweringSqs:
    def __init__(self, code: str) -> None:
        self.code = code
        self.calls: list[list[dict[str, Any]]] = []

    def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        stale = [e for e in Entries if e["ReceiptHandle"].startswith("old-")]
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e not in stale],
            "Failed": [{"Id": e["Id"], "SenderFault": True, "Code": self.code, "Message": "x"} for e in stale],
        }


def messages() -> list[SourceMessage]:
    return [SourceMessage(id=f"m{i}", body=b"", ack_token=f"{'old' if i == 1 else 'new'}-{i}", source="sqs")
            for i in range(3)]


def source(client: AnsweringSqs) -> SqsSource:
    return SqsSource("https://sqs.example/1/q", client=client, backoff=Backoff(base_seconds=0.001, max_attempts=2))


def test_a_superseded_receipt_does_not_fail_the_acknowledgement() -> None:
    client = AnsweringSqs("ReceiptHandleIsInvalid")
    source(client).ack(messages())
    assert len(client.calls) == 1, "not retried: an old receipt never becomes valid"


def test_any_other_refusal_still_fails_it() -> None:
    with pytest.raises(SourceError, match="AccessDenied"):
        source(AnsweringSqs("AccessDenied")).ack(messages())
