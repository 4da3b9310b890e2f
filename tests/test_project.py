"""The one CLI: where the project's files are, and the one wrapper that turns errors into a line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, engine_or_skip

from vllm_forge import cli
from vllm_forge.build import slug
from vllm_forge.errors import BuildError, ConfigError
from vllm_forge.project import PACKAGE_DIR, Project


def forge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "vllm_forge.cli", *map(str, args)]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("pins", "expected"),
    [("nope.toml", "not found; run from the project root"), (".", "is a directory")],
)
def test_a_pins_path_that_is_no_file_is_one_line_and_writes_nothing(tmp_path, pins, expected):
    result = forge("render", "--pins", pins, cwd=tmp_path)
    assert result.returncode == ConfigError.exit_code
    assert result.stderr.count("\n") == 1 and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_generated_path_lies_under_the_pins_files_directory(tmp_path):
    (tmp_path / "versions.toml").write_text("")
    project = Project.at(tmp_path / "versions.toml")
    for path in (project.build, project.logs, project.reports, project.base_work):
        assert path.is_relative_to(tmp_path / "build")
    assert project.context("p") == tmp_path / "build" / "p" / "context"
    assert project.cache == tmp_path / "build" / ".cache"


def test_packaged_resources_are_found_from_a_checkout():
    project = Project.at(ROOT / "versions.toml")
    assert (project.templates / "Dockerfile.j2").is_file()
    assert (project.probe_sources / "Makefile").is_file()
    assert project.context_scripts == PACKAGE_DIR / "scripts"


@pytest.mark.engine
def test_a_build_from_other_pins_writes_beside_them_and_hashes_that_file(tmp_path):
    """--pins other.toml is honoured everywhere: build/ beside it, its hash in the manifest."""
    engine_or_skip("docker")
    other = tmp_path / "other.toml"
    other.write_text((ROOT / "versions.toml").read_text() + "# another file\n")
    tag = "localhost/vllm-forge-test:other-pins-probe"
    result = forge("probe", "--pins", other, "--profile", "debian-pypi", "--engine", "docker",
                   "--tag", tag, cwd=tmp_path)  # fmt: skip
    try:
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads((tmp_path / "build" / "reports" / f"{slug(tag)}.json").read_text())
        digest = "sha256:" + hashlib.sha256(other.read_bytes()).hexdigest()
        assert report["inputs"]["versions_toml"] == digest
        assert (tmp_path / "build" / "logs" / "debian-pypi-probe-docker.sh").is_file()
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (BuildError("docker build of target 'runtime' failed"), 5, "error: docker build of"),
        (KeyboardInterrupt(), 130, "vllm-forge: jobs interrupted"),
    ],
)
def test_the_one_wrapper_maps_errors_and_ctrl_c_to_a_line_and_a_code(
    monkeypatch, capsys, raised, code, line
):
    def boom(args):
        raise raised

    monkeypatch.setitem(cli.COMMANDS, "jobs", boom)
    assert cli.main(["jobs"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and line in err


def test_every_subcommand_has_a_handler_and_every_handler_a_subcommand():
    sub = next(a for a in cli.parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(cli.COMMANDS)


def test_verify_list_needs_no_versions_toml(tmp_path):
    result = forge("verify", "--list", cwd=tmp_path)
    assert result.returncode == 0 and "pins_versions" in result.stdout.split()
