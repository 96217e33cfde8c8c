"""A moto server that handles one request at a time, for DynamoDB tests that race writers.

moto's own server (``python -m moto.server``) is threaded, and its DynamoDB applies two
concurrent writes to one item without isolation: one can erase the other (a lost update that
real DynamoDB, which applies writes to an item one at a time, never has). Serving one request at
a time gives DynamoDB's per-item guarantee back without changing anything else about moto. Use it
as the DynamoDB endpoint only (``AWS_ENDPOINT_URL_DYNAMODB``): SQS long polls would queue behind
each other here.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.moto import MotoServer, free_port

_SERVE = (
    "import sys\n"
    "from werkzeug.serving import run_simple\n"
    "from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n"
    "run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False)\n"
)


@contextmanager
def serial_moto_server(timeout: float = 60.0) -> Iterator[MotoServer]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _SERVE, "127.0.0.1", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = MotoServer(url=f"http://127.0.0.1:{port}", process=process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serial moto server exited with {process.returncode}")
            try:
                urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"serial moto server did not answer on {server.url}") from None
                time.sleep(0.2)
        yield server
    finally:
        server.stop()
