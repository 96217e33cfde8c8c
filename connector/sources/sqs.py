"""SQS source: long polling, several pollers, visibility kept alive while delivering, batch delete.

A message is deleted only after the pipeline says every finding from it is held by every sink
(or dead-lettered). While a batch is still being delivered the runner calls ``keep_alive``,
which extends the visibility timeout, so a slow sink never causes a redelivery (and so a
duplicate). ``release`` makes a message visible again soon, with a short delay so a sink that
is down is not hammered. Nothing is shared between replicas: run as many as you like.
SQS messages can be up to 1 MiB; nothing here assumes the old 256 KB limit.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from connector import metrics
from connector.config import Settings
from connector.errors import SourceError
from connector.model import SourceMessage
from connector.retry import Backoff, pause, retry_call
from connector.sources.base import register

log = logging.getLogger(__name__)
#: DeleteMessageBatch codes of a receipt handle superseded by a later receive.
STALE_RECEIPT = frozenset({"ReceiptHandleIsInvalid"})

#: Seconds a released message stays invisible before it is tried again.
RELEASE_DELAY_SECONDS = 10
#: Calls of one acknowledgement or release in flight together: a gathered batch of 100
#: messages is ten DeleteMessageBatch calls.
BATCH_CALL_THREADS = 10
#: One batch call's (entries to retry, entries refused).
_ChunkResult = tuple[list[dict[str, Any]], list[str]]
#: Seconds between two GetQueueAttributes calls for the backlog gauge (one call: cheap, and
#: SQS's approximate counts settle over about a minute anyway).
BACKLOG_SECONDS = 30.0


@register("sqs")
class SqsSource:
    name: ClassVar[str] = "sqs"
    #: The run loop may acknowledge its batches from a settler thread (``connector.runtime.runner``).
    settle_off_loop: ClassVar[bool] = True
    iam_actions: ClassVar[tuple[str, ...]] = (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    )

    def __init__(
        self,
        queue_url: str,
        *,
        pollers: int = 2,
        wait_seconds: int = 20,
        max_messages: int = 10,
        visibility_timeout: int = 120,
        leave_poison_to_redrive: bool = False,
        client: Any = None,
        backoff: Backoff | None = None,
    ) -> None:
        if not queue_url:
            raise SourceError("setting sqs.queue_url (CONNECTOR_SQS_QUEUE_URL) is required for the SQS source")
        self.queue_url = queue_url
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        self.visibility_timeout = visibility_timeout
        self.leave_poison_to_redrive = leave_poison_to_redrive
        self.client = client or boto3.client(
            "sqs", config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=wait_seconds + 10)
        )
        self._buffer: queue.Queue[SourceMessage] = queue.Queue(maxsize=max(1, pollers) * max_messages)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._poll_loop, args=(i,), name=f"sqs-poller-{i}", daemon=True)
            for i in range(max(1, pollers))
        ]
        self._backlog_thread = threading.Thread(target=self._backlog_loop, name="sqs-backlog", daemon=True)
        #: Per poller: its last long poll came back empty and it holds no message.
        self._idle = [False] * len(self._threads)
        #: Received but not yet handed to the runner (in a poller's hands or in the buffer), by
        #: receipt handle. They wait while the runner is busy, so ``keep_alive`` extends them too:
        #: otherwise a slow sink would let them time out and be received a second time.
        self._held: dict[str, SourceMessage] = {}
        #: Every message received and neither acknowledged nor released yet: message id → its
        #: newest receipt handle. A message whose visibility ran out while it was still being
        #: delivered (a heartbeat stalled under load) is received again; that copy is not handed
        #: out a second time (it would be delivered twice), its receipt replaces the old one,
        #: which SQS may no longer honour for the delete.
        self._live: dict[str, str] = {}
        #: Copies dropped that way (for logs and tests).
        self.received_again = 0
        self._started = False
        #: The pollers' last receive failed with this (after their retries); None once one works.
        self._failure: Exception | None = None
        #: Threads for the calls of one acknowledgement or release (``_calls``), made on first use.
        self._call_pool: ThreadPoolExecutor | None = None
        #: The queue's redrive ``maxReceiveCount`` (0: no policy, or not readable).
        self.max_receives = 0
        self._backoff = backoff or Backoff(base_seconds=0.5, cap_seconds=20, max_attempts=6)

    @classmethod
    def from_settings(cls, settings: Settings) -> SqsSource:
        s = settings.sqs
        return cls(
            s.queue_url,
            pollers=s.pollers,
            wait_seconds=s.wait_seconds,
            max_messages=s.max_messages,
            visibility_timeout=s.visibility_timeout,
            leave_poison_to_redrive=s.use_redrive_policy,
        )

    # -- polling ---------------------------------------------------------------------------
    def _receive_once(self) -> list[SourceMessage]:
        response = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.max_messages,
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=self.visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"],
            MessageAttributeNames=["All"],
        )
        now = time.time()
        out = []
        oldest = 0.0
        for message in response.get("Messages", []):
            attrs = message.get("Attributes", {})
            sent = int(attrs.get("SentTimestamp") or attrs.get("ApproximateFirstReceiveTimestamp") or 0) / 1000
            if sent:
                oldest = max(oldest, now - sent)
            out.append(
                SourceMessage(
                    id=message["MessageId"],
                    body=message["Body"].encode("utf-8"),
                    ack_token=message["ReceiptHandle"],
                    received_at=now,
                    attempt=int(attrs.get("ApproximateReceiveCount", "1") or 1),
                    source="sqs",
                    max_receives=self.max_receives,
                )
            )
        metrics.SQS_AGE_SECONDS.labels(metrics.queue_name(self.queue_url)).set(oldest)
        return out

    def _poll_loop(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                messages = retry_call(
                    self._receive_once,
                    backoff=self._backoff,
                    retryable=_transient,
                    component="sqs-receive",
                    stop=self._stop,
                )
            except Exception as exc:  # keep polling: the queue may come back
                with self._lock:
                    self._failure = exc  # ``receive`` reports it to the run loop
                self._stop.wait(5)
                continue
            with self._lock:
                self._failure = None
                self._idle[index] = not messages
                messages = self._first_copies(messages)
                self._held.update((m.ack_token, m) for m in messages)
            for message in messages:
                while not self._stop.is_set():
                    try:
                        self._buffer.put(message, timeout=1)  # bounded: backpressure on the pollers
                        break
                    except queue.Full:
                        continue
                else:
                    # Stopping with a message in hand: give it back at once.
                    with self._lock:
                        self._held.pop(message.ack_token, None)
                    self.release([message], delay=0)

    def _first_copies(self, messages: list[SourceMessage]) -> list[SourceMessage]:
        """The messages not already in this process's hands; for the others, keep the newer
        receipt. Called with the lock held."""
        fresh = []
        for message in messages:
            if message.id in self._live:
                self._live[message.id] = message.ack_token
                self.received_again += 1
                log.info("message %s was received again while still being delivered (its visibility ran out); "
                         "the copy is not delivered twice, its newer receipt acknowledges it", message.id)
                continue
            self._live[message.id] = message.ack_token
            fresh.append(message)
        return fresh

    def _entries(self, messages: Sequence[SourceMessage], *, settle: bool, **extra: Any) -> list[dict[str, Any]]:
        """Batch entries with each message's newest receipt; ``settle`` forgets the messages
        (acknowledged or released: a later receive of one is a new delivery)."""
        with self._lock:
            tokens = [self._live.get(m.id, m.ack_token) for m in messages]
            if settle:
                for message in messages:
                    self._live.pop(message.id, None)
        return [{"Id": _entry_id(i, m), "ReceiptHandle": token, **extra}
                for i, (m, token) in enumerate(zip(messages, tokens))]

    def _read_redrive_policy(self) -> None:
        """The queue's ``maxReceiveCount``, so a message on its last receive is dead-lettered by
        us with its reason instead of being moved by SQS without one. Unreadable: 0 (SQS moves it)."""
        try:
            attrs = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])
            policy = json.loads(attrs.get("Attributes", {}).get("RedrivePolicy") or "{}")
            self.max_receives = max(0, int(policy.get("maxReceiveCount", 0)))
        except Exception as exc:  # a missing permission must not stop the consumer
            log.warning("could not read the redrive policy of %s (messages on their last receive are left to it): %s",
                        self.queue_url, exc)
    def _backlog_loop(self) -> None:
        """``connector_backlog_messages``: visible and in-flight messages, every ``BACKLOG_SECONDS``."""
        queue_label = metrics.queue_name(self.queue_url)
        while not self._stop.is_set():
            try:
                attrs = self.client.get_queue_attributes(
                    QueueUrl=self.queue_url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                metrics.BACKLOG.labels("sqs", queue_label, "visible").set(int(attrs["ApproximateNumberOfMessages"]))
                metrics.BACKLOG.labels("sqs", queue_label, "in_flight").set(int(attrs["ApproximateNumberOfMessagesNotVisible"]))
            except Exception as exc:  # a gauge gone stale is no reason to stop; receive reports the trouble
                log.debug("backlog of %s not read: %s", self.queue_url, exc)
            self._stop.wait(BACKLOG_SECONDS)

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._read_redrive_policy()
            for thread in self._threads:
                thread.start()
            self._backlog_thread.start()

    # -- contract --------------------------------------------------------------------------
    def receive(self) -> list[SourceMessage]:
        """Up to ``max_messages`` messages, waiting at most about a second for the first."""
        self._start()
        batch: list[SourceMessage] = []
        try:
            batch.append(self._buffer.get(timeout=1))
        except queue.Empty:
            with self._lock:
                failure = self._failure  # until a poller's receive works again
            if failure is not None:
                # The run loop counts and logs it (a one-shot run gives up after a few).
                raise SourceError(f"SQS receive from {self.queue_url} failed: {failure}") from failure
            return batch
        while len(batch) < self.max_messages:
            try:
                batch.append(self._buffer.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            for message in batch:
                self._held.pop(message.ack_token, None)
        return batch

    @property
    def drained(self) -> bool:
        """Every poller's last long poll was empty, and nothing received waits to be handed out."""
        with self._lock:
            return all(self._idle) and not self._held and self._buffer.empty()

    def _batch_call(self, operation: str, entries: list[dict[str, Any]]) -> None:
        """DeleteMessageBatch / ChangeMessageVisibilityBatch (10 a call) with failed entries retried.

        The calls of one batch go out together (``_calls``): the run loop acknowledges a batch of
        up to ``gather_messages`` between receives, and ten calls one after the other held the
        loop for ten round trips, so a burst was bound by deletes, not by Security Hub's quota.

        A whole call that fails (connection trouble, throttling) and entries failed by the
        service (``SenderFault`` false) are retried with backoff; entries the service refuses for
        the caller's fault (an expired receipt handle) are not, as retrying cannot help. Raises
        ``SourceError`` naming the messages that are still not done.
        """
        method = getattr(self.client, operation)
        pending = entries
        refused: list[str] = []

        def call(chunk: list[dict[str, Any]]) -> _ChunkResult:
            """(entries to retry, entries refused) of one call."""
            try:
                response = method(QueueUrl=self.queue_url, Entries=chunk)
            except Exception as exc:  # connection trouble, throttling: retry the chunk
                log.warning("%s failed: %s", operation, exc)
                return chunk, []
            by_id = {e["Id"]: e for e in chunk}
            failed, refused = [], []
            for failure in response.get("Failed", []):
                entry = by_id[failure["Id"]]
                if operation == "delete_message_batch" and failure.get("Code") in STALE_RECEIPT:
                    # The visibility timeout ran out and the message was received again (or
                    # already deleted): this receipt cannot delete it, and need not — the newer
                    # receive owns it and its findings are already in every sink (dedupe).
                    log.info("message %s was received again before this delete; the newer receive acknowledges it",
                             entry["Id"])
                    continue
                if failure.get("SenderFault"):
                    refused.append(f"{entry['Id']}: {failure.get('Code')}")
                else:
                    failed.append(entry)
            return failed, refused

        for attempt in range(1, self._backoff.max_attempts + 1):
            failed: list[dict[str, Any]] = []
            chunks = [pending[start : start + 10] for start in range(0, len(pending), 10)]
            for chunk_failed, chunk_refused in self._calls(call, chunks):
                failed += chunk_failed
                refused += chunk_refused
            if not failed:
                break
            pending = failed
            if attempt == self._backoff.max_attempts:
                refused += [f"{e['Id']}: still failing after {attempt} attempts" for e in pending]
                break
            pause(self._backoff, attempt, f"sqs-{operation}", count=len(pending))
        if refused:
            raise SourceError(f"{operation}: {len(refused)} of {len(entries)} entries failed ({'; '.join(refused[:5])})")

    def _calls(self, call: Callable[[list[dict[str, Any]]], _ChunkResult],
               chunks: list[list[dict[str, Any]]]) -> list[_ChunkResult]:
        """``call`` on every chunk, concurrently when there is more than one (results in order)."""
        if len(chunks) <= 1:
            return [call(chunk) for chunk in chunks]
        with self._lock:
            if self._call_pool is None:
                self._call_pool = ThreadPoolExecutor(max_workers=BATCH_CALL_THREADS, thread_name_prefix="sqs-batch")
            pool = self._call_pool
        return list(pool.map(call, chunks))

    def ack(self, messages: Sequence[SourceMessage]) -> None:
        entries = self._entries(messages, settle=True)
        if entries:
            self._batch_call("delete_message_batch", entries)
            metrics.ACKED.labels("sqs").inc(len(entries))

    def release(self, messages: Sequence[SourceMessage], delay: int = RELEASE_DELAY_SECONDS) -> None:
        entries = self._entries(messages, settle=True, VisibilityTimeout=delay)
        if entries:
            try:
                self._batch_call("change_message_visibility_batch", entries)
            except SourceError as exc:  # harmless: the visibility timeout returns them anyway
                log.warning("release failed, messages return after their visibility timeout: %s", exc)
            metrics.RELEASED.labels("sqs").inc(len(entries))

    def keep_alive(self, messages: Sequence[SourceMessage]) -> None:
        """Extend the visibility of ``messages`` and of those received but not yet handed out."""
        given = {m.ack_token for m in messages}
        with self._lock:
            held = [m for m in self._held.values() if m.ack_token not in given]
        entries = self._entries([*messages, *held], settle=False, VisibilityTimeout=self.visibility_timeout)
        if entries:
            try:
                self._batch_call("change_message_visibility_batch", entries)
            except SourceError as exc:
                log.warning("could not extend visibility of %d messages: %s", len(entries), exc)

    def check(self) -> None:
        self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"])

    def close(self) -> None:
        self._stop.set()
        # A poller may sit in a 20 s long poll: do not spend the shutdown grace period on it.
        # Anything it still receives stays invisible for the visibility timeout, then returns.
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=2)
        # Whatever is buffered but not handed out goes back to the queue now.
        leftover = []
        while True:
            try:
                leftover.append(self._buffer.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            for message in leftover:
                self._held.pop(message.ack_token, None)
        if leftover:
            self.release(leftover, delay=0)
        with self._lock:
            pool, self._call_pool = self._call_pool, None
        if pool is not None:
            pool.shutdown(wait=True)


#: Answers that no retry can change: the queue is gone or we may not use it.
PERMANENT_CODES = frozenset({
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "AccessDenied", "AccessDeniedException",
    "InvalidClientTokenId", "UnrecognizedClientException", "InvalidAddress", "InvalidSecurity",
})


def _transient(exc: BaseException) -> bool:
    """Worth retrying now: not a missing queue, a refused permission or missing credentials."""
    if isinstance(exc, (NoCredentialsError, NoRegionError)):
        return False
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) not in PERMANENT_CODES
    return True


def _entry_id(index: int, message: SourceMessage) -> str:
    """A batch entry id (unique in the call, at most 80 of [A-Za-z0-9_-]) that names the message."""
    return f"{index}-{message.id}"[:80]
