"""``/healthz``, ``/readyz`` and ``/metrics`` on one small threaded HTTP server.

prometheus_client's own server answers every path with metrics, which would make a liveness
probe pass on a wedged process; so the paths are routed here. ``/healthz`` checks that the run
loop turned recently; ``/readyz`` checks the source and sinks (cached for a few seconds, so a
probe storm does not become a storm of AWS calls) and fails while draining. ``/metrics`` is
``connector.metrics.exposition()``: importing that module is what switches off the ``*_created``
series, so the body never depends on which module happened to import it first.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connector import metrics

#: The loop turns at least every receive wait (~1 s) unless a batch blocks it; allow a lot more.
LIVENESS_SECONDS = 120.0
READY_CACHE_SECONDS = 5.0


class _Handler(BaseHTTPRequestHandler):
    service: Any = None
    _ready_cache: tuple[float, bool, str] = (0.0, False, "not checked")
    _ready_lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode())

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            age = time.monotonic() - self.service.runner.last_loop_at
            alive = age < LIVENESS_SECONDS
            self._json(200 if alive else 503, {"status": "ok" if alive else "stalled", "loop_age_seconds": round(age, 1)})
        elif path == "/readyz":
            ok, reason = self._readiness()
            self._json(200 if ok else 503, {"status": "ready" if ok else "not ready", "reason": reason})
        elif path == "/metrics":
            self._send(200, *metrics.exposition())
        else:
            self._json(404, {"error": f"no such path {path}; try /healthz, /readyz, /metrics"})

    def _readiness(self) -> tuple[bool, str]:
        if self.service.runner.draining or self.service.runner.stop.is_set():
            return False, "draining"
        cls = type(self)
        with cls._ready_lock:
            checked_at, ok, reason = cls._ready_cache
            if time.monotonic() - checked_at > READY_CACHE_SECONDS:
                ok, reason = self.service.ready()
                cls._ready_cache = (time.monotonic(), ok, reason)
        return ok, reason


def start_http_server(service: Any) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"service": service, "_ready_cache": (0.0, False, "not checked")})
    server = ThreadingHTTPServer((service.settings.http_host, service.settings.http_port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server
