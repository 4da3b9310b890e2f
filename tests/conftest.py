"""Shared fixtures: the real engines, and an honest account of what a run did not check."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from vllm_forge import engines
from vllm_forge.errors import IndexError_
from vllm_forge.verify.archcheck import pip_install_target

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / ".cache"
CUDA_TOOLKIT = "cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2"
_NOT_CHECKED: dict[str, str] = {}


def engine_or_skip(name: str) -> engines.Engine:
    """The named engine if it is usable here; else skip, and remember why for the summary."""
    try:
        return engines.detect(name)
    except Exception as exc:  # EngineError: not installed, daemon down, no BuildKit
        reason = f"{name} not usable: {exc}"
        _NOT_CHECKED[f"engine:{name}"] = reason
        pytest.skip(reason)


def install_or_skip(requirement: str, target: Path) -> Path:
    """pip-install `requirement` into `target` (reused if there); skip, saying why, when the
    package index is unreachable."""
    try:
        return pip_install_target([requirement], target)
    except IndexError_ as err:
        if "index is unreachable" in str(err):
            reason = f"package index unreachable, cannot install {requirement}: {err}"
            print(reason, file=sys.stderr)
            pytest.skip(reason)
        raise


@pytest.fixture(scope="session")
def cuda_home() -> Path:
    """A CUDA 13 toolkit (nvcc, cudart, CCCL) pip-installed into build/.cache, reused if there."""
    target = install_or_skip(CUDA_TOOLKIT, CACHE / "cuda-toolkit-13.0.2")
    nvccs = sorted(target.glob("nvidia/*/bin/nvcc"))
    assert nvccs, f"{CUDA_TOOLKIT} under {target} holds no nvidia/*/bin/nvcc"
    return nvccs[0].parent.parent


def gpu_visible() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped and gpu_visible():
        return
    terminalreporter.section("vllm-forge: what this run did NOT check")
    if not gpu_visible():
        terminalreporter.write_line(
            "no GPU here: GPU checks (probe launch, torch on the GPU, generation) did not run"
        )
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason.removeprefix("Skipped: ")] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"{count:3d} skipped: {reason}")


@pytest.fixture(scope="session")
def vllm_sdist() -> Path:
    """The rtx5090 profile's pinned vLLM sdist (build/.cache, else the package index)."""
    from vllm_forge import pins, sources
    from vllm_forge.errors import IndexError_
    from vllm_forge.project import Project

    project = Project.at(ROOT / "versions.toml")
    try:
        return sources.fetch_sdist(project, pins.load(project.pins_file, "rtx5090"))
    except IndexError_ as err:
        pytest.skip(f"package index unreachable, cannot fetch the vLLM sdist: {err}")
