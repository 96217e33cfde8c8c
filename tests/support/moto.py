"""A real moto server in its own process, reached over HTTP like AWS itself.

A separate process (not ThreadedMotoServer in the test process) keeps moto's global state and
its threads away from the code under test, and lets tests kill and restart connector processes
independently of it. The process is moto's server with the Security Hub operations moto lacks
added (``tests/support/moto_securityhub_ext.py``).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
#: The repository root: the server runs ``tests.support.moto_securityhub_ext`` as a module from it.
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    url: str
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """Environment for a process (or boto3 in this one) that must talk only to moto."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_moto_server(timeout: float = 60.0) -> MotoServer:
    port = free_port()
    env = dict(os.environ, MOTO_ALLOW_NONEXISTENT_REGION="true")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.moto_securityhub_ext", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2).read()
            return MotoServer(url=url, process=process)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"moto server did not answer on {url} within {timeout}s")


def put_objects(server: MotoServer, bucket: str, objects: Iterable[tuple[str, bytes]], *, threads: int = 16) -> int:
    """Store many small objects quickly: plain HTTP PUTs over kept-alive connections, in threads.

    boto3 spends a few milliseconds of client CPU a request (signing, parsing); moto does not
    check signatures, so for creating thousands of fixtures a bare PUT with an S3 credential
    scope (which tells moto's dispatcher the service) is several times cheaper on a small machine.
    """
    host, port = server.url.removeprefix("http://").split(":")
    scope = f"AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, Signature=0"
    local = threading.local()

    def put(item: tuple[str, bytes]) -> None:
        key, body = item
        for attempt in range(3):
            conn = getattr(local, "conn", None) or http.client.HTTPConnection(host, int(port), timeout=60)
            local.conn = conn
            try:
                conn.request("PUT", f"/{bucket}/{urllib.parse.quote(key)}", body=body,
                             headers={"Authorization": scope, "Content-Length": str(len(body))})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                local.conn = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise RuntimeError(f"PUT {bucket}/{key}: HTTP {response.status}")
            return

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(1 for _ in pool.map(put, objects))
