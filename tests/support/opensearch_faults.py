"""An HTTP proxy in front of the real OpenSearch node that injects bulk rejections (HTTP 429).

A real node under test load never rejects, so the sink's hardest path — the cluster's write
thread pool full, ``es_rejected_execution_exception`` — would go untested. This proxy forwards
every request to the real node unchanged (it never answers an OpenSearch request itself), except
for the two shapes of rejection it is told to inject into ``POST …/_bulk``:

* **whole request**: a share of bulk requests is answered HTTP 429 with the body OpenSearch sends
  when its coordinating stage rejects (``{"error": {"type": "es_rejected_execution_exception",
  …}, "status": 429}``); the request never reaches the node;
* **per item**: in a share of the other bulk requests, some items are taken out before the
  request is forwarded, and the node's (real) answer gets a ``status: 429`` item with an
  ``es_rejected_execution_exception`` error in their place, ``errors: true`` — as a node whose
  write queue on one shard is full answers.

The request body is inflated when the client sent it gzip-compressed (the sink does) and forwarded
plain; ``Accept-Encoding`` is dropped so that the answer can be read and merged. Every bulk
request is recorded (which items were written by the node, which rejected), so a test can count
writes and rejections from the outside.
"""

from __future__ import annotations

import gzip
import http.client
import json
import random
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.proxyserver import ProxyServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade",
              "content-encoding", "accept-encoding"}
REJECTED_TYPE = "es_rejected_execution_exception"
#: The reason a real node gives (thread pool and queue sizes of a small node).
REJECTED_REASON = ("rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
                   "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1024, max_coordinating_and_primary_bytes=1024]")


@dataclass
class BulkFaults:
    """What to inject; change it while the proxy runs (under ``OpenSearchFaultProxy.lock``)."""

    reject_request_fraction: float = 0.0  # whole bulk requests answered 429
    reject_item_fraction: float = 0.0  # of the other requests, items answered 429 inside a 200
    seed: int = 10


@dataclass(frozen=True, slots=True)
class BulkItem:
    op: str
    index: str
    id: str
    status: int  # what the client was told for this item
    written: bool  # the node wrote it (status < 300 from the node itself)


@dataclass(frozen=True, slots=True)
class BulkRequest:
    answer: str  # "forwarded" | "rejected" (the whole request, 429)
    items: tuple[BulkItem, ...] = field(default_factory=tuple)


def _pairs(lines: list[bytes]) -> list[tuple[dict[str, Any], bytes | None]]:
    """The bulk body's (action, source line) pairs; ``delete`` has no source line."""
    out: list[tuple[dict[str, Any], bytes | None]] = []
    i = 0
    while i < len(lines):
        action = json.loads(lines[i])
        op = next(iter(action))
        source = lines[i + 1] if op != "delete" else None
        out.append((action, source))
        i += 1 if op == "delete" else 2
    return out


class OpenSearchFaultProxy(ProxyServer):
    """``with OpenSearchFaultProxy(node_url, BulkFaults(...)) as proxy:`` — point the sink at ``proxy.url``."""

    thread_name = "os-faultproxy"
    protocol_version = "HTTP/1.1"

    def __init__(self, upstream: str, faults: BulkFaults | None = None, *, port: int = 0) -> None:
        """``port``: where to listen (0: any free port); a fixed one lets a test start the proxy
        after the connector, which meanwhile finds OpenSearch down (connection refused)."""
        self.upstream = urlsplit(upstream)
        self.port = port
        self.faults = faults or BulkFaults()
        self.lock = threading.Lock()
        self.bulks: list[BulkRequest] = []
        self._rng = random.Random(self.faults.seed)

    # -- records -------------------------------------------------------------------------
    def items(self) -> list[BulkItem]:
        with self.lock:
            return [item for bulk in self.bulks for item in bulk.items]

    def rejected(self) -> tuple[int, int]:
        """(whole requests answered 429, items answered 429 inside a 200)."""
        with self.lock:
            requests = sum(1 for b in self.bulks if b.answer == "rejected")
            items = sum(1 for b in self.bulks if b.answer == "forwarded" for i in b.items if i.status == 429 and not i.written)
        return requests, items

    # -- the work ------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = self._read_body(handler)
        if handler.headers.get("Content-Encoding", "").lower() == "gzip" and body:
            body = gzip.decompress(body)
        path = handler.path.split("?", 1)[0]
        if handler.command in ("POST", "PUT") and path.rstrip("/").endswith("/_bulk"):
            self._bulk(handler, body)
            return
        status, headers, payload = self._forward(handler, body)
        self._send(handler, status, headers, payload)

    def _bulk(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        pairs = _pairs([line for line in body.split(b"\n") if line.strip()])
        with self.lock:
            whole = self._rng.random() < self.faults.reject_request_fraction
            reject = [not whole and self._rng.random() < self.faults.reject_item_fraction for _ in pairs]
        if whole:
            with self.lock:
                self.bulks.append(BulkRequest("rejected", tuple(
                    BulkItem(next(iter(a)), str(a[next(iter(a))].get("_index", "")), str(a[next(iter(a))].get("_id", "")), 429, False)
                    for a, _ in pairs)))
            error = {"type": REJECTED_TYPE, "reason": REJECTED_REASON}
            doc = {"error": {"root_cause": [error], **error}, "status": 429}
            self._send(handler, 429, [("Content-Type", "application/json; charset=UTF-8")], json.dumps(doc).encode())
            return
        kept = [pair for pair, out in zip(pairs, reject, strict=True) if not out]
        node_items: list[dict[str, Any]] = []
        took, status, headers = 0, 200, [("Content-Type", "application/json; charset=UTF-8")]
        if kept:
            forwarded = b"".join(json.dumps(a).encode() + b"\n" + (s + b"\n" if s is not None else b"") for a, s in kept)
            status, headers, payload = self._forward(handler, forwarded)
            if status != 200:  # the node itself refused the request: pass its answer on as it is
                self._send(handler, status, headers, payload)
                return
            answer = json.loads(payload)
            node_items, took = list(answer.get("items", [])), int(answer.get("took", 0))
        merged: list[dict[str, Any]] = []
        seen: list[BulkItem] = []
        from_node = iter(node_items)
        for (action, _), out in zip(pairs, reject, strict=True):
            op = next(iter(action))
            meta = action[op]
            if out:
                item = {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 429,
                        "error": {"type": REJECTED_TYPE, "reason": REJECTED_REASON}}
                merged.append({op: item})
                seen.append(BulkItem(op, str(meta.get("_index", "")), str(meta.get("_id", "")), 429, False))
                continue
            got = next(from_node)
            merged.append(got)
            result = next(iter(got.values()))
            code = int(result.get("status", 0))
            seen.append(BulkItem(op, str(result.get("_index", "")), str(result.get("_id", "")), code, code < 300))
        with self.lock:
            self.bulks.append(BulkRequest("forwarded", tuple(seen)))
        errors = any("error" in next(iter(m.values())) for m in merged)
        doc = {"took": took, "errors": errors, "items": merged}
        self._send(handler, 200, headers, json.dumps(doc).encode())

    @staticmethod
    def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
        if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1", self.upstream.port or 80, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(handler.command, handler.path, body=body if body or handler.command != "GET" else None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            return response.status, [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP], payload
        finally:
            conn.close()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
