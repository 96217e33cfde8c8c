"""The shape the README promises: one composition root, a pipeline that builds no AWS client,
stages that do not reach into the runtime, and a layout table that matches the tree."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "connector"

#: Constructors of the assembled product: only the composition root may call them.
ASSEMBLY = {"Pipeline", "Runner", "Decoder", "Selector", "FindingFactory.load"}
#: Modules of the stages themselves: no AWS SDK, no runtime, no commands.
STAGES = ["pipeline.py", "factory.py", "select.py", "events.py", "model.py", "validate.py",
          "mapping/engine.py", "mapping/runbook.py", "render/asff.py", "render/ocsf.py"]


def modules() -> Iterator[Path]:
    yield from (p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # from a import module
    return names


def called(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                names.add(f"{func.value.id}.{func.attr}")
    return names


def test_the_stages_import_no_aws_sdk_and_nothing_of_the_runtime() -> None:
    for name in STAGES:
        found = imported(PACKAGE / name)
        bad = {m for m in found if m.split(".")[0] in ("boto3", "botocore") and name != "validate.py"}
        bad |= {m for m in found if m.startswith(("connector.runtime", "connector.commands", "connector.build"))}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_only_the_composition_root_assembles_the_product() -> None:
    offenders = {}
    for path in modules():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "build.py":
            continue
        hits = called(path) & ASSEMBLY
        # A class may build itself in its own module (``cls(...)`` is not a name call).
        if hits:
            offenders[rel] = sorted(hits)
    assert offenders == {}


def test_commands_and_the_lambda_handler_use_the_builder() -> None:
    def module_name(path: Path) -> str:
        return ".".join(path.relative_to(REPO).with_suffix("").parts)

    imports = {module_name(p): imported(p) for p in modules()}
    users = {"connector.build"}
    while True:  # directly, or through a module that does (run → runtime.service → build)
        more = {name for name, found in imports.items() if found & users} - users
        if not more:
            break
        users |= more
    users = {name.removeprefix("connector.").replace(".", "/") + ".py" for name in users}
    for entry in ("commands/run.py", "commands/replay.py", "commands/map.py", "commands/demo.py", "aws_lambda.py"):
        assert entry in users, f"{entry} does not build through connector/build.py"


def test_metrics_is_a_leaf() -> None:
    assert not {m for m in imported(PACKAGE / "metrics.py") if m.startswith("connector")}


def test_no_module_grows_past_a_reviewable_size() -> None:
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in modules()}
    assert {k: v for k, v in sizes.items() if v > 600} == {}


def test_the_readme_layout_table_names_every_module_and_only_real_ones() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| what | where |"):readme.index("### Adding an event")]
    named = set(re.findall(r"`([\w./<>-]+)`", table))
    paths = {n for n in named if n.startswith(("connector/", "schemas/", "mappings/")) and "<" not in n}
    for name in paths:
        assert (REPO / name).exists(), f"the README names {name}, which does not exist"
    # Short names inside a package's parentheses are relative to it: `connector/sources/` (`sqs.py`).
    mentioned = set(paths)
    for row in table.splitlines():
        package = re.search(r"`(connector/[\w/]+/)`", row)
        if package:
            mentioned |= {package.group(1) + short for short in re.findall(r"`([\w.]+(?:\.py|/))`", row)}
    for path in modules():
        rel = path.relative_to(REPO).as_posix()
        if path.name == "__init__.py" or rel in ("connector/__main__.py",):
            continue
        parent = path.parent.relative_to(REPO).as_posix() + "/"
        assert rel in mentioned or parent in mentioned, f"{rel} is not in the README's layout table"
