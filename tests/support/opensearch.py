"""A real, single-node OpenSearch for the tests, provisioned from Maven Central.

    mvn -q -B dependency:copy \
        -Dartifact=org.opensearch.distribution.integ-test-zip:opensearch:2.19.3:zip \
        -DoutputDirectory=/var/cache/cloudtrail-connector/opensearch

The zip is cached outside the repository (``CONNECTOR_TEST_CACHE`` overrides
``~/.cache/cloudtrail-connector``, or ``/var/cache/cloudtrail-connector`` as root), unzipped once, and started on 127.0.0.1 at a free port with
the machine's Java 17 and a small heap. OpenSearch refuses to run as root, and these machines
run as root, so the node runs as an unprivileged system user created for it (``useradd``) via
``runuser``. The integ-test distribution has no security plugin: plain HTTP, no auth.
``OPENSEARCH_URL`` skips all of this and uses that node instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from tests.support.moto import free_port

VERSION = os.environ.get("CONNECTOR_TEST_OPENSEARCH_VERSION", "2.19.3")
ARTIFACT = f"org.opensearch.distribution.integ-test-zip:opensearch:{VERSION}:zip"
# As root the node runs as another user, who cannot enter root's home (mode 0700): cache the
# distribution under /var/cache then.
_DEFAULT_CACHE = Path("/var/cache/cloudtrail-connector") if os.geteuid() == 0 else Path.home() / ".cache" / "cloudtrail-connector"
CACHE = Path(os.environ.get("CONNECTOR_TEST_CACHE", _DEFAULT_CACHE)) / "opensearch"
USER = "opensearch-test"


class NodeError(RuntimeError):
    pass


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def provision() -> Path:
    """The unzipped distribution's home, downloading it once (a lock keeps parallel runs apart)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    home = CACHE / f"opensearch-{VERSION}"
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "bin" / "opensearch").exists():
            return home
        archive = CACHE / f"opensearch-{VERSION}.zip"
        if not archive.exists():
            last = None
            for _ in range(3):
                proc = _run(["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={CACHE}"], timeout=900)
                if proc.returncode == 0 and archive.exists():
                    break
                last = (proc.stdout + proc.stderr)[-2000:]
                time.sleep(5)
            else:
                raise NodeError(f"could not download {ARTIFACT} with mvn: {last}")
        partial = CACHE / f".unzip-{VERSION}"
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(partial)
        inner = next(partial.iterdir())
        for script in (inner / "bin").iterdir():
            script.chmod(0o755)
        inner.rename(home)
        shutil.rmtree(partial, ignore_errors=True)
        return home


def _ensure_user() -> None:
    if _run(["id", "-u", USER]).returncode != 0:
        proc = _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER])
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            raise NodeError(f"useradd {USER} failed: {proc.stderr.strip()}")


def _java_home() -> str:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if not java:
        raise NodeError("no java on PATH (Java 17 is needed for OpenSearch)")
    return str(Path(os.path.realpath(java)).parent.parent)


class OpenSearchNode:
    """One node; ``stop()`` and ``start()`` keep its port and data, for outage tests."""

    def __init__(self) -> None:
        self.home = provision()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = Path(tempfile.mkdtemp(prefix="os-node-"))
        self.process: subprocess.Popen[bytes] | None = None
        _ensure_user()
        # The distribution's config dir must be writable by the node (it writes a keystore):
        # each node gets its own copy.
        self.config = self.root / "config"
        shutil.copytree(self.home / "config", self.config)
        # jvm.options names logs/ and data/ relative to the install, which the node cannot write.
        options = self.config / "jvm.options"
        text = options.read_text().replace("file=logs/", f"file={self.root}/logs/")
        text = text.replace("HeapDumpPath=data", f"HeapDumpPath={self.root}/data").replace("ErrorFile=logs/", f"ErrorFile={self.root}/logs/")
        options.write_text(text)
        (self.root / "data").mkdir()
        (self.root / "logs").mkdir()
        self.root.chmod(0o755)
        _run(["chown", "-R", f"{USER}:", str(self.root)])
        # The node user must be able to read the install (root-owned, world-readable dirs).
        for path in [CACHE.parent, CACHE, self.home]:
            path.chmod(path.stat().st_mode | 0o755)

    def start(self, timeout: float = 240.0) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OPENSEARCH_JAVA_HOME": _java_home(),
            "JAVA_HOME": _java_home(),
            "OPENSEARCH_JAVA_OPTS": os.environ.get("CONNECTOR_TEST_OPENSEARCH_HEAP", "-Xms512m -Xmx512m"),
            "OPENSEARCH_PATH_CONF": str(self.config),
            "HOME": str(self.root),
        }
        cmd = [
            "runuser", "-u", USER, "--", str(self.home / "bin" / "opensearch"),
            "-E", "discovery.type=single-node", "-E", "network.host=127.0.0.1",
            "-E", f"http.port={self.port}", "-E", f"transport.port={free_port()}",
            "-E", f"path.data={self.root / 'data'}", "-E", f"path.logs={self.root / 'logs'}",
            "-E", "cluster.routing.allocation.disk.threshold_enabled=false",
            "-E", "action.auto_create_index=true",
        ]
        log = open(self.root / "stdout.log", "ab")  # noqa: SIM115 - the node owns it
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=self.root  # jvm.options logs to ./logs
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NodeError(f"OpenSearch exited with {self.process.returncode}; see {self.root}/stdout.log:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=5s", timeout=10) as r:
                    if json.load(r).get("status") in ("yellow", "green"):
                        return
            except OSError:
                time.sleep(1)
        self.stop()
        raise NodeError(f"OpenSearch did not become ready on {self.url} within {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "stdout.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
