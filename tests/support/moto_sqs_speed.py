"""Costs per held message taken out of moto's SQS in the test server process (test support, not
product code): with 10,000 messages in one queue (the burst bench) moto took over ten minutes to
fill it and longer to drain it, so the connector's own speed could not be seen.

- Time: moto's SQS asks it once per held message, several times per call (every ``SendMessage``
  builds the queue's attributes, which count delayed and in-flight messages one
  ``unix_time_millis()`` each), and ``unix_time`` builds two ``datetime`` objects per call.
  ``time.time()`` is the same value (moto's ``utcnow`` is the naive UTC now, its epoch the naive
  UTC epoch), about twenty times cheaper; an explicit ``dt`` still goes through moto's function.
- Retention: ``ReceiveMessage`` checks each message it hands out against the queue's retention
  period by building all of the queue's attributes (three passes over every message held) to read
  that one; it is read from the queue here.
- Counting and listing (``SendMessage`` builds the attributes, ``ReceiveMessage`` lists the
  visible messages): the same comparisons as moto's ``visible`` and ``delayed`` properties, with
  the time read once per call instead of once per message.
- ``DeleteMessage`` scanned every held message twice, building each one's list of receipt handles
  twice; here one scan stops at the message (a receipt handle names one message), and the list
  is replaced, not edited in place, as moto does, so a concurrent receive's scan is unaffected.

Visibility, delays, retention, receive order and every answer are unchanged."""

from __future__ import annotations

import datetime
import time

from moto.core import utils
from moto.sqs import models


def _unix_time_millis(dt: datetime.datetime | None = None) -> float:
    return time.time() * 1000.0 if dt is None else utils.unix_time_millis(dt)


def _unix_time(dt: datetime.datetime | None = None) -> float:
    return time.time() if dt is None else utils.unix_time(dt)


def _retained(self: models.SQSBackend, queue_name: str, message: models.Message) -> bool:
    """moto's ``is_message_valid_based_on_retention_period``, reading the one attribute it needs."""
    retention = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
    return bool(retention + message.sent_timestamp / 1000 > time.time())  # type: ignore[operator]


def _messages(self: models.Queue) -> list[models.Message]:
    now = time.time() * 1000.0
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]  # type: ignore[operator]


def _delayed_count(self: models.Queue) -> int:
    now = time.time() * 1000.0
    return sum(1 for m in self._messages if now < m.delayed_until)  # type: ignore[operator]


def _not_visible_count(self: models.Queue) -> int:
    now = time.time() * 1000.0
    return sum(1 for m in self._messages if not now > m.visible_at)  # type: ignore[operator]


def _delete_message(self: models.Queue, receipt_handle: str) -> None:
    """moto's ``Queue.delete_message``: a handle deleted before is accepted again, an unknown one
    raises ``ReceiptHandleIsInvalid``."""
    if receipt_handle in self.deleted_messages:
        return
    for index, message in enumerate(self._messages):
        if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)  # type: ignore[arg-type]
            self._messages = self._messages[:index] + self._messages[index + 1:]
            return
    raise models.ReceiptHandleIsInvalid()


def install() -> None:
    """Rebind the names moto's SQS models module looks up (it imported them by name)."""
    models.Queue.messages = property(_messages)  # type: ignore[assignment,method-assign]
    models.Queue.approximate_number_of_messages_delayed = property(_delayed_count)  # type: ignore[assignment,method-assign]
    models.Queue.approximate_number_of_messages_not_visible = property(_not_visible_count)  # type: ignore[assignment,method-assign]
    models.Queue.delete_message = _delete_message  # type: ignore[method-assign]
    models.unix_time_millis = _unix_time_millis  # type: ignore[assignment]
    models.unix_time = _unix_time  # type: ignore[assignment]
    models.SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign]
