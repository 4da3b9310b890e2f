"""Issue 10, as a user meets it: each bad input ends in one line, a non-zero exit, no file written.

Every case runs the real command line in a fresh directory holding only a (broken) copy of the
project's versions.toml; afterwards that directory must hold nothing else. The cases that pass
on purpose (a warning, a note) say what they print.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

from vllm_forge.errors import ConfigError, EngineError

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = (ROOT / "versions.toml").read_text()


def _edit(**changes: object):
    """versions.toml with `table__key=value` changes (a `profiles.NAME.table` path with dots)."""
    doc = tomlkit.parse(VERSIONS)
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        node = doc
        for part in ".".join(path).split("."):
            node = node[part]
        node[key] = value
    return tomlkit.dumps(doc)


def cli(tmp_path: Path, text: str | bytes, *args: str, env: dict[str, str] | None = None):
    pins_file = tmp_path / "versions.toml"
    if isinstance(text, bytes):
        pins_file.write_bytes(text)
    else:
        pins_file.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "vllm_forge.cli", *args, "--pins", str(pins_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def assert_one_line_and_nothing_written(result, tmp_path: Path, code: int, message: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("vllm-forge: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["versions.toml"]


CUDA_12_9_BASES = {
    "images__devel": _edit().split('devel = "')[1].split('"')[0].replace("12.8.1", "12.9.0"),
    "images__runtime": _edit().split('runtime = "')[1].split('"')[0].replace("12.8.1", "12.9.0"),
}

CASES = {
    # 1. contradictory pins
    "cuda 13.0 on 12.8.1 bases": (
        _edit(cuda__version="13.0"),
        ["render"],
        "[images].devel is a CUDA 12.8 image (nvidia/cuda:12.8.1-devel-ubuntu24.04), but"
        " [cuda].version = '13.0'",
    ),
    "12.9.0 bases with cuda 12.8": (
        _edit(**CUDA_12_9_BASES),
        ["render"],
        "is a CUDA 12.9 image (nvidia/cuda:12.9.0-devel-ubuntu24.04), but [cuda].version = '12.8'",
    ),
    "cuda 13.0, local bases, a CUDA 12.8 torch in the lock": (
        _edit(cuda__version="13.0"),
        ["render", "--profile", "debian-pypi"],
        "torch 2.10.0 is a CUDA 12.8 build (nvidia-cuda-runtime-cu12==12.8.90 in the lock of"
        " profile debian-pypi), but [cuda].version = '13.0'",
    ),
    "cuda 13.0 through bump --packages-only": (
        _edit(cuda__version="13.0"),
        ["bump", "--packages-only", "--dry-run"],
        "[cuda].version = '13.0'",
    ),
    # 2. arch lists nvcc cannot build
    "--arch-list 12.0f on CUDA 12.8": (
        VERSIONS,
        ["render", "--arch-list", "12.0f"],
        "--arch-list: 12.0f cannot be built by CUDA 12.8's nvcc (from the devel image); it builds"
        " 5.0 5.2 5.3 6.0 6.1 6.2 7.0 7.2 7.5 8.0 8.6 8.7 8.9 9.0 9.0a 10.0 10.0a 10.1 10.1a 12.0"
        " 12.0a (the `f` family forms need CUDA >= 12.9: write 12.0a for 12.8)",
    ),
    "[flashinfer].cuda_arch_list 12.0f on CUDA 12.8": (
        _edit(flashinfer__cuda_arch_list="12.0f"),
        ["render"],
        "[flashinfer].cuda_arch_list: 12.0f cannot be built by CUDA 12.8's nvcc",
    ),
    "--arch-list 99.0": (VERSIONS, ["render", "--arch-list", "99.0"], "99.0 cannot be built"),
    "--arch-list 7.0 with CUDA 13's nvcc": (
        VERSIONS,
        ["render", "--profile", "debian-pypi", "--arch-list", "7.0"],
        "7.0 cannot be built by CUDA 13.0's nvcc (from cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]"
        "==13.0.2); it builds 7.5 8.0",
    ),
    "--arch-list '12.0+PTX 12.0'": (
        VERSIONS,
        ["render", "--arch-list", "12.0+PTX 12.0"],
        "names 12.0 more than once (12.0+PTX and 12.0)",
    ),
    # 4. tracebacks and silently accepted values
    "a non-UTF-8 byte (render)": (
        b"# caf\xe9\n" + VERSIONS.encode(),
        ["render"],
        "byte 0xe9 at offset 5 is not UTF-8",
    ),
    "a non-UTF-8 byte (bump)": (
        b"# caf\xe9\n" + VERSIONS.encode(),
        ["bump", "--dry-run"],
        "byte 0xe9 at offset 5 is not UTF-8",
    ),
    "[profiles] rtx5090 = 1": (
        VERSIONS.replace("[profiles.rtx5090]\n", "[profiles]\nrtx5090 = 1\n[profiles.x]\n"),
        ["render"],
        "[profiles].rtx5090 = 1: a profile is a table",
    ),
    "platform x86_64 in another profile, through bump": (
        VERSIONS.replace('platform = "x86_64-manylinux_2_36"', 'platform = "x86_64"'),
        ["bump", "--profile", "rtx5090", "--dry-run"],
        "[python].platform = 'x86_64'",
    ),
    "source_date_epoch = -1": (
        _edit(project__source_date_epoch=-1),
        ["render"],
        "[project].source_date_epoch = -1",
    ),
    "slim_max_gb = -1": (_edit(budget__slim_max_gb=-1), ["render"], "[budget].slim_max_gb = -1"),
    "description = 5": (
        VERSIONS.replace('description = "RTX 5090 (sm_120)', "description = 5 #"),
        ["render"],
        "[profiles.rtx5090].description must be a str, not 5",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, case):
    text, args, message = CASES[case]
    result = cli(tmp_path, text, *args, env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple"})
    assert_one_line_and_nothing_written(result, tmp_path, ConfigError.exit_code, message)


def test_pins_that_are_a_directory_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vllm_forge.cli", "render", "--pins", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == ConfigError.exit_code
    assert "--pins .: is a directory" in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_empty_arch_list_is_an_error_not_ignored(tmp_path):
    result = cli(tmp_path, VERSIONS, "render", "--arch-list", "")
    assert_one_line_and_nothing_written(result, tmp_path, ConfigError.exit_code, "is empty")


# ---------------------------------------------------------------------------- said, not refused
def test_an_arch_list_without_the_served_gpu_renders_with_a_warning(tmp_path):
    result = cli(tmp_path, VERSIONS, "render", "--arch-list", "8.9")
    assert result.returncode == 0, result.stderr
    assert (
        "vllm-forge: warning: --arch-list = '8.9' builds nothing that runs on the RTX 5090 (12.0)"
    ) in result.stderr


def test_an_arch_list_with_only_ptx_for_the_served_gpu_says_so(tmp_path):
    result = cli(tmp_path, VERSIONS, "render", "--arch-list", "8.9+PTX")
    assert result.returncode == 0, result.stderr
    assert "has no 12.0 SASS for the RTX 5090: its kernels run only as PTX" in result.stderr


def test_an_arch_list_beyond_flashinfers_says_what_flashinfer_gets(tmp_path):
    result = cli(tmp_path, VERSIONS, "render", "--arch-list", "12.0 8.9")
    assert result.returncode == 0, result.stderr
    (warning,) = [ln for ln in result.stderr.splitlines() if "warning" in ln]
    assert warning == (
        "vllm-forge: warning: FlashInfer's AOT kernels are built for [flashinfer].cuda_arch_list"
        " = '12.0a' only: --arch-list's 8.9 gets vLLM's kernels but no FlashInfer ones; set"
        " [flashinfer].cuda_arch_list in versions.toml to add it"
    )
    dockerfile = (tmp_path / "build" / "rtx5090" / "context" / "Dockerfile").read_text()
    assert 'TORCH_CUDA_ARCH_LIST="12.0;8.9"' in dockerfile
    assert 'FLASHINFER_CUDA_ARCH_LIST="12.0a"' in dockerfile


def test_a_huge_max_jobs_is_kept_and_memory_still_admits_each_compile(tmp_path):
    result = cli(tmp_path, VERSIONS, "jobs", env={"MAX_JOBS": "99999"})
    assert result.returncode == 0, result.stderr
    assert "MAX_JOBS         99999 x NVCC_THREADS 1 (requested; each compile admitted by its " in (
        result.stdout
    )


# ---------------------------------------------------------------------------- setup's apt-get
@pytest.mark.skipif(os.geteuid() != 0, reason="setup runs apt-get only as root")
@pytest.mark.parametrize(
    ("apt_get", "message"),
    [
        ("echo 'E: Unable to locate package docker.io' >&2; exit 100", "`apt-get update` failed"),
        ("exec sleep 30", "`apt-get update` did not finish in 1 s"),
    ],
)
def test_a_failing_apt_get_in_setup_is_one_line(tmp_path, apt_get, message):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("apt-get", apt_get), ("dpkg-query", "exit 1"), ("apt-cache", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    code = (
        "import sys; from vllm_forge import cli, hostsetup\n"
        "hostsetup.APT_UPDATE_S = 1.0\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "setup"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        timeout=60,
    )
    assert result.returncode == EngineError.exit_code, result.stderr
    (error,) = [ln for ln in result.stderr.splitlines() if ln.startswith("vllm-forge: error:")]
    assert message in error and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="setup runs apt-get only as root")
def test_setup_adds_docker_buildx_where_the_distribution_has_it(tmp_path, monkeypatch):
    """Ubuntu 24.04's docker.io builds with BuildKit only through buildx; Debian 12 has none."""
    from vllm_forge import hostsetup

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-get.calls"
    fakes = {
        "apt-get": f'echo "$@" >> {calls}',
        "dpkg-query": "exit 1",  # nothing installed
        "apt-cache": 'case "$2" in docker-buildx) echo "  Candidate: 0.30.1";; esac',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    hostsetup.install(log=lambda line: None)
    update, install = calls.read_text().splitlines()
    assert update == "update -qq"
    assert install.split()[-2:] == ["ccache", "docker-buildx"]
