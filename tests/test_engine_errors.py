"""Bad environments get one clear line and a non-zero exit, and nothing is built or written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, engine_or_skip

from vllm_forge import pins
from vllm_forge.errors import BaseImageError, EngineError
from vllm_forge.project import PACKAGED_LOCKS

# A registry on loopback that refuses every connection (the discard port): a pull from it fails
# at once, on any machine, so the build behind it never starts.
REFUSING_REGISTRY = "127.0.0.1:9"


def forge(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vllm_forge.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture()
def project(tmp_path) -> Path:
    shutil.copy(ROOT / "versions.toml", tmp_path / "versions.toml")
    return tmp_path


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_docker_daemon_down_is_named_with_the_fix(project):
    if shutil.which("docker") is None and not Path("/usr/bin/docker").exists():
        pytest.skip("no docker client installed")
    result = forge(
        "slim", "--profile", "debian-pypi", "--engine", "docker",
        "--pins", str(project / "versions.toml"),
        cwd=project, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )  # fmt: skip
    assert result.returncode == EngineError.exit_code
    assert "daemon is not running" in result.stderr and "nox -s setup" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert files_under(project) == ["versions.toml"]


def test_no_engine_installed_names_what_to_install(project, tmp_path_factory):
    empty = tmp_path_factory.mktemp("emptybin")
    python_dir = str(Path(sys.executable).parent)
    result = forge(
        "slim", "--engine", "podman", "--pins", str(project / "versions.toml"),
        cwd=project, env={"PATH": f"{empty}:{python_dir}"},
    )  # fmt: skip
    assert result.returncode == EngineError.exit_code
    assert "podman: not installed (apt-get install podman)" in result.stderr
    assert files_under(project) == ["versions.toml"]


def with_unreachable_bases(pins_file: Path) -> str:
    """Point the default profile's bases at the refusing registry; return the devel image."""
    text = pins_file.read_text()
    doc = pins.read_document(pins_file)
    digest = "sha256:" + "0" * 64
    for key in ("devel", "runtime"):
        pinned = doc["images"][key]
        moved = f"{REFUSING_REGISTRY}/{pinned.partition('@')[0]}@{digest}"
        assert pinned in text
        text = text.replace(pinned, moved)
    pins_file.write_text(text)
    return pins.load(pins_file).devel.raw


@pytest.mark.engine
@pytest.mark.parametrize("engine_name", ["docker", "podman"])
def test_unreachable_base_image_points_to_the_reachable_profile(project, engine_name):
    engine_or_skip(engine_name)
    devel = with_unreachable_bases(project / "versions.toml")
    assert devel.startswith(f"{REFUSING_REGISTRY}/nvidia/cuda:12.8.1-devel-")
    result = forge(
        "slim", "--engine", engine_name, "--pins", str(project / "versions.toml"), cwd=project
    )
    assert result.returncode == BaseImageError.exit_code, result.stderr
    assert f"cannot pull base image {REFUSING_REGISTRY}/nvidia/cuda:12.8.1-" in result.stderr
    assert "--profile debian-pypi" in result.stderr
    assert result.stderr.count("\n") == 1
    assert files_under(project) == ["versions.toml"]
    assert not any(p.suffix == ".tmp" for p in PACKAGED_LOCKS.iterdir())
