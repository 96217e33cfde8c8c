"""Mapping files are validated when loaded: a broken one stops start-up naming the file, the path
inside it and the reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from connector.errors import MappingFileError
from connector.mapping import load_mappings
from connector.paths import mappings_dir


def test_every_mapping_file_loads_under_its_event_name() -> None:
    files = sorted(mappings_dir().glob("*.yaml"))
    mappings = load_mappings()
    assert files and list(mappings) == [path.stem for path in files]
    assert len({m.id for m in mappings.values()}) == len(files)
    assert all(m.cases.resource_id and m.cases.request for m in mappings.values())


def broken_copy(tmp_path: Path, mutate) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), target)
    path = target / "DeleteNatGateway.yaml"
    doc = yaml.safe_load(path.read_text())
    mutate(doc)
    path.write_text(yaml.safe_dump(doc))
    return target


@pytest.mark.parametrize(
    ("mutate", "where", "reason"),
    [
        (lambda d: d["finding"]["severity"].update(base="SEVERE"), "$.finding.severity.base", "SEVERE"),
        (lambda d: d["remediation"].pop("recovery"), "$.remediation", "recovery"),
        (lambda d: d["finding"]["asff_types"].append("Made Up/Category"), "$.finding.asff_types[1]", "does not match"),
        (lambda d: d["event"]["resources"][0].pop("details_other"), "$.event.resources[0]", "details_other"),
        (lambda d: d["remediation"]["cli"].append({"description": "x", "command": "rm -rf /"}), "$.remediation.cli[5].command", "does not match"),
        (lambda d: d["finding"].update(title="NAT {natGatewayID}"), "$.finding.title", "natGatewayID"),
        (lambda d: d["event"]["fields"]["natGatewayId"].append("requestParameters.[[["), "$.event.fields.natGatewayId[5]", "JMESPath"),
        (lambda d: d["finding"]["attacks"][0]["technique"].update(uid="T99"), "$.finding.attacks[0].technique.uid", "T99"),
    ],
)
def test_a_broken_mapping_names_file_path_and_reason(tmp_path: Path, mutate, where: str, reason: str) -> None:
    directory = broken_copy(tmp_path, mutate)
    with pytest.raises(MappingFileError) as info:
        load_mappings(directory)
    error = info.value
    assert error.file.endswith("DeleteNatGateway.yaml")
    assert error.path == where, str(error)
    assert reason in error.reason, str(error)


def test_not_yaml_and_wrong_file_name(tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    (target / "DeleteNatGateway.yaml").write_text("id: [unclosed\n")
    with pytest.raises(MappingFileError, match="not valid YAML"):
        load_mappings(target)
    shutil.copy(mappings_dir() / "DeleteNatGateway.yaml", target / "Other.yaml")
    (target / "DeleteNatGateway.yaml").unlink()
    with pytest.raises(MappingFileError, match="must match the file name"):
        load_mappings(target)
    with pytest.raises(MappingFileError, match="no mapping files"):
        load_mappings(tmp_path / "empty-dir-that-does-not-exist")
