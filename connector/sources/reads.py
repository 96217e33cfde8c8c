"""The health of the reads a source's messages need beyond the source itself (S3 objects that
notices name), for ``/readyz``.

Why: an SQS queue of S3 notices can answer its check while every object read fails (S3 answering
503 SlowDown, a VPC endpoint gone): each notice is then kept for redelivery and nothing is
delivered, yet readiness said ok. The pipeline tells this tracker about each such failure (a
retryable ``SourceError`` escaping the decoder) and about each message whose S3 reads worked;
``trouble`` reports the failures once ``PERSISTENT_FAILURES`` came in a row without a working
read, until a read works again or ``STALE_SECONDS`` pass without another failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Failed messages in a row (no read working in between) that make the reads "failing".
PERSISTENT_FAILURES = 3
#: A failure older than this no longer counts (nothing was tried since).
STALE_SECONDS = 60.0


class ReadHealth:
    """Consecutive failed object reads, and the last reason. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._last_at = 0.0
        self._last_error = ""

    def failed(self, error: str) -> None:
        with self._lock:
            self._failures += 1
            self._last_at = self._clock()
            self._last_error = error

    def worked(self) -> None:
        with self._lock:
            self._failures = 0

    def trouble(self) -> str | None:
        """Why the source's object reads are failing now; None while they work."""
        with self._lock:
            if self._failures >= PERSISTENT_FAILURES and self._clock() - self._last_at < STALE_SECONDS:
                return f"{self._failures} messages in a row could not be read: {self._last_error}"
        return None
