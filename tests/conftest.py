"""Fixtures shared by every test: the ../shared folder, and a real moto server over HTTP.

Tests that read ../shared skip when it is absent (a user's fresh clone) but fail under CI=true,
where a missing component is a broken build, not a reason to skip.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.moto import MotoServer, start_moto_server

if TYPE_CHECKING:
    from tests.support.opensearch import OpenSearchNode

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CONNECTOR_SHARED_DIR", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip when a component is missing, except under CI where it must be there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    require(SHARED.is_dir(), f"{SHARED} not found (the shared corpus and validators)")
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir(shared_dir: Path) -> Path:
    return shared_dir / "corpus" / "cloudtrail"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server process for the session; tests isolate themselves by resource names."""
    server = start_moto_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point every boto3 client at the moto server via boto3's AWS_ENDPOINT_URL convention."""
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture(scope="session")
def opensearch_node() -> Iterator[OpenSearchNode | None]:
    """A real OpenSearch node for the session (None when OPENSEARCH_URL names an external one)."""
    from tests.support.opensearch import NodeError, OpenSearchNode

    if os.environ.get("OPENSEARCH_URL"):
        yield None
        return
    try:
        node = OpenSearchNode()
        node.start()
    except (NodeError, OSError, subprocess.SubprocessError) as exc:
        require(False, f"could not start a real OpenSearch node: {exc}")
        return
    try:
        yield node
    finally:
        node.cleanup()


@pytest.fixture(scope="session")
def opensearch_url(opensearch_node: OpenSearchNode | None) -> str:
    return os.environ.get("OPENSEARCH_URL") or opensearch_node.url  # type: ignore[union-attr]


#: Fixtures that make a test need something outside the process; the marker follows from them,
#: so ``-m "not opensearch"`` / ``-m "not moto"`` / ``-m "not shared"`` deselect every such test
#: whether or not its module remembered to set ``pytestmark``.
MARKER_FIXTURES: dict[str, tuple[str, ...]] = {
    "opensearch": ("opensearch_node", "opensearch_url"),
    "moto": ("moto_server", "aws_env"),
    "shared": ("shared_dir", "corpus_dir"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))  # the closure: fixtures of fixtures count too
        for marker, fixtures in MARKER_FIXTURES.items():
            if used.intersection(fixtures) and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))
