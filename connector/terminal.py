"""Which bodies are the record itself, and which may hide one.

A body that is one CloudTrail record or an EventBridge CloudTrail event is terminal: whatever it
holds is that record, never a further envelope, so the decoder's name test alone decides whether
it is parsed. Any other body is parsed if a target name occurs in it, or if it carries a marker of
an envelope whose records are not in its bytes (base64 data, an S3 reference).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from connector.record_split import CLOUDTRAIL_RECORD_HEAD
from connector.select import NameScan

#: Markers of envelopes whose records may not be in the bytes themselves (S3 references, base64
#: strings), also JSON-escaped inside another envelope's string. Not ``detail``: an EventBridge
#: CloudTrail event carries its record as plain JSON, and every EventBridge body has one.
INDIRECT = re.compile(rb'\\?"(?:s3|s3Bucket|s3ObjectKey|data|awslogs|kinesis|Message|Messages|body|Body|Sns|records)\\?"|Object Created')
#: Bodies that are one CloudTrail record (versions 1.x) or an EventBridge CloudTrail event: whatever
#: they contain is the record itself, never a further envelope, so the name test alone decides.
TERMINAL_HEAD = re.compile(rb'\{\s*"eventVersion"\s*:\s*"1\.|\{[^{}]{0,300}?"detail-type"\s*:\s*"AWS API Call via CloudTrail"')
EVENTBRIDGE_CLOUDTRAIL = b'"detail-type":"AWS API Call via CloudTrail"'
EVENTBRIDGE_HEAD = b'{"version":"0"'
#: An EventBridge event exactly as EventBridge writes one: its id (a UUID) then its detail-type,
#: tested at a fixed offset, which costs less than the search above per message.
EVENTBRIDGE_ID = EVENTBRIDGE_HEAD + b',"id":"'
EVENTBRIDGE_AFTER_ID = b'",' + EVENTBRIDGE_CLOUDTRAIL
EVENTBRIDGE_AFTER_AT = len(EVENTBRIDGE_ID) + 36


def is_terminal(data: Any) -> bool:
    """``TERMINAL_HEAD``, with the compact forms AWS writes tested first by plain byte compares."""
    head = data if isinstance(data, (bytes, bytearray)) else bytes(memoryview(data)[:200])
    if head.startswith(CLOUDTRAIL_RECORD_HEAD):
        return True
    if head.startswith(EVENTBRIDGE_HEAD) and head.find(EVENTBRIDGE_CLOUDTRAIL, 0, 200) > 0:
        return True
    return TERMINAL_HEAD.match(head) is not None


def may_hide(data: Any) -> bool:
    """Could ``data`` hold a target whose name is not in its bytes (base64, an S3 reference)?"""
    return not is_terminal(data) and INDIRECT.search(data) is not None


def record_by_record(raws: Sequence[Any], prefilter: NameScan) -> Iterator[tuple[int, bool]]:
    """``(index, is_hit)`` of the records to parse when no layout is proved: each in which a name
    occurs, and (``is_hit`` False) each that is not terminal and so may be an envelope."""
    for index, raw in enumerate(raws):
        if prefilter.search(raw) is not None:
            yield index, True
        elif not is_terminal(raw):
            yield index, False


def looks_like_lines(data: bytes | bytearray) -> bool:
    """JSON Lines, not one pretty-printed document: the first line is a whole object."""
    first = data.split(b"\n", 1)[0].strip()
    return b"\n" in data and len(first) > 1 and first[:1] + first[-1:] in (b"{}", b"[]")
