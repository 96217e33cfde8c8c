"""A fault-injecting HTTP proxy in front of the moto server: the real source of throttling.

moto never throttles and never answers ``FailedFindings`` for a well-formed finding, so the
Security Hub sink's hardest paths would go untested. This proxy sits on 127.0.0.1 between boto3
and moto (point ``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_SECURITYHUB`` at it), forwards every
request, and for ``POST /findings/import`` (BatchImportFindings) can:

* answer a fraction of calls with HTTP 429 and the body/header the real rest-json service sends
  (botocore reads the code from ``x-amzn-ErrorType``, else the body's ``code``; ``__type`` is
  there too as other AWS front ends send it) — the request never reaches moto;
* answer a fraction with HTTP 500 ``InternalException``;
* reject findings whose ``Id`` contains a marker: they are removed from the request moto sees
  and added to the answer's ``FailedFindings`` with ``ErrorCode`` "InvalidInput" (so moto really
  does not hold them, as with the real service);
* fail findings whose ``Id`` contains another marker *once* with a retryable ``InternalFailure``.

It records every request it saw (monotonic time, operation, access key id and region from the
SigV4 ``Authorization`` header, body size, number of findings) so that tests can check the
request rate and the batch limits from the outside, without timing the code under test.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.proxyserver import ProxyServer

IMPORT_PATH = "/findings/import"
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}


@dataclass(frozen=True, slots=True)
class SeenRequest:
    at: float  # time.monotonic() when the request arrived
    method: str
    path: str
    service: str
    region: str
    access_key_id: str
    body_bytes: int
    findings: int  # for BatchImportFindings: how many findings the request carried
    finding_ids: tuple[str, ...]
    answer: str  # "forwarded" | "throttled" | "server-error"

    @property
    def is_import(self) -> bool:
        return self.method == "POST" and self.path.split("?", 1)[0] == IMPORT_PATH


@dataclass
class Faults:
    """What to inject; change it while the proxy runs (under ``FaultProxy.lock``)."""

    throttle_fraction: float = 0.0
    throttle_code: str = "ThrottlingException"
    server_error_fraction: float = 0.0
    reject_marker: str = ""
    reject_code: str = "InvalidInput"
    transient_marker: str = ""
    transient_code: str = "InternalFailure"
    seed: int = 4
    failed_once: set[str] = field(default_factory=set)
    #: JSON-protocol operations (``X-Amz-Target``, e.g. "Kinesis_20131202.GetRecords") to answer
    #: with (HTTP status, error code) the next N times: {target: [status, code, remaining]}.
    fail_targets: dict[str, list[Any]] = field(default_factory=dict)
    #: Request paths starting with a prefix (S3 path-style, e.g. "/bucket/") to answer with
    #: (HTTP status, error code) the next N times, as an S3 XML error: {prefix: [status, code, remaining]}.
    fail_paths: dict[str, list[Any]] = field(default_factory=dict)


class FaultProxy(ProxyServer):
    """Start with ``FaultProxy(upstream_url).start()``; ``url`` is where clients should go."""

    thread_name = "faultproxy"

    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.faults = faults or Faults()
        self.lock = threading.Lock()
        self.requests: list[SeenRequest] = []
        self._rng = random.Random(self.faults.seed)

    # -- records -------------------------------------------------------------------------
    def imports(self) -> list[SeenRequest]:
        with self.lock:
            return [r for r in self.requests if r.is_import]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    # -- the work ------------------------------------------------------------------------
    def _decide(self) -> str:
        with self.lock:
            roll = self._rng.random()
            if roll < self.faults.throttle_fraction:
                return "throttled"
            if roll < self.faults.throttle_fraction + self.faults.server_error_fraction:
                return "server-error"
            return "forwarded"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = self._read_body(handler)
        auth = handler.headers.get("Authorization", "")
        match = CREDENTIAL.search(auth)
        key_id, region, service = (match.group(1), match.group(2), match.group(3)) if match else ("", "", "")
        is_import = handler.command == "POST" and handler.path.split("?", 1)[0] == IMPORT_PATH
        findings: list[dict[str, Any]] = []
        if is_import:
            findings = list(json.loads(body or b"{}").get("Findings", []))
        answer = self._decide() if is_import else "forwarded"
        target = handler.headers.get("X-Amz-Target", "")
        with self.lock:
            planned = self.faults.fail_targets.get(target)
            if planned and planned[2] > 0:
                planned[2] -= 1
                answer = f"failed:{planned[1]}"
            for prefix, rule in self.faults.fail_paths.items():
                if handler.path.startswith(prefix) and rule[2] > 0:
                    rule[2] -= 1
                    self.requests.append(SeenRequest(time.monotonic(), handler.command, handler.path, service, region,
                                                     key_id, len(body), 0, (), f"failed:{rule[1]}"))
                    break
            else:
                rule = None
        if rule is not None:
            xml = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{rule[1]}</Code><Message>injected {rule[1]}</Message></Error>"
            self._send(handler, int(rule[0]), [("Content-Type", "application/xml")], xml.encode())
            return
        if answer.startswith("failed:"):
            code = answer.split(":", 1)[1]
            self.requests.append(SeenRequest(time.monotonic(), handler.command, handler.path, service, region, key_id, len(body), 0, (), answer))
            self._reply(handler, int(planned[0]), {"__type": code, "message": f"injected {code}"}, {"x-amzn-ErrorType": code})
            return
        with self.lock:
            self.requests.append(
                SeenRequest(
                    time.monotonic(), handler.command, handler.path, service, region, key_id, len(body),
                    len(findings), tuple(str(f.get("Id", "")) for f in findings), answer,
                )
            )
        if answer == "throttled":
            code = self.faults.throttle_code
            self._reply(handler, 429, {"__type": code, "code": code, "message": "Rate exceeded"}, {"x-amzn-ErrorType": code})
            return
        if answer == "server-error":
            code = "InternalException"
            self._reply(handler, 500, {"__type": code, "code": code, "message": "Internal error"}, {"x-amzn-ErrorType": code})
            return
        failed: list[dict[str, str]] = []
        if is_import:
            kept = []
            for finding in findings:
                fid = str(finding.get("Id", ""))
                failure = self._failure_for(fid)
                if failure is None:
                    kept.append(finding)
                else:
                    failed.append({"Id": fid, "ErrorCode": failure[0], "ErrorMessage": failure[1]})
            if failed:
                body = json.dumps({"Findings": kept}).encode()
        status, headers, payload = self._forward(handler, body)
        if failed and status == 200:
            answer_doc = json.loads(payload or b"{}")
            answer_doc["FailedCount"] = int(answer_doc.get("FailedCount", 0)) + len(failed)
            answer_doc["FailedFindings"] = list(answer_doc.get("FailedFindings", [])) + failed
            payload = json.dumps(answer_doc).encode()
        self._send(handler, status, headers, payload)

    @staticmethod
    def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
        """The request body, de-chunked if sent with ``Transfer-Encoding: chunked``."""
        if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _failure_for(self, finding_id: str) -> tuple[str, str] | None:
        faults = self.faults
        if faults.reject_marker and faults.reject_marker in finding_id:
            return faults.reject_code, "Finding rejected by the fault proxy: invalid field value"
        if faults.transient_marker and faults.transient_marker in finding_id:
            with self.lock:
                if finding_id not in faults.failed_once:
                    faults.failed_once.add(finding_id)
                    return faults.transient_code, "Internal failure injected once by the fault proxy"
        return None

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1", self.upstream.port or 80, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            skip = HOP_BY_HOP | {"server", "date"}  # send_response adds its own
            return response.status, [(k, v) for k, v in response.getheaders() if k.lower() not in skip], payload
        finally:
            conn.close()

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, doc: dict[str, Any], extra: dict[str, str]) -> None:
        headers = [("Content-Type", "application/json"), *extra.items()]
        self._send(handler, status, headers, json.dumps(doc).encode())

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)


def max_in_window(times: list[float], window: float) -> int:
    """The most requests that fall in any interval ``[t, t + window]``."""
    stamps = sorted(times)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best
