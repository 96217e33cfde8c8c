"""Bounded gzip inflation, whole or streamed, through the fastest zlib at hand.

python-isal inflates about twice as fast as the standard library's zlib (bench/: ``python -m
bench``), and every byte of an S3 log file or CloudWatch Logs payload passes through here, so it
is used when installed; zlib is the fallback and behaves the same.

Input is fed in fixed steps and output is taken in fixed steps, so neither a large file nor a
bomb costs more than a step of memory per call: feeding the whole remaining input at every step
re-copied it each time (66 s for one 200 MB file, against 3.6 s in steps).

Two limits, because a bomb and a large honest file differ in ratio, not in size:
- ``limit``: output beyond this many bytes is suspicious ...
- ``ratio``: ... and is rejected only if it is also more than ``ratio`` times the input read so
  far. CloudTrail log files inflate about 10:1; a gzip bomb 1000:1. ``ratio=0`` makes ``limit``
  absolute, for callers that keep the whole output in memory.
"""

from __future__ import annotations

import types
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from connector.errors import DecodeError, LimitExceeded

_backend: types.ModuleType
try:
    from isal import isal_zlib

    _backend = isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the portable fallback
    _backend = zlib
ERRORS: tuple[type[Exception], ...] = (_backend.error, zlib.error)

GZIP_MAGIC = b"\x1f\x8b"
#: Compressed bytes handed to the inflater per call.
INPUT_STEP = 256 * 1024
#: Inflated bytes taken per call (zlib sizes its output buffer by it, so it is also a memory cap).
OUTPUT_STEP = 1 << 20
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def _steps(chunks: Iterable[Any]) -> Iterator[memoryview]:
    """Each chunk as views of at most ``INPUT_STEP`` bytes: the unconsumed input that the inflater
    hands back (a copy) after each output step is then at most a step, never the rest of a chunk."""
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), INPUT_STEP):
            yield view[start : start + INPUT_STEP]


def inflate(chunks: Iterable[Any], *, limit: int, ratio: int, origin: str) -> Iterator[bytes]:
    """Inflate (multi-member) gzip arriving in ``chunks``; yield the output in pieces.

    Raises ``DecodeError`` for corrupt or truncated data and ``LimitExceeded`` for a bomb (see the
    module docstring). Trailing bytes after the last member that do not start another member are
    ignored, as gzip(1) does.
    """
    inflater: Any = None
    read = produced = 0
    carry = b""
    for chunk in _steps(chunks):
        read += len(chunk)
        data: Any = carry + bytes(chunk) if carry else chunk
        carry = b""
        while len(data):
            if inflater is None:
                if len(data) < 2:
                    carry = bytes(data)  # a member header split across chunks
                    break
                if bytes(data[:2]) != GZIP_MAGIC:
                    return  # trailing garbage after the last member
                inflater = _backend.decompressobj(_GZIP_WBITS)
            try:
                piece = inflater.decompress(data, OUTPUT_STEP)
            except ERRORS as exc:
                raise DecodeError(f"corrupt gzip data: {exc}", record_id=origin) from None
            if piece:
                produced += len(piece)
                if produced > limit and produced > ratio * read:
                    where = f"beyond {limit} bytes" if not ratio else f"beyond {limit} bytes and {ratio}x its compressed size"
                    raise LimitExceeded(f"gzip expands {where} (possible gzip bomb); rejected", record_id=origin)
                yield piece
            if inflater.eof:
                data = inflater.unused_data
                inflater = None
            else:
                data = inflater.unconsumed_tail
    if inflater is not None or carry:
        raise DecodeError("truncated gzip data (stream ended early)", record_id=origin)


def gunzip(data: bytes | bytearray, limit: int, *, origin: str) -> bytes:
    """The whole output in memory, at most ``limit`` bytes of it (an absolute bound).

    One inflater call per member with ``limit + 1`` as its output bound: the output buffer
    grows with what is produced (never allocated at the bound), so a bomb still costs at most
    ``limit`` bytes, and an honest payload is inflated at the library's full speed, without the
    pieces and the join of the stepped path (a CloudWatch Logs payload or log file is inflated
    whole anyway).
    """
    out: list[bytes] = []
    produced = 0
    rest: Any = data
    while True:
        inflater = _backend.decompressobj(_GZIP_WBITS)
        try:
            piece = inflater.decompress(rest, limit + 1 - produced)
        except ERRORS as exc:
            raise DecodeError(f"corrupt gzip data: {exc}", record_id=origin) from None
        produced += len(piece)
        if produced > limit or (not inflater.eof and inflater.unconsumed_tail):
            raise LimitExceeded(f"gzip expands beyond {limit} bytes (possible gzip bomb); rejected", record_id=origin)
        if not inflater.eof:
            raise DecodeError("truncated gzip data (stream ended early)", record_id=origin)
        out.append(piece)
        rest = inflater.unused_data
        if len(rest) < 2:
            if rest:
                raise DecodeError("truncated gzip data (stream ended early)", record_id=origin)
            break
        if rest[:2] != GZIP_MAGIC:
            break  # trailing garbage after the last member, ignored as gzip(1) does
    return out[0] if len(out) == 1 else b"".join(out)
