"""Splitting record containers (CloudTrail log files, CloudWatch Logs payloads) into the raw bytes
of each record, without building a dict for any of them.

Of a real trail only about one record in a hundred is a target, so parsing every record into
Python objects (what ``json.loads`` of a log file does) is the cost to avoid. msgspec's ``Raw``
validates the JSON structure and returns each array element as a view of its bytes; the
decoder then runs the name pre-filter per record and parses only the hits.

Large log files are split as they inflate (``stream_log_file``), so memory does not grow with
the file. A window is cut at a candidate record boundary ``},{"`` (a ``{"`` cannot occur inside a
JSON string, where quotes are escaped) and accepted only if the bytes up to it parse as a
complete array of values: a cut inside a record's nested structure leaves brackets open and is
refused, so a record nested inside another one (say in a failed call's request parameters) can
never be taken for a top-level record.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from collections.abc import Iterable, Iterator, Sequence

import msgspec

from connector.errors import DecodeError, LimitExceeded
from connector.select import NameScan


class _LogFile(msgspec.Struct):
    Records: list[msgspec.Raw]


class _CwlPayload(msgspec.Struct):
    messageType: str
    logEvents: list[msgspec.Raw] = []


_LOG_FILE = msgspec.json.Decoder(_LogFile)
_CWL = msgspec.json.Decoder(_CwlPayload)
_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)

LOG_FILE_HEAD = re.compile(rb'\{\s*"Records"\s*:\s*\[')
#: Exactly how CloudTrail writes a log file; when a document has this head and no other bytes
#: than the records and single commas, each record's offset follows from the lengths.
COMPACT_HEAD = b'{"Records":['
CWL_HEAD = re.compile(rb'\{\s*"messageType"\s*:')
#: Where a compact CloudWatch Logs payload's events start (the array is its last member).
CWL_EVENTS_KEY = b'"logEvents":['
#: How each log event starts in a compact CloudWatch Logs payload, and the boundary between two.
#: Both hold an unescaped quote right after a brace, which no JSON string can: they are structure.
CWL_EVENT_HEAD = b'{"id":"'
_CWL_EVENT_CUT = b'},{"id":"'
#: How every CloudTrail record (versions 1.x) starts in a log file CloudTrail wrote.
CLOUDTRAIL_RECORD_HEAD = b'{"eventVersion":"1.'

_CANDIDATES = (b'},{"eventVersion":', b'},{"')
_START = operator.itemgetter(1)
_BRACKETS = re.compile(rb"[\[\]{}]")
_TAIL = re.compile(rb'\]\s*\}\s*$')


def log_file_records(doc: bytes | bytearray) -> list[msgspec.Raw] | None:
    """The records of a ``{"Records": [...]}`` document, or None if it is not one (or invalid)."""
    try:
        return _LOG_FILE.decode(doc).Records
    except _ERRORS:
        return None


def cwl_events(doc: bytes | bytearray) -> tuple[str, list[msgspec.Raw]] | None:
    """(messageType, raw log events) of a CloudWatch Logs payload, or None."""
    try:
        payload = _CWL.decode(doc)
    except _ERRORS:
        return None
    return payload.messageType, payload.logEvents


def cwl_hits(doc: bytes | bytearray, pattern: NameScan) -> tuple[str, int, list[tuple[int, bytes]]] | None:
    """``(messageType, event count, [(index, event bytes)])`` of a compact CloudWatch Logs payload
    (``logEvents`` last, each event opening with its ``id``, as CloudWatch Logs writes them), with
    only the events in which ``pattern`` occurs cut out; None for any other layout (the caller
    then splits with ``cwl_events``).

    No object is built for the other events: every byte a sender controls is inside a ``message``
    string, where a quote is escaped, so the event heads and boundaries found by byte search are
    the payload's own structure. Each event cut out is still parsed whole by the caller; a cut
    that went wrong fails that parse (a letter), it cannot make up a record.
    """
    key = doc.find(CWL_EVENTS_KEY)
    if key < 0 or not doc.endswith(b"]}"):
        return None
    first = key + len(CWL_EVENTS_KEY)
    if not doc.startswith(CWL_EVENT_HEAD, first) and len(doc) != first + 2:
        return None
    try:
        message_type = _CWL.decode(bytes(doc[:key]) + b'"logEvents":[]}').messageType
    except _ERRORS:
        return None
    view = memoryview(doc)[first:]
    heads = pattern.marker_scan(CWL_EVENT_HEAD)(view)  # (0, start, end) from ``first``: counted, not listed
    if (not heads or heads[0][1]) and len(view) != 2:
        return None
    hits: list[tuple[int, bytes]] = []
    last = -1
    for position in pattern.positions(view):
        index = bisect.bisect_right(heads, position, key=_START) - 1
        if index < 0:
            return None
        if index == last:
            continue  # a second name in the same event
        last = index
        end = heads[index + 1][1] - 1 if index + 1 < len(heads) else len(view) - 2
        if bytes(view[end - 1 : end + 1]) != (b"}," if index + 1 < len(heads) else b"}]"):
            return None  # not the flat layout described above: split by the parser instead
        hits.append((index, bytes(view[heads[index][1] : end])))
    return message_type, len(heads), hits


#: Where one record ends and the next begins in a log file CloudTrail wrote.
RECORD_CUT = b"}," + CLOUDTRAIL_RECORD_HEAD
_RAW_VALUE = msgspec.json.Decoder(msgspec.Raw)
#: When more than one record in this many holds a ``[`` byte, checking them one by one costs more
#: than the one parser pass over the whole file that the caller falls back to.
VERIFY_SHARE = 4
#: The head of a file in which ``[`` bytes are counted first, to leave files with arrays in many
#: records (one or more in most real records) to the parser at once, before any scan.
PROBE_BYTES = 32 << 10


def log_file_hits(doc: bytes | bytearray, pattern: NameScan, positions: list[int]) -> tuple[int, list[tuple[int, bytes]]] | None:
    """``(record count, [(index, record bytes)])`` of a CloudTrail log file as CloudTrail writes it
    (``{"Records":[{"eventVersion":"1.`` ... ``]}``), with only the records in which a target name
    was found (``positions``) cut out; None when the cut is not proved (the caller then splits
    with the parser).

    No parser pass over the whole file: records are cut at each ``},{"eventVersion":"1.`` (one
    marker scan). That is structure (a quote inside a string is escaped) but may sit in a record,
    between look-alikes in an array of its request parameters, so the cut is taken only when no
    cut can be nested, proved thus. Take the first nested cut: the record before it starts at a
    true record head, and the span between the two holds the ``[`` of the look-alike's array (it
    follows ``},``: an array element) and is not one whole value. So it is enough that every span
    holding a ``[`` byte parses as one whole value: checked here, except for the hit spans, which
    the caller parses whole (and falls back if one does not). Most records hold no ``[`` at all.
    A span is otherwise never parsed: a non-CloudTrail entry in it could be hidden (as
    ``select_records`` says), never taken for a record.
    """
    first = len(COMPACT_HEAD)
    if not doc.startswith(COMPACT_HEAD + CLOUDTRAIL_RECORD_HEAD) or not doc.endswith(b"]}"):
        return None
    if doc.find(b"[", first, PROBE_BYTES) >= 0 and doc.count(b"[", first, PROBE_BYTES) * 2 > doc.count(RECORD_CUT, 0, PROBE_BYTES) + 1:
        return None  # arrays in many records (as in most real trails): the parser's one pass costs less
    cuts = pattern.marker_scan(RECORD_CUT)(doc)  # (0, start, end): record k + 1 starts at start + 2
    count = len(cuts) + 1

    def span(index: int) -> tuple[int, int]:
        return (cuts[index - 1][1] + 2 if index else first), (cuts[index][1] + 1 if index < len(cuts) else len(doc) - 2)

    hits: list[int] = []
    for position in positions:
        index = bisect.bisect_right(cuts, position, key=_START)
        if not hits or hits[-1] != index:
            hits.append(index)
    view = memoryview(doc)
    at = doc.find(b"[", first)
    with_brackets: list[int] = []
    while at >= 0:  # one search per span holding a ``[``: the next starts after that span
        index = bisect.bisect_right(cuts, at, key=_START)
        with_brackets.append(index)
        if len(with_brackets) * VERIFY_SHARE > count:
            return None
        at = doc.find(b"[", span(index)[1])
    for index in set(with_brackets).difference(hits):
        try:
            _RAW_VALUE.decode(view[slice(*span(index))])
        except _ERRORS:
            return None
    return count, [(index, bytes(view[slice(*span(index))])) for index in hits]


def select_records(
    doc: bytes | bytearray,
    head: int,
    tail: int,
    raws: Sequence[msgspec.Raw],
    pattern: NameScan,
    terminal: bytes | None = None,
    positions: list[int] | None = None,
    heads: int | None = None,
) -> list[tuple[int, bool]] | None:
    """Which records to parse, from one pass of ``pattern`` over the whole document (or its
    ``positions`` and the count of ``terminal``'s ``heads``, when the caller has scanned already):
    ``(index, is_hit)`` for each record in which the pattern occurs, and (``is_hit`` False) each that does not start with ``terminal``
    and so may be an envelope hiding one.

    Valid only for a compact layout (``head`` bytes, the records separated by single commas,
    ``tail`` bytes): then the lengths give every record's offset, and the total length proves
    the layout. Otherwise None, and the caller tests record by record.
    """
    lengths = list(map(len, raws))
    if head + sum(lengths) + max(len(raws) - 1, 0) + tail != len(doc):
        return None
    if positions is None:
        positions = pattern.positions(doc, head)
    # starts[i]: where record i begins (each record, then its comma).
    starts = list(itertools.accumulate(map((1).__add__, lengths), initial=head))
    hits = {bisect.bisect_right(starts, position) - 1 for position in positions if position >= head}
    selected = [(index, True) for index in hits]
    if terminal is not None:
        if heads is None:
            heads = doc.count(terminal)
        # As many CloudTrail record heads as records: taken as every record starting as CloudTrail
        # writes one, so none is an envelope. (A crafted file could balance a non-CloudTrail entry
        # with a nested head and have that entry skipped unparsed: it could hide, never forge, a
        # record.) Otherwise each record is tested at its own offset, a byte compare.
        if heads != len(raws):
            startswith = doc.startswith
            opens = map(startswith, itertools.repeat(terminal), starts[:-1])
            selected += [(index, False) for index, ok in enumerate(opens) if not ok and index not in hits]
    selected.sort()
    return selected


def cwl_chosen(doc: bytes | bytearray, events: Sequence[msgspec.Raw], pattern: NameScan) -> list[int]:
    """The indexes of the log events of a parsed CloudWatch Logs payload in which ``pattern``
    occurs: one scan of the whole payload when its layout is compact, else event by event."""
    start = doc.find(CWL_EVENTS_KEY)
    known = select_records(doc, start + len(CWL_EVENTS_KEY), 2, events, pattern) if start > 0 and doc.endswith(b"]}") else None
    if known is not None:
        return [index for index, _ in known]
    return [index for index, raw in enumerate(events) if pattern.search(raw) is not None]


def stream_log_file(
    pieces: Iterable[bytes | bytearray], *, window: int, max_record_bytes: int, origin: str, prefix: bytes = b""
) -> Iterator[tuple[bytes, list[msgspec.Raw]]]:
    """Split a log file arriving in ``pieces`` (inflated bytes) into windows of whole records.

    Yields ``(window_bytes, raws)``; ``window_bytes`` is ``[`` + records + ``]`` so that
    ``select_records(window_bytes, 1, 1, raws, ...)`` applies. ``prefix`` is what the caller already read.
    Raises ``DecodeError`` when the bytes are not a log file or are truncated, and
    ``LimitExceeded`` when no record boundary is found within ``max_record_bytes`` beyond a window.
    """
    buffer = bytearray(prefix)
    source = iter(pieces)
    started = False
    exhausted = False
    while True:
        while not exhausted and len(buffer) < window:
            piece = next(source, None)
            if piece is None:
                exhausted = True
            else:
                buffer += piece
        if not started:
            head = LOG_FILE_HEAD.match(buffer)
            if head is None:
                raise DecodeError("streamed object is not a CloudTrail log file", record_id=origin)
            del buffer[: head.end()]
            started = True
        if exhausted:
            tail = _TAIL.search(buffer)
            if tail is None:
                raise DecodeError("truncated log file (no closing ']}')", record_id=origin)
            body = _bracketed(buffer, tail.start())
            try:
                raws = _RAWS.decode(body)
            except _ERRORS as exc:
                raise DecodeError(f"invalid JSON in log file: {str(exc)[:200]}", record_id=origin) from None
            if raws:
                yield body, raws
            return
        cut = _cut(buffer)
        if cut is None:
            if len(buffer) > window + max_record_bytes:
                raise LimitExceeded(f"no record boundary within {max_record_bytes} bytes", record_id=origin)
            piece = next(source, None)  # a record larger than the rest of the window: read on
            if piece is None:
                exhausted = True
            else:
                buffer += piece
            continue
        body, raws = cut
        yield body, raws
        del buffer[: len(body) - 2]  # the records; then the comma after them
        if buffer[:1] == b",":
            del buffer[:1]


def _bracketed(buffer: bytearray, end: int) -> bytes:
    """``[`` + ``buffer[:end]`` + ``]`` in one copy (slicing, ``bytes()`` and ``+`` made three of a
    window); the view is released at once, so the buffer can grow and shrink again."""
    with memoryview(buffer) as view:
        return b"".join((b"[", view[:end], b"]"))


def _cut(buffer: bytearray) -> tuple[bytes, list[msgspec.Raw]] | None:
    """The longest prefix of ``buffer`` ending at a top-level record boundary, as a parsed array."""
    for candidate in _CANDIDATES:  # how CloudTrail starts a record first, then any object boundary
        end = len(buffer)
        for _ in range(4):  # nested boundaries are tried from the end; each failure costs a parse
            at = buffer.rfind(candidate, 0, end)
            if at < 0:
                break
            body = _bracketed(buffer, at + 1)
            try:
                return body, _RAWS.decode(body)
            except _ERRORS:
                end = at
    return None


def json_depth_exceeds(data: bytes | bytearray, max_depth: int) -> bool:
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
