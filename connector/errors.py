"""One hierarchy of errors; each knows the record it is about and whether a retry can help.

A record that fails any stage goes to the dead-letter destination with ``stage`` and
``str(error)``; a retryable error leaves the record unacknowledged so its source redelivers it.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class. ``record_id`` names the offending record wherever one is known."""

    stage: str = "pipeline"
    retryable: bool = False

    def __init__(self, message: str, *, record_id: str | None = None) -> None:
        self.record_id = record_id
        self.message = message
        super().__init__(f"{record_id}: {message}" if record_id else message)


class ConfigError(ConnectorError):
    """A setting is missing or invalid; raised at start-up, names the setting."""

    stage = "config"


class MappingFileError(ConnectorError):
    """A mapping file is broken: ``file: $.path: reason``."""

    stage = "mapping-load"

    def __init__(self, file: str, path: str, reason: str) -> None:
        self.file = file
        self.path = path
        self.reason = reason
        super().__init__(f"{file}: {path}: {reason}")


class DecodeError(ConnectorError):
    """The bytes are not an envelope or record we understand (bad gzip, JSON, UTF-8, ...)."""

    stage = "decode"


class LimitExceeded(DecodeError):
    """A safety limit was hit (decompressed size, nesting depth, record size)."""


class InvalidRecord(ConnectorError):
    """A record of a mapped event lacks what a finding needs (eventID, eventTime, ...)."""

    stage = "map"


class ValidationFailed(ConnectorError):
    """A rendered finding does not satisfy its schema; a bug or an unusual record, never sent."""

    stage = "validate"


class DeliveryError(ConnectorError):
    """A sink could not take findings. ``retryable`` says whether redelivery can help."""

    stage = "deliver"

    def __init__(self, message: str, *, record_id: str | None = None, retryable: bool = True) -> None:
        super().__init__(message, record_id=record_id)
        self.retryable = retryable


class SourceError(ConnectorError):
    """A source could not be read or acknowledged."""

    stage = "source"
    retryable = True
