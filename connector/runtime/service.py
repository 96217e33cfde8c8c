"""The service: settings → source, pipeline, runner, HTTP endpoints, signal handling.

SIGTERM/SIGINT set the runner's stop event: polling stops, in-flight batches finish and are
acknowledged, and the process exits 0 — all within ``grace_seconds``. If the grace period runs
out first, the process exits 1 without acknowledging what is unfinished (the source redelivers it).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from connector import __version__, metrics
from connector.build import build_pipeline, build_runner, build_source
from connector.config import Settings
from connector.pipeline import Pipeline
from connector.runtime import logs
from connector.runtime.runner import Runner

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    runner: Runner
    pipeline: Pipeline
    http: Any = None

    def ready(self) -> tuple[bool, str]:
        """Source, its object reads, sinks and dead-letter destination working, not draining (for /readyz)."""
        if self.runner.draining or self.runner.stop.is_set():
            return False, "draining"
        try:
            self.runner.source.check()
        except Exception as exc:
            return False, f"source {self.runner.source.name}: {exc}"
        reads = self.pipeline.reads.trouble()
        if reads:
            return False, f"source {self.runner.source.name}: {reads}"
        for sink, breaker in zip(self.pipeline.sinks, self.pipeline.breakers, strict=True):
            try:
                sink.check()
            except Exception as exc:
                return False, f"sink {sink.name}: {exc}"
            # Answering its check is not enough: a sink whose breaker is open, or that refuses
            # every document (OpenSearch 429), delivers nothing.
            trouble = breaker.trouble()
            if trouble:
                return False, f"sink {sink.name}: {trouble}"
        try:
            self.pipeline.dead_letters.check()
        except Exception as exc:
            return False, f"dead-letter destination: {exc}"
        return True, "ok"


def build(settings: Settings, *, once: bool = False, stop: threading.Event | None = None) -> Service:
    """The service around the composition root's source, pipeline and runner."""
    source = build_source(settings)
    pipeline = build_pipeline(settings)
    return Service(settings, build_runner(settings, source, pipeline, once=once, stop=stop), pipeline)


def _install_signals(service: Service) -> None:
    grace = service.settings.grace_seconds

    def on_signal(signum: int, _frame: Any) -> None:
        if service.runner.stop.is_set():
            return
        log.info("signal %s: draining (grace %.0fs)", signal.Signals(signum).name, grace)
        service.runner.stop.set()

        def expire() -> None:
            log.error("grace period of %.0fs ran out; exiting with work unacknowledged", grace)
            logging.shutdown()
            os._exit(1)

        timer = threading.Timer(grace, expire)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def startup_fields(settings: Settings, *, once: bool = False) -> dict[str, Any]:
    """What the start-up line says: version, source, sinks, port, accounts mode."""
    sh = settings.securityhub
    if "securityhub" not in settings.sinks:
        accounts = "n/a"
    elif sh.assume_role_arn_template:
        accounts = f"member accounts through {sh.assume_role_arn_template}"
    else:
        accounts = "own account" + (f" and {', '.join(sh.local_accounts)}" if sh.local_accounts else "") + \
            " (findings of other accounts are dead-lettered: set securityhub.assume_role_arn_template)"
    where = {"sqs": settings.sqs.queue_url, "kinesis": settings.kinesis.stream_name}.get(settings.source, "")
    return {
        "version": __version__, "source": settings.source, "source_from": where, "sinks": list(settings.sinks),
        "http_port": settings.http_port, "accounts_mode": accounts, "region": os.environ.get("AWS_DEFAULT_REGION", ""),
        "once": once, "dead_letter": settings.dead_letter or "none",
    }


def run(settings: Settings, *, once: bool = False, serve_http: bool = True) -> int:
    fields = startup_fields(settings, once=once)
    log.info("connector %s starting: source %s, sinks %s, port %s", __version__, settings.source,
             ",".join(settings.sinks), settings.http_port, extra=fields)
    metrics.BUILD_INFO.labels(__version__, settings.source, ",".join(settings.sinks)).set(1)
    service = build(settings, once=once)
    if threading.current_thread() is threading.main_thread():
        _install_signals(service)
    if serve_http and settings.http_port:
        try:
            from connector.runtime.http import start_http_server

            service.http = start_http_server(service)
        except OSError as exc:
            log.error("cannot serve HTTP on %s:%s: %s", settings.http_host, settings.http_port, exc)
            return 2
    try:
        code = service.runner.run()
    finally:
        try:
            service.runner.source.close()
        finally:
            service.pipeline.close()
            if service.http is not None:
                service.http.shutdown()
    log.info("connector run finished", extra={"received": service.runner.received, "acked": service.runner.acked,
                                              "released": service.runner.released, "exit_code": code})
    logs.flush()
    return code
