"""An installed vllm-forge is a tool, not a checkout: `pip install .` (not editable) into a
fresh venv outside the repository, then render from a versions.toml somewhere else."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.network  # pip fetches the build backend and dependencies


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    # no PYTHONPATH: the installed copy must run, never the checkout's
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, env=env)


def test_installed_package_renders_from_a_versions_toml_anywhere(tmp_path):
    env_dir, elsewhere, cwd = tmp_path / "venv", tmp_path / "some" / "dir", tmp_path / "cwd"
    elsewhere.mkdir(parents=True)
    cwd.mkdir()
    venv.create(env_dir, with_pip=True)
    # a copy of the source, so no build artefact lands in the checkout
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".nox", "build", "*.egg-info", "__pycache__"
        ),
    )
    installed = run(env_dir / "bin" / "pip", "install", "-q", source, cwd=cwd)
    assert installed.returncode == 0, installed.stderr[-2000:]
    shutil.rmtree(source)
    shutil.copy(ROOT / "versions.toml", elsewhere / "versions.toml")

    result = run(
        env_dir / "bin" / "vllm-forge", "render",
        "--pins", elsewhere / "versions.toml", "--profile", "rtx5090",
        cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    context = elsewhere / "build" / "rtx5090" / "context"
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile == (ROOT / "tests" / "snapshots" / "rtx5090.Dockerfile").read_text()
    for copied in ("lock/deps.txt", "probe/Makefile", "scripts/fetch_sdist.py"):
        assert (context / copied).is_file(), copied
    assert list(cwd.iterdir()) == []  # nothing written where the command ran
    site = run(
        env_dir / "bin" / "python", "-c", "import vllm_forge; print(vllm_forge.__file__)", cwd=cwd
    )
    assert str(env_dir) in site.stdout  # the installed copy ran, not the checkout
    # verify's run-time needs are an extra: without it, one line saying how to get it
    verify = run(env_dir / "bin" / "vllm-forge", "verify", "--list", cwd=cwd)
    assert verify.returncode == 2 and "pip install 'vllm-forge[verify]'" in verify.stderr
    assert verify.stderr.count("\n") == 1
