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
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import msgspec

from connector.config import LimitSettings
from connector.errors import DecodeError, LimitExceeded, SourceError
from connector.inflate import GZIP_MAGIC, gunzip, inflate
from connector.record_split import (
    CLOUDTRAIL_RECORD_HEAD,
    COMPACT_HEAD,
    CWL_HEAD,
    LOG_FILE_HEAD,
    cwl_chosen,
    cwl_events,
    cwl_hits,
    json_depth_exceeds,
    log_file_hits,
    log_file_records,
    select_records,
    stream_log_file,
)
from connector.select import NameScan
from connector.terminal import (
    EVENTBRIDGE_AFTER_AT,
    EVENTBRIDGE_AFTER_ID,
    EVENTBRIDGE_CLOUDTRAIL,
    EVENTBRIDGE_HEAD,
    EVENTBRIDGE_ID,
    is_terminal,
    looks_like_lines,
    may_hide,
    record_by_record,
)
from connector.trust import S3Trust, location_problem

__all__ = ["Buffer", "DecodeFailure", "DecodedRecord", "Decoder", "Item", "Skipped", "gunzip", "json_depth_exceeds"]

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


#: S3 errors that a retry cannot fix: the message is dead-lettered with the reason.
PERMANENT_S3_ERRORS = frozenset({"NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidObjectState", "404", "403"})
_BASE64 = re.compile(rb"^[A-Za-z0-9+/\r\n]+={0,2}\s*$")
CLOUDTRAIL_LOG_HEAD = COMPACT_HEAD + CLOUDTRAIL_RECORD_HEAD
#: Objects read from S3 above this size are inflated and split as they arrive, not read whole.
STREAM_OVER_BYTES = 8 << 20
STREAM_CHUNK = 1 << 20
#: Inflated bytes per window when a log file is split as it streams.
STREAM_WINDOW = 4 << 20
_S3_KEY_MAX_BYTES = 1024


class _Malformed:
    """An envelope member that should be an object is something else (``"Sns": 5``)."""

    def __init__(self, path: str) -> None:
        self.path = path


def _dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` of a parsed envelope: None when a member is absent, ``_Malformed`` when
    a step that must be an object is not one, so the part gets a letter instead of a crash."""
    for depth, key in enumerate(keys):
        if value is None:
            return None
        if not isinstance(value, dict):
            return _Malformed(".".join(keys[:depth]) or "entry")
        value = value.get(key)
    return value


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    record: Mapping[str, Any]
    origin: str


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    error: DecodeError
    body: bytes
    origin: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """Records the byte pre-filter dropped unparsed: not targets, but still counted as skipped."""

    count: int


SKIPPED_ONE = Skipped(1)
_SKIPPED_ONE_ONLY = (SKIPPED_ONE,)
Item = DecodedRecord | DecodeFailure | Skipped


class Decoder:
    """Unwraps envelopes. ``s3_client`` enables S3 notifications; ``prefilter`` (the target names'
    pattern, ``Selector.pattern``) skips non-targets before they are parsed. ``s3_trust`` says which
    buckets and keys S3 notices may be followed to (``connector.trust``); ``build.build_stages``
    always gives it, from ``s3.trail_buckets``. Without one (tests that decode a bucket they made)
    any validly named bucket is read."""

    def __init__(
        self,
        limits: LimitSettings,
        *,
        s3_client: Any = None,
        prefilter: NameScan | None = None,
        s3_trust: S3Trust | None = None,
    ) -> None:
        self.limits = limits
        self.s3 = s3_client
        self.prefilter = prefilter
        self._occurs = prefilter.occurs if prefilter is not None else None
        self.s3_trust = s3_trust

    # -- entry --------------------------------------------------------------------------
    def decode(self, body: bytes, *, origin: str) -> Iterable[Item]:
        # The common case first, with nothing else done: one CloudTrail record (or EventBridge
        # event) that is not a target costs one name scan (and no generator); one that holds a
        # name is parsed straight away.
        occurs = self._occurs
        if occurs is not None and body and body[-1] == 0x7D:  # ends with "}" (an index costs half a call)
            # the compact heads AWS writes by plain byte compares, inline: this runs per message
            compact = (
                body.startswith(CLOUDTRAIL_RECORD_HEAD)
                or (body.startswith(EVENTBRIDGE_ID) and body.startswith(EVENTBRIDGE_AFTER_ID, EVENTBRIDGE_AFTER_AT))
                or (body.startswith(EVENTBRIDGE_HEAD) and body.find(EVENTBRIDGE_CLOUDTRAIL, 0, 200) > 0)
            )
            if compact or is_terminal(body):
                if not occurs(body):
                    return _SKIPPED_ONE_ONLY
                if compact:
                    return self._record_body(body, origin, 0)
        return self._bytes(body, origin, 0)

    def _record_body(self, data: Buffer, origin: str, level: int) -> Iterable[Item]:
        """A compact record or EventBridge event holding a target name, parsed without ``_bytes``' container
        tests (none applies to these heads); anything unusual (too deep, not ASCII, not parsed) takes ``_bytes``."""
        if level > self.limits.max_nesting or not data.isascii():
            return self._bytes(data, origin, level)
        parsed = self._parse(data, origin)
        if isinstance(parsed, DecodeFailure):
            return self._bytes(data, origin, level)
        if isinstance(parsed, dict) and "eventName" in parsed and ("eventSource" in parsed or "eventVersion" in parsed):
            return (DecodedRecord(parsed, origin),)  # what ``_object`` makes of a record, without two generators
        return self._value(parsed, origin, level + 1)

    def decode_stream(self, chunks: Iterable[Buffer], *, origin: str) -> Iterator[Item]:
        """Like ``decode`` for a body too large to hold: gzip is inflated and log files are split as
        the chunks arrive, so memory stays bounded whatever the size. Records found before a
        failure (a truncated file) are kept; the failure is reported after them."""
        source = iter(chunks)
        first = next(source, b"")
        rest: Iterable[Buffer] = itertools.chain([first], source)
        where = origin
        if bytes(first[:2]) == GZIP_MAGIC:
            limits = self.limits
            rest = inflate(rest, limit=limits.max_decompressed_bytes, ratio=limits.max_gzip_ratio, origin=origin)
            where = origin + ">gzip"
        try:
            pieces = iter(rest)
            head = b""
            while len(head) < 64:
                piece = next(pieces, None)
                if piece is None:
                    break
                head += bytes(piece)
            if not LOG_FILE_HEAD.match(head.lstrip()):
                whole = bytearray(head)
                for piece in pieces:
                    whole += piece
                    if len(whole) > self.limits.max_decompressed_bytes:
                        raise LimitExceeded(f"object is over {self.limits.max_decompressed_bytes} bytes and not a log file", record_id=origin)
                yield from self._bytes(whole, where, 1)
                return
            windows = stream_log_file(
                pieces, window=STREAM_WINDOW, max_record_bytes=self.limits.max_record_bytes, origin=where, prefix=head.lstrip()
            )
            offset = 0
            for body, raws in windows:
                yield from self._records(body, raws, where, 1, head=1, tail=1, first_index=offset)
                offset += len(raws)
        except DecodeError as exc:
            yield self._fail(exc, b"", where)

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
        if stripped[:1] == b"{":  # record containers are split without parsing their records
            if LOG_FILE_HEAD.match(stripped):
                positions = heads = None
                if self.prefilter is not None and stripped.startswith(CLOUDTRAIL_LOG_HEAD):
                    # The one scan of the file: the record heads and the target names together.
                    positions = self.prefilter.positions(stripped)
                    if not positions:
                        # A CloudTrail log file without a target name anywhere: nothing in it can be a
                        # target (its records are never envelopes), so it is not even split; the
                        # records are counted by their heads.
                        yield Skipped(len(self.prefilter.marker_scan(CLOUDTRAIL_RECORD_HEAD)(stripped)))
                        return
                    cut = self._log_file_hits(stripped, origin, level, positions)
                    if cut is not None:
                        yield from cut
                        return
                    heads = len(self.prefilter.marker_scan(CLOUDTRAIL_RECORD_HEAD)(stripped))
                raws = log_file_records(stripped)
                if raws is not None:
                    compact = stripped.startswith(COMPACT_HEAD) and stripped.endswith(b"]}")
                    yield from self._records(
                        stripped, raws, origin, level, head=len(COMPACT_HEAD) if compact else -1, tail=2, positions=positions, heads=heads
                    )
                    return
            elif CWL_HEAD.match(stripped):
                hits = cwl_hits(stripped, self.prefilter) if self.prefilter is not None else None
                if hits is not None and hits[0] in ("DATA_MESSAGE", "CONTROL_MESSAGE"):
                    if hits[0] == "DATA_MESSAGE":
                        for index, event in hits[2]:
                            yield from self._cwl_event(event, f"{origin}>cwl#{index}", level)
                        if hits[1] > len(hits[2]):
                            yield Skipped(hits[1] - len(hits[2]))
                    return
                payload = cwl_events(stripped)
                if payload is not None and payload[0] in ("DATA_MESSAGE", "CONTROL_MESSAGE"):
                    yield from self._cwl(payload[0], payload[1], origin, level, stripped)
                    return
        if (
            self.prefilter is not None
            and stripped[:1] + stripped[-1:] in (b"{}", b"[]")  # looks whole: garbage still gets its error
            and self.prefilter.search(stripped) is None
            and not may_hide(stripped)
        ):
            yield SKIPPED_ONE  # no target event name and nothing that could hide one: not ours
            return
        if not stripped.isascii():  # most CloudTrail is ASCII; only the rest needs the full check
            try:
                stripped.decode("utf-8")
            except UnicodeDecodeError as exc:
                if looks_like_lines(stripped):  # JSON Lines: only the bad line is lost
                    yield from self._lines(stripped, origin, level)
                    return
                yield self._fail(DecodeError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", record_id=origin), data, origin)
                return
        if stripped[:1] not in (b"{", b"["):
            yield self._fail(DecodeError(f"not JSON, gzip or base64: {stripped[:60]!r}", record_id=origin), data, origin)
            return
        parsed = self._parse(stripped, origin)
        if isinstance(parsed, DecodeFailure):
            if looks_like_lines(stripped):  # JSON Lines: each line on its own, one bad line costs one record
                yield from self._lines(stripped, origin, level)
                return
            yield parsed
            return
        yield from self._value(parsed, origin, level + 1)

    def _records(
        self,
        doc: Buffer,
        raws: list[msgspec.Raw],
        origin: str,
        level: int,
        *,
        head: int,
        tail: int,
        first_index: int = 0,
        positions: list[int] | None = None,
        heads: int | None = None,
    ) -> Iterator[Item]:
        """The entries of a ``Records`` array: only those that may be targets are parsed."""
        prefilter = self.prefilter
        chosen: Iterable[tuple[int, bool]]
        if prefilter is None:
            chosen = ((index, True) for index in range(len(raws)))
        else:
            known = select_records(doc, head, tail, raws, prefilter, CLOUDTRAIL_RECORD_HEAD, positions, heads) if head >= 0 else None
            chosen = known if known is not None else record_by_record(raws, prefilter)
        parsed_count = 0
        for index, hit in chosen:
            raw = raws[index]
            if not hit and not may_hide(raw):
                continue
            parsed_count += 1
            where = f"{origin}#{first_index + index}"
            parsed = self._parse(bytes(memoryview(raw)), where)
            if isinstance(parsed, DecodeFailure):
                yield parsed
            else:
                yield from self._lambda_record(parsed, where, level)
        if len(raws) > parsed_count:
            yield Skipped(len(raws) - parsed_count)

    def _log_file_hits(self, doc: Buffer, origin: str, level: int, positions: list[int]) -> list[Item] | None:
        """Only the hit records of a log file cut at its heads (``log_file_hits``); None when the cut does not
        apply or a hit does not parse as one object: the parser's split then gives each record its outcome."""
        cut = log_file_hits(doc, self.prefilter, positions) if self.prefilter is not None else None
        if cut is None:
            return None
        count, hits = cut
        items: list[Item] = []
        for index, data in hits:
            where = f"{origin}#{index}"
            parsed = self._parse(data, where)
            if not isinstance(parsed, dict):
                return None
            items.extend(self._lambda_record(parsed, where, level))
        if count > len(hits):
            items.append(Skipped(count - len(hits)))
        return items

    def _cwl(self, message_type: str, events: list[msgspec.Raw], origin: str, level: int, doc: Buffer) -> Iterator[Item]:
        """A CloudWatch Logs payload: each log event's message is one record as text, never an
        envelope, so the name test alone decides which events are parsed."""
        if message_type == "CONTROL_MESSAGE":
            return
        chosen = range(len(events)) if self.prefilter is None else cwl_chosen(doc, events, self.prefilter)
        parsed_count = 0
        for index in chosen:
            parsed_count += 1
            yield from self._cwl_event(bytes(memoryview(events[index])), f"{origin}>cwl#{index}", level)
        if len(events) > parsed_count:
            yield Skipped(len(events) - parsed_count)

    def _cwl_event(self, data: bytes, where: str, level: int) -> Iterator[Item]:
        event = self._parse(data, where)
        if isinstance(event, DecodeFailure):
            yield event
        elif isinstance(event, dict):
            yield from self._text(event.get("message"), where, level)
        else:
            yield self._fail(DecodeError("CloudWatch Logs log event is not an object", record_id=where), b"", where)

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
            if orjson is not None and len(data) <= ORJSON_MAX_BYTES:
                # orjson (and msgspec, which split the log file) refuse a lone surrogate escape
                # ("\ud800") or NaN anywhere in a document; the standard parser reads them, so
                # one such value costs its own record (a letter later), not the whole log file.
                try:
                    return json.loads(data)
                except (ValueError, RecursionError):
                    pass
            return self._fail(DecodeError(f"invalid JSON: {str(exc)[:200]}", record_id=origin), data, origin)

    def _text(self, text: Any, origin: str, level: int) -> Iterator[Item]:
        if isinstance(text, _Malformed):
            yield self._fail(DecodeError(f"envelope member {text.path} is not an object", record_id=origin), b"", origin)
            return
        if not isinstance(text, str):
            if isinstance(text, (dict, list)):
                yield from self._value(text, origin, level)
            return
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > self.limits.max_record_bytes:
            yield self._fail(LimitExceeded(f"part is {len(data)} bytes > {self.limits.max_record_bytes}", record_id=origin), data, origin)
            return
        if self._occurs is not None and data.startswith(CLOUDTRAIL_RECORD_HEAD) and data.endswith(b"}"):  # a record as text
            yield from self._record_body(data, origin, level) if self._occurs(data) else _SKIPPED_ONE_ONLY
            return
        yield from self._bytes(data, origin, level)

    def _b64(self, text: Any, origin: str, level: int) -> Iterator[Item]:
        if isinstance(text, _Malformed):
            yield self._fail(DecodeError(f"envelope member {text.path} is not an object", record_id=origin), b"", origin)
            return
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
            bucket = _dig(obj, "detail", "bucket", "name")
            key = _dig(obj, "detail", "object", "key")
            yield from self._s3(bucket, key, origin, level, quoted=False)
            return
        message_type = obj.get("messageType")
        if message_type == "CONTROL_MESSAGE":
            return
        if message_type == "DATA_MESSAGE":
            events = obj.get("logEvents") or []
            if not isinstance(events, list):
                yield self._fail(DecodeError("CloudWatch Logs payload: logEvents is not a list", record_id=origin), b"", origin)
                return
            for index, event in enumerate(events):
                yield from self._text(_dig(event, "message"), f"{origin}>cwl#{index}", level)
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
                yield from self._text(_dig(message, "Body"), f"{origin}>sqs#{index}", level)
            return
        if isinstance(obj.get("records"), list) and "invocationId" in obj:  # Firehose transformation
            for index, record in enumerate(obj["records"]):
                yield from self._b64(_dig(record, "data"), f"{origin}>firehose#{index}", level)
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
            yield from self._b64(_dig(item, "kinesis", "data"), origin + ">kinesis", level)
        elif source == "aws:sns":
            yield from self._text(_dig(item, "Sns", "Message"), origin + ">sns", level)
        elif source == "aws:s3":
            bucket, key = _dig(item, "s3", "bucket", "name"), _dig(item, "s3", "object", "key")
            yield from self._s3(bucket, key, origin, level, quoted=True)
        else:
            yield from self._object(item, origin, level)

    def _s3(self, bucket: Any, key: Any, origin: str, level: int, *, quoted: bool) -> Iterator[Item]:
        if not bucket or not key:
            yield self._fail(DecodeError("S3 reference without bucket or key", record_id=origin), b"", origin)
            return
        if isinstance(bucket, _Malformed) or isinstance(key, _Malformed):
            part = bucket if isinstance(bucket, _Malformed) else key
            yield self._fail(DecodeError(f"S3 reference: {part.path} is not an object", record_id=origin), b"", origin)
            return
        if not isinstance(bucket, str) or not isinstance(key, str):
            yield self._fail(DecodeError("S3 reference whose bucket or key is not a string", record_id=origin), b"", origin)
            return
        key = unquote_plus(key) if quoted else key
        try:
            too_long = len(key.encode("utf-8")) > _S3_KEY_MAX_BYTES
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape: no S3 key can hold it
            too_long = True
        if too_long:
            yield self._fail(DecodeError(f"S3 reference to s3://{bucket}/{key[:80]!r}: not an S3 key", record_id=origin), b"", origin)
            return
        # Checked before anything is fetched: the reason names the object, the letter holds none of it.
        refusal = location_problem(bucket, key) if self.s3_trust is None else self.s3_trust.refusal(bucket, key)
        if refusal is not None:
            # Named by where the notice was found: the refused bucket and key (attacker's text,
            # perhaps "../") are only in the reason, shown safely.
            yield self._fail(DecodeError(refusal, record_id=origin), b"", origin)
            return
        where = f"{origin}>s3://{bucket}/{key}"
        if self.s3 is None:
            yield self._fail(DecodeError(f"s3://{bucket}/{key}: reading S3 objects needs S3 access (none configured)", record_id=where), b"", where)
            return
        try:
            response = self.s3.get_object(Bucket=str(bucket), Key=key)
            size = int(response.get("ContentLength") or 0)
            if size > STREAM_OVER_BYTES:  # inflated and split as it arrives: memory stays bounded
                yield from self.decode_stream(_reading(response["Body"], where), origin=where)
                return
            data = response["Body"].read(self.limits.max_decompressed_bytes + 1)
        except DecodeError as exc:
            yield self._fail(exc, b"", where)
            return
        except SourceError:
            raise
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in PERMANENT_S3_ERRORS:
                yield self._fail(DecodeError(f"cannot read s3://{bucket}/{key}: {exc}", record_id=where), b"", where)
                return
            # Throttling, 5xx, connection trouble: the message must come back later, not be dead-lettered.
            raise SourceError(f"reading s3://{bucket}/{key} failed, will retry: {exc}", record_id=where) from exc
        yield from self._bytes(data, where, level + 1)


def _reading(body: Any, where: str) -> Iterator[bytes]:
    """An S3 body in chunks; a connection lost mid-object is a retry of the message, not a letter."""
    try:
        yield from body.iter_chunks(STREAM_CHUNK)
    except Exception as exc:
        raise SourceError(f"reading {where} failed mid-object, will retry: {exc}", record_id=where) from exc
