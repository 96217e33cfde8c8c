"""JSON logs: one line per event on stderr, with record and finding ids where known.

One stream an on-call can filter with ``jq``: everything goes through the one JSON handler —
Python warnings, uncaught exceptions in any thread and the libraries' loggers included — and
nothing prints plain text between the lines.

- **Expected failures are one line with their cause.** A traceback is kept only for errors
  (ERROR and above) logged by the connector's own code with ``exc_info`` — i.e. unexpected ones
  (``log.exception``). A library that attaches a traceback to a routine warning (opensearch-py
  does, for every failed request) gets an ``error`` field of one line instead.
- **Repeated warnings are aggregated.** The same warning or error (same logger and message
  template, or the same ``repeat_key`` extra) is written once per ``REPEAT_SECONDS``; the next
  one written after that says how many were held back (``repeated``), and ``flush`` writes what
  is still held when the process ends. The metrics count every occurrence.
- **Credentials never reach the log**: a filter masks AWS secret keys, session tokens and the
  configured passwords in every message and field before it is formatted.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "repeat_key"}
_SECRET_PATTERNS = [
    re.compile(r"(?i)(aws_secret_access_key|secretaccesskey|secret_access_key|sessiontoken|session_token|password)(['\"]?\s*[:=]\s*['\"]?)([^'\"\s,}]+)"),
    re.compile(r"\b(ASIA|AKIA)[A-Z0-9]{16}\b"),
]

#: Seconds between two lines of the same repeated warning.
REPEAT_SECONDS = 60.0
#: Loggers whose errors may carry a traceback (our code logs one only for the unexpected).
OWN_LOGGERS = ("connector", "__main__", "py.warnings")


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _SECRET_PATTERNS[0].sub(lambda m: m.group(1) + m.group(2) + "***", text)
        return _SECRET_PATTERNS[1].sub(lambda m: m.group(1) + "****************", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class RepeatFilter(logging.Filter):
    """At most one WARNING-or-worse line per key and ``interval``; the next says how many were held."""

    def __init__(self, interval: float = REPEAT_SECONDS, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        #: key -> (time the last line was written, occurrences held back since, the last held record)
        self._seen: dict[tuple[str, str], tuple[float, int, logging.LogRecord | None]] = {}

    @staticmethod
    def key(record: logging.LogRecord) -> tuple[str, str]:
        explicit = getattr(record, "repeat_key", None)
        return record.name, str(explicit if explicit is not None else record.msg)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "_summary", False):
            return True
        key = self.key(record)
        now = self.clock()
        with self._lock:
            last, held, _ = self._seen.get(key, (None, 0, None))
            if last is not None and now - last < self.interval:
                self._seen[key] = (last, held + 1, record)
                return False
            self._seen[key] = (now, 0, None)
        if held:
            record.repeated = held
            record.msg = f"{record.msg} (and {held} more like this in the last {now - last:.0f}s)"
        return True

    def pending(self) -> list[tuple[logging.LogRecord, int]]:
        """The last held record and count of every key still holding some; resets them."""
        out = []
        with self._lock:
            for key, (last, held, record) in list(self._seen.items()):
                if held and record is not None:
                    out.append((record, held))
                    self._seen[key] = (last, 0, None)
        return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            if record.levelno >= logging.ERROR and record.name.split(".")[0] in OWN_LOGGERS:
                entry["exception"] = self.formatException(record.exc_info)
            else:
                entry.setdefault("error", one_line(record.exc_info[1]))
        return json.dumps(entry, default=str)


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (a chained cause appended), for an expected failure."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and cause is not exc:
        line += f" (caused by {type(cause).__name__}: {' '.join(str(cause).split())})"
    return line


_state: dict[str, Any] = {"handler": None, "repeats": None}


def configure(level: str = "INFO", secrets: Iterable[str] = (), *, repeat_seconds: float = REPEAT_SECONDS) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    repeats = RepeatFilter(repeat_seconds)
    handler.addFilter(repeats)  # before redaction: it keys on the message template
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "opensearch", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)  # warnings.warn(...) as JSON lines, not plain text
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    _state.update(handler=handler, repeats=repeats)


def configured() -> bool:
    """True once ``configure`` installed the JSON handler (and it is still the root's)."""
    return _state["handler"] is not None and _state["handler"] in logging.getLogger().handlers


def flush() -> None:
    """Write a summary of every warning still held back by the repeat filter."""
    repeats: RepeatFilter | None = _state["repeats"]
    if repeats is None or not configured():
        return
    for record, held in repeats.pending():
        summary = logging.makeLogRecord(vars(record))
        summary.msg = f"{record.getMessage()} (and {held} more like this, not shown)"
        summary.args = None
        summary.repeated = held
        summary.summary = True  # the line stands for the ``held`` occurrences, itself included
        summary._summary = True
        if record.exc_info and record.exc_info[1] is not None and not hasattr(summary, "error"):
            summary.error = one_line(record.exc_info[1])
        summary.exc_info = None
        summary.created = time.time()
        summary.msecs = (summary.created % 1) * 1000
        logging.getLogger(record.name).handle(summary)


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("connector").critical("uncaught %s: %s", kind.__name__, exc, exc_info=(kind, exc, tb))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("connector").error(
        "thread %s died: %s", name, one_line(args.exc_value),
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def format_exception(exc: BaseException) -> str:
    """A traceback as text (for the plain-text fallback before logging is configured)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
