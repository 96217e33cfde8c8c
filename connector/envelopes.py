"""Envelope decoding: whatever arrived → the CloudTrail records inside it.

Detection is by content, never by where a message came from, and envelopes nest in any order
(SNS → S3 notification → gzip log file; Kinesis → CloudWatch Logs gzip; SQS → EventBridge ...).
One bad part yields a ``DecodeFailure`` for that part only and decoding of the rest goes on.

Safety limits (``LimitSettings``): gzip is inflated in bounded steps, so a bomb is rejected
after at most ``max_decompressed_bytes`` of output, never fully expanded; JSON nesting deeper than
``max_depth`` is rejected without recursion; envelopes nest at most ``max_nesting`` deep; a single
text part (a message body, a log event) is at most ``max_record_bytes``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from connector.config import LimitSettings
from connector.errors import DecodeError, LimitExceeded, SourceError

#: Decoded bytes: ``bytes`` as received, ``bytearray`` after bounded gunzip (no extra copy).
Buffer = bytes | bytearray

try:  # orjson parses single records several times faster than json ...
    import orjson

    _ORJSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError,)
except ImportError:  # pragma: no cover - orjson is a dependency
    orjson = None  # type: ignore[assignment]
    _ORJSON_ERRORS = ()

#: ... but peaks at about 4x json's memory on large documents (bench/), so whole log files
#: above this size go to json: a long-running container is sized by its peak, not its mean.
ORJSON_MAX_BYTES = 1 << 20
_JSON_ERRORS: tuple[type[Exception], ...] = (*_ORJSON_ERRORS, ValueError, RecursionError)


def _loads(data: Buffer) -> Any:
    if orjson is not None and len(data) <= ORJSON_MAX_BYTES:
        return orjson.loads(data)
    return json.loads(data)


GZIP_MAGIC = b"\x1f\x8b"
#: S3 errors that a retry cannot fix: the message is dead-lettered with the reason.
PERMANENT_S3_ERRORS = frozenset({"NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidObjectState", "404", "403"})
_BASE64 = re.compile(rb"^[A-Za-z0-9+/\r\n]+={0,2}\s*$")
#: Markers of envelopes whose records are not in the bytes themselves (S3 references, base64).
_INDIRECT = re.compile(rb'"(s3|s3Bucket|s3ObjectKey|data|awslogs|kinesis|Message|Messages|body|Body|Sns|records|detail)"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def _looks_like_lines(data: Buffer) -> bool:
    """JSON Lines, not one pretty-printed document: the first line is a whole object."""
    first = data.split(b"\n", 1)[0].strip()
    return b"\n" in data and len(first) > 1 and first[:1] + first[-1:] in (b"{}", b"[]")


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    record: Mapping[str, Any]
    origin: str


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    error: DecodeError
    body: bytes
    origin: str


Item = DecodedRecord | DecodeFailure


def gunzip(data: Buffer, limit: int, *, origin: str) -> bytearray:
    """Inflate (multi-member) gzip in bounded steps; reject bombs and truncated streams."""
    out = bytearray()
    pending = data
    while pending:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk_input = pending
        while True:
            try:
                # Bounded steps: zlib sizes its output buffer by max_length, so a large one costs
                # memory up front even for a small file.
                piece = inflater.decompress(chunk_input, max(1, min(1 << 20, limit - len(out) + 1)))
            except zlib.error as exc:
                raise DecodeError(f"corrupt gzip data: {exc}", record_id=origin) from None
            out += piece
            if len(out) > limit:
                raise LimitExceeded(f"gzip expands beyond {limit} bytes (possible gzip bomb); rejected", record_id=origin)
            chunk_input = inflater.unconsumed_tail
            if not chunk_input:
                break
        if not inflater.eof:
            raise DecodeError("truncated gzip data (stream ended early)", record_id=origin)
        pending = inflater.unused_data
        if pending and not pending.startswith(GZIP_MAGIC):
            break  # trailing garbage after the last member is ignored, as gzip(1) does
    return out  # a bytearray: every consumer accepts it, and a copy of a large file is avoided


def json_depth_exceeds(data: Buffer, max_depth: int) -> bool:
    """Cheap bracket scan: True if brackets nest deeper than ``max_depth``.

    Brackets inside strings can only make this over-count, and CloudTrail strings rarely hold
    many of them; a record it flags wrongly would still be rejected with a clear reason.
    """
    if data.count(b"{") + data.count(b"[") <= max_depth:
        return False
    depth = 0
    for match in _BRACKETS.finditer(data):
        if match.group() in (b"{", b"["):
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


class Decoder:
    """Unwraps envelopes. ``s3_client`` enables S3 notifications; ``prefilter`` skips non-targets cheaply."""

    def __init__(
        self,
        limits: LimitSettings,
        *,
        s3_client: Any = None,
        prefilter: Callable[[Buffer], bool] | None = None,
    ) -> None:
        self.limits = limits
        self.s3 = s3_client
        self.prefilter = prefilter

    # -- entry --------------------------------------------------------------------------
    def decode(self, body: bytes, *, origin: str) -> Iterator[Item]:
        yield from self._bytes(body, origin, 0)

    def _fail(self, error: DecodeError, body: Buffer, origin: str) -> DecodeFailure:
        return DecodeFailure(error, bytes(body[: self.limits.max_record_bytes]), origin)

    # -- bytes ----------------------------------------------------------------------------
    def _bytes(self, data: Buffer, origin: str, level: int) -> Iterator[Item]:
        if level > self.limits.max_nesting:
            yield self._fail(LimitExceeded(f"envelopes nested deeper than {self.limits.max_nesting}", record_id=origin), data, origin)
            return
        if data.startswith(GZIP_MAGIC):
            try:
                inflated = gunzip(data, self.limits.max_decompressed_bytes, origin=origin)
            except DecodeError as exc:
                yield self._fail(exc, data, origin)
                return
            yield from self._bytes(inflated, origin + ">gzip", level + 1)
            return
        # Strip only when needed: a whole log file is tens of MB, and every copy counts.
        stripped = data.strip() if data[:1].isspace() or data[-1:].isspace() else data
        if not stripped:
            return
        if stripped[:1] not in (b"{", b"[") and _BASE64.match(stripped) and len(stripped) % 4 == 0:
            try:
                decoded = base64.b64decode(stripped, validate=False)
            except (binascii.Error, ValueError):
                decoded = b""
            if decoded:
                yield from self._bytes(decoded, origin + ">base64", level + 1)
                return
        try:
            stripped.decode("utf-8")
        except UnicodeDecodeError as exc:
            if _looks_like_lines(stripped):  # JSON Lines: only the bad line is lost
                yield from self._lines(stripped, origin, level)
                return
            yield self._fail(DecodeError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", record_id=origin), data, origin)
            return
        if (
            self.prefilter is not None
            and stripped[:1] + stripped[-1:] in (b"{}", b"[]")  # looks whole: garbage still gets its error
            and not self.prefilter(stripped)
            and not _INDIRECT.search(stripped)
        ):
            return  # no target event name and nothing that could hide one: not ours
        if stripped[:1] not in (b"{", b"["):
            yield self._fail(DecodeError(f"not JSON, gzip or base64: {stripped[:60]!r}", record_id=origin), data, origin)
            return
        parsed = self._parse(stripped, origin)
        if isinstance(parsed, DecodeFailure):
            if _looks_like_lines(stripped):  # JSON Lines: each line on its own, one bad line costs one record
                yield from self._lines(stripped, origin, level)
                return
            yield parsed
            return
        yield from self._value(parsed, origin, level + 1)

    def _lines(self, data: Buffer, origin: str, level: int) -> Iterator[Item]:
        lines: list[Buffer] = list(data.splitlines())
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield from self._bytes(line, f"{origin}:{number}", level + 1)

    def _parse(self, data: Buffer, origin: str) -> Any:
        # The bracket scan is cheap for a record but not for a 50 MB log file; there the parser's
        # own nesting cap (orjson: 1024 levels) rejects absurd nesting without recursion.
        if len(data) <= self.limits.max_record_bytes and json_depth_exceeds(data, self.limits.max_depth):
            return self._fail(LimitExceeded(f"JSON nested deeper than {self.limits.max_depth} levels; rejected", record_id=origin), data, origin)
        try:
            return _loads(data)
        except _JSON_ERRORS as exc:
            if isinstance(exc, RecursionError) or "recursion" in str(exc).lower():
                return self._fail(LimitExceeded("JSON nested deeper than the parser allows; rejected", record_id=origin), data, origin)
            return self._fail(DecodeError(f"invalid JSON: {str(exc)[:200]}", record_id=origin), data, origin)

    def _text(self, text: Any, origin: str, level: int) -> Iterator[Item]:
        if not isinstance(text, str):
            if isinstance(text, (dict, list)):
                yield from self._value(text, origin, level)
            return
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > self.limits.max_record_bytes:
            yield self._fail(LimitExceeded(f"part is {len(data)} bytes > {self.limits.max_record_bytes}", record_id=origin), data, origin)
            return
        yield from self._bytes(data, origin, level)

    def _b64(self, text: Any, origin: str, level: int) -> Iterator[Item]:
        try:
            data = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError) as exc:
            yield self._fail(DecodeError(f"invalid base64: {exc}", record_id=origin), str(text).encode(), origin)
            return
        yield from self._bytes(data, origin, level)

    # -- parsed values -------------------------------------------------------------------------
    def _value(self, value: Any, origin: str, level: int) -> Iterator[Item]:
        if level > self.limits.max_nesting + 2:
            yield self._fail(LimitExceeded("envelopes nested too deep", record_id=origin), b"", origin)
            return
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from self._value(item, f"{origin}#{index}", level)
            return
        if isinstance(value, str):
            yield from self._text(value, origin, level)
            return
        if not isinstance(value, dict):
            return
        yield from self._object(value, origin, level)

    def _object(self, obj: dict[str, Any], origin: str, level: int) -> Iterator[Item]:
        if "eventName" in obj and ("eventSource" in obj or "eventVersion" in obj):
            yield DecodedRecord(obj, origin)
            return
        records = obj.get("Records")
        if isinstance(records, list):
            for index, item in enumerate(records):
                yield from self._lambda_record(item, f"{origin}#{index}", level)
            return
        detail_type = obj.get("detail-type")
        if detail_type == "AWS API Call via CloudTrail" and isinstance(obj.get("detail"), dict):
            yield from self._value(obj["detail"], origin + ">eventbridge", level)
            return
        if detail_type == "Object Created" and obj.get("source") == "aws.s3":
            detail = obj.get("detail") or {}
            bucket = (detail.get("bucket") or {}).get("name")
            key = (detail.get("object") or {}).get("key")
            yield from self._s3(bucket, key, origin, level, quoted=False)
            return
        message_type = obj.get("messageType")
        if message_type == "CONTROL_MESSAGE":
            return
        if message_type == "DATA_MESSAGE":
            for index, event in enumerate(obj.get("logEvents") or []):
                yield from self._text((event or {}).get("message"), f"{origin}>cwl#{index}", level)
            return
        if obj.get("Type") == "Notification" and "Message" in obj:
            yield from self._text(obj["Message"], origin + ">sns", level)
            return
        if obj.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
            return
        if "s3Bucket" in obj and isinstance(obj.get("s3ObjectKey"), list):
            for key in obj["s3ObjectKey"]:
                yield from self._s3(obj["s3Bucket"], key, origin, level, quoted=False)
            return
        if obj.get("Event") == "s3:TestEvent":
            return
        if isinstance(obj.get("Messages"), list):  # a boto3 ReceiveMessage response
            for index, message in enumerate(obj["Messages"]):
                yield from self._text((message or {}).get("Body"), f"{origin}>sqs#{index}", level)
            return
        if isinstance(obj.get("records"), list) and "invocationId" in obj:  # Firehose transformation
            for index, record in enumerate(obj["records"]):
                yield from self._b64((record or {}).get("data"), f"{origin}>firehose#{index}", level)
            return
        if isinstance(obj.get("awslogs"), dict):  # CloudWatch Logs → Lambda
            yield from self._b64(obj["awslogs"].get("data"), origin + ">awslogs", level)
            return
        # Anything else (an AWS Config notice on the CloudTrail topic, a health event...) is not
        # a CloudTrail record: hand it on as-is so selection counts it as skipped.
        yield DecodedRecord(obj, origin)

    def _lambda_record(self, item: Any, origin: str, level: int) -> Iterator[Item]:
        """One entry of a ``Records`` array: a CloudTrail record or a Lambda/S3 event record."""
        if not isinstance(item, dict):
            yield from self._value(item, origin, level)
            return
        source = item.get("eventSource") or item.get("EventSource")
        if source == "aws:sqs":
            yield from self._text(item.get("body"), origin + ">sqs", level)
        elif source == "aws:kinesis":
            yield from self._b64((item.get("kinesis") or {}).get("data"), origin + ">kinesis", level)
        elif source == "aws:sns":
            yield from self._text((item.get("Sns") or {}).get("Message"), origin + ">sns", level)
        elif source == "aws:s3":
            s3 = item.get("s3") or {}
            yield from self._s3((s3.get("bucket") or {}).get("name"), (s3.get("object") or {}).get("key"), origin, level, quoted=True)
        else:
            yield from self._object(item, origin, level)

    def _s3(self, bucket: Any, key: Any, origin: str, level: int, *, quoted: bool) -> Iterator[Item]:
        if not bucket or not key:
            yield self._fail(DecodeError("S3 reference without bucket or key", record_id=origin), b"", origin)
            return
        key = unquote_plus(str(key)) if quoted else str(key)
        where = f"{origin}>s3://{bucket}/{key}"
        if self.s3 is None:
            yield self._fail(DecodeError(f"s3://{bucket}/{key}: reading S3 objects needs S3 access (none configured)", record_id=where), b"", where)
            return
        try:
            response = self.s3.get_object(Bucket=str(bucket), Key=key)
            size = int(response.get("ContentLength") or 0)
            if size > self.limits.max_decompressed_bytes:
                raise LimitExceeded(f"object is {size} bytes > {self.limits.max_decompressed_bytes}", record_id=where)
            data = response["Body"].read(self.limits.max_decompressed_bytes + 1)
        except DecodeError as exc:
            yield self._fail(exc, b"", where)
            return
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in PERMANENT_S3_ERRORS:
                yield self._fail(DecodeError(f"cannot read s3://{bucket}/{key}: {exc}", record_id=where), b"", where)
                return
            # Throttling, 5xx, connection trouble: the message must come back later, not be dead-lettered.
            raise SourceError(f"reading s3://{bucket}/{key} failed, will retry: {exc}", record_id=where) from exc
        yield from self._bytes(data, where, level + 1)
