"""The index client and the whole bump, against a loopback index and a real loopback registry."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from bumpkit import (
    IndexState,
    docker_registry,
    free_port,
    index_handler,
    make_wheel,
    push_image,
    serve,
)

from vllm_forge import cli, pipconfig
from vllm_forge.bump.pyindex import RangeFile, SimpleIndex, read_wheel_metadata
from vllm_forge.bump.solve import Target, solve
from vllm_forge.errors import ConfigError, IndexError_, OutdatedError

TORCH = "cp312-cp312-manylinux_2_28_x86_64"
ANY = "py3-none-any"
CU128 = (
    'nvidia-cuda-runtime-cu12==12.8.90; platform_system == "Linux" and platform_machine == "x86_64"'
)
CU130 = 'cuda-toolkit[cublas,cudart]==13.0.2; platform_system == "Linux"'
PAD = 300 * 1024  # larger than one range chunk: METADATA is fetched by a second range request


def _vllm_requires(torch: str, vision: str, audio: str, flashinfer: str) -> list[str]:
    return [
        "requests",
        f"torch=={torch}",
        f"torchvision=={vision}",
        f"torchaudio=={audio}",
        f'flashinfer-python=={flashinfer}; platform_machine == "x86_64"',
        'flashinfer-python==0.1.0; platform_machine == "aarch64"',
        f"flashinfer-cubin=={flashinfer}",
        'zentorch; extra == "zen"',
    ]


def build_index(directory: Path) -> IndexState:
    """vLLM 0.20.0 needs a CUDA 13 torch; 0.19.2rc1 is a pre-release; 0.19.3 is yanked."""
    vllm = "cp38-abi3-manylinux_2_31_x86_64"
    for version, pins in {
        "0.20.0": ("2.11.0", "0.26.0", "2.11.0", "0.6.8"),
        "0.19.3": ("2.10.0", "0.25.0", "2.10.0", "0.6.7"),
        "0.19.2rc1": ("2.10.0", "0.25.0", "2.10.0", "0.6.7"),
        "0.19.1": ("2.10.0", "0.25.0", "2.10.0", "0.6.6"),
        "0.19.0": ("2.10.0", "0.25.0", "2.10.0", "0.6.5"),
        "0.18.0": ("2.9.0", "0.24.0", "2.9.0", "0.6.5"),
    }.items():
        make_wheel(directory, "vllm", version, vllm, _vllm_requires(*pins), padding=PAD)
        (directory / f"vllm-{version}.tar.gz").write_bytes(f"sdist {version}".encode())
    make_wheel(directory, "vllm", "0.19.1", "cp38-abi3-manylinux_2_31_aarch64", [])
    for torch, cuda in (("2.11.0", CU130), ("2.10.0", CU128), ("2.9.0", CU128)):
        make_wheel(directory, "torch", torch, TORCH, ["filelock", cuda], padding=PAD)
    for vision, audio, torch in (("0.26.0", "2.11.0", "2.11.0"), ("0.25.0", "2.10.0", "2.10.0")):
        make_wheel(directory, "torchvision", vision, TORCH, [f"torch=={torch}"])
        make_wheel(directory, "torchaudio", audio, TORCH, [f"torch=={torch}"])
    for version in ("0.6.8", "0.6.6", "0.6.5"):
        make_wheel(directory, "flashinfer-python", version, ANY, ["torch"])
        make_wheel(directory, "flashinfer-cubin", version, ANY, [])
    # What the stack requires besides itself, so that uv can lock it from this index alone.
    for name, version in (("requests", "2.32.0"), ("filelock", "3.13.0")):
        make_wheel(directory, name, version, ANY, [])
    make_wheel(directory, "nvidia-cuda-runtime-cu12", "12.8.90", "py3-none-manylinux_2_17_x86_64")
    return IndexState(directory=directory, yanked={f"vllm-0.19.3-{vllm}.whl"})


@dataclass
class LoopbackIndex:
    url: str
    state: IndexState

    def fetched(self) -> list[str]:
        return [path for path, _, _ in self.state.seen if path.startswith("/files/")]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LoopbackIndex]:
    state = build_index(tmp_path)
    with serve(index_handler(state)) as base:
        yield LoopbackIndex(url=f"{base}/simple", state=state)
    shutil.rmtree(tmp_path, ignore_errors=True)


# ---------------------------------------------------------------------------- index client
def test_range_reads_get_metadata_without_downloading_the_wheel(index: LoopbackIndex):
    client = SimpleIndex(index.url)
    (wheel,) = [d for d in client.files("torch") if str(d.version) == "2.10.0"]
    requires = [str(r) for r in client.metadata(wheel).requires_dist]
    assert requires == ["filelock", CU128]
    reads = [(rng, status) for path, rng, status in index.state.seen if path.startswith("/files/")]
    assert len(reads) == 2 and all(status == 206 and rng for rng, status in reads)


def test_range_file_reads_like_a_local_file(index: LoopbackIndex, monkeypatch):
    monkeypatch.setattr(RangeFile, "chunk", 4096)
    name = f"torch-2.9.0-{TORCH}.whl"
    remote = RangeFile(requests.Session(), index.url.replace("/simple", f"/files/{name}"))
    local = (index.state.directory / name).read_bytes()
    remote.seek(100_000)
    assert remote.read(10_000) == local[100_000:110_000]
    remote.seek(-50, 2)
    assert remote.read() == local[-50:]
    assert b"Requires-Dist: filelock" in read_wheel_metadata(remote, name)


def test_server_without_range_support_is_one_line(index: LoopbackIndex):
    client = SimpleIndex(index.url.replace("/simple", "/nothing"))
    assert client.files("torch") == []
    (wheel,) = [d for d in SimpleIndex(index.url).files("torch") if str(d.version) == "2.9.0"]
    broken = wheel.__class__(**{**wheel.__dict__, "url": wheel.url + ".missing"})
    with pytest.raises(IndexError_, match="Range"):
        client.metadata(broken)


def test_html_and_json_pages_agree(index: LoopbackIndex):
    as_json = SimpleIndex(index.url).files("vllm")
    index.state.html_only = True
    as_html = SimpleIndex(index.url).files("vllm")
    assert [(d.filename, d.sha256, d.yanked) for d in as_json] == [
        (d.filename, d.sha256, d.yanked) for d in as_html
    ]
    assert any(d.yanked for d in as_html)


def test_solver_over_http_refuses_cuda13_torch_and_reads_only_what_it_needs(index: LoopbackIndex):
    found = solve(SimpleIndex(index.url), Target(python="3.12", cuda="12.8"), need_sdist=True)
    assert (found.vllm, found.torch, found.flashinfer) == ("0.19.1", "2.10.0", "0.6.6")
    assert found.skipped[0].startswith("vllm 0.20.0: torch 2.11.0 is a CUDA 13.0 build")
    expected = hashlib.sha256(b"sdist 0.19.1").hexdigest()
    assert found.vllm_sdist_sha256 == expected
    wheels = {path.rsplit("/", 1)[1] for path in index.fetched()}
    assert not any(
        name.startswith(("vllm-0.19.0", "vllm-0.18.0", "vllm-0.19.3")) for name in wheels
    )
    assert "vllm-0.19.2rc1" not in " ".join(wheels)


def test_unreachable_index_is_one_line():
    with pytest.raises(IndexError_, match="cannot reach the package index") as info:
        SimpleIndex(f"http://127.0.0.1:{free_port()}/simple", timeout_s=2).files("vllm")
    assert "\n" not in str(info.value)


def test_index_answering_503_is_retried_by_the_default_session(index: LoopbackIndex):
    index.state.unavailable = 2
    assert SimpleIndex(index.url).files("torch")
    assert [status for _, _, status in index.state.seen[:3]] == [503, 503, 200]


# ---------------------------------------------------------------------------- the whole bump
PINS = """\
# versions.toml for the bump's end-to-end test.

[project]
default_profile = "rtx5090"
source_date_epoch = 1764201600

[cuda]
version = "12.8"

[images]
# Builder and runtime, by tag AND digest.
devel = "{devel}"
runtime = "{runtime}"  # re-pushed upstream

[python]
version = "3.12"
platform = "x86_64-manylinux_2_39"

[torch]
version = "2.9.0"
torchvision = "0.24.0"
torchaudio = "2.9.0"
index_url = "{index}"

[flashinfer]
version = "0.6.5"
packages = ["flashinfer-python", "flashinfer-cubin"]
jit_cache = "source"
git_url = "https://example.invalid/flashinfer.git"
revision = "{revision}"  # tag v0.6.5
cuda_arch_list = "12.0a"

[vllm]
version = "0.18.0"
source = "sdist"
sdist_sha256 = "{old_sha}"
git_url = "https://example.invalid/vllm.git"
revision = ""

[toolchain]
nvcc = "image"
nvcc_package = ""

[build]
torch_cuda_arch_list = "12.0"
max_jobs = "auto"
nvcc_threads = 1
ccache_max_size = "20G"

[budget]
slim_max_gb = 20

[profiles.rtx5090]
description = "default"

[profiles.cudnn.images]
devel = "{cudnn}"

[profiles.local]
description = "bases made here"

[profiles.local.images]
devel = "localhost/vllm-forge/debian:bookworm"
runtime = "localhost/vllm-forge/debian:bookworm"

[profiles.local.base]
suite = "bookworm"
image = "localhost/vllm-forge/debian:bookworm"
"""

REVISION = "70b142b75b46aa56e7f675a8e6ec1a977352c91f"
PROFILES = ("rtx5090", "cudnn", "local")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
    workdir = tmp_path_factory.mktemp("registry")
    digests: dict[str, str] = {}
    with docker_registry(workdir) as host:
        for version in ("12.8.0", "12.8.1", "12.9.0", "13.0.1"):
            for suffix in ("-devel-ubuntu24.04", "-cudnn-devel-ubuntu24.04", "-base-ubuntu24.04"):
                digests[version + suffix] = push_image(host, "nvidia/cuda", version + suffix)
        digests["old-base"] = digests["12.8.1-base-ubuntu24.04"]
        digests["12.8.1-base-ubuntu24.04"] = push_image(
            host, "nvidia/cuda", "12.8.1-base-ubuntu24.04", seed="re-pushed"
        )
        yield host, digests
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pins(
    tmp_path: Path, index: LoopbackIndex, registry, monkeypatch
) -> tuple[Path, str, dict[str, str]]:
    host, digests = registry
    text = PINS.format(
        devel=f"{host}/nvidia/cuda:12.8.0-devel-ubuntu24.04@{digests['12.8.0-devel-ubuntu24.04']}",
        runtime=f"{host}/nvidia/cuda:12.8.1-base-ubuntu24.04@{digests['old-base']}",
        cudnn=f"{host}/nvidia/cuda:12.8.0-cudnn-devel-ubuntu24.04@"
        + digests["12.8.0-cudnn-devel-ubuntu24.04"],
        index=index.url,
        revision=REVISION,
        old_sha="0" * 64,
    )
    project = tmp_path / "project"
    project.mkdir()
    path = project / "versions.toml"
    path.write_text(text)
    # The re-lock after a write: uv resolves from the loopback index alone (pip's index is the
    # user's pip configuration: here only the environment), with a cache of its own.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    return path, host, digests


def bump(path: Path, *args: str) -> int:
    return cli.main(["bump", "--pins", str(path), *args])


def test_bump_moves_every_pin_keeps_the_layout_and_relocks(pins, capsys):
    path, host, digests = pins
    before = path.read_text()
    assert bump(path) == 0
    captured = capsys.readouterr()
    out = captured.out
    after = path.read_text()

    def pinned(tag: str) -> str:
        return f"{host}/nvidia/cuda:{tag}@{digests[tag]}"

    new = {
        "devel": pinned("12.8.1-devel-ubuntu24.04"),
        "runtime": pinned("12.8.1-base-ubuntu24.04"),
        "cudnn": pinned("12.8.1-cudnn-devel-ubuntu24.04"),
    }
    expected = PINS.format(
        devel=new["devel"],
        runtime=new["runtime"],
        cudnn=new["cudnn"],
        index=_index_url(before),
        revision=REVISION,
        old_sha=hashlib.sha256(b"sdist 0.19.1").hexdigest(),
    )
    expected = (
        expected.replace('version = "2.9.0"', 'version = "2.10.0"')
        .replace('torchvision = "0.24.0"', 'torchvision = "0.25.0"')
        .replace('torchaudio = "2.9.0"', 'torchaudio = "2.10.0"')
        .replace('version = "0.6.5"', 'version = "0.6.6"')
        .replace('version = "0.18.0"', 'version = "0.19.1"')
    )
    assert after == expected
    assert "re-pushed with a new digest" in out
    assert f"{digests['old-base']} → " in out
    assert "refused vllm 0.20.0: torch 2.11.0 is a CUDA 13.0 build" in out
    assert f"flashinfer.revision is still {REVISION}" in out and "by hand" in out
    assert "localhost/" not in out
    # The locks follow, beside this pins file (the Project decides where), one per profile.
    locks = path.parent / "locks"
    assert captured.err == ""
    for profile in PROFILES:
        lock = (locks / f"{profile}.txt").read_text()
        assert "vllm==0.19.1" in lock and "torch==2.10.0" in lock and "--hash=sha256:" in lock
        assert f"lock: wrote {locks / profile}.txt" in out


def _index_url(text: str) -> str:
    return text.split('index_url = "', 1)[1].split('"', 1)[0]


def test_a_failed_relock_is_reported_and_the_pins_stay_written(pins, capsys, monkeypatch):
    path, _, _ = pins
    monkeypatch.setattr("vllm_forge.lock.uv_binary", _no_uv)
    assert bump(path, "--packages-only") == 0
    captured = capsys.readouterr()
    assert 'version = "0.19.1"' in path.read_text()
    assert "is updated but the locks are not (uv is not installed" in captured.err
    assert captured.err.count("\n") == 1


def _no_uv() -> str:
    raise ConfigError("uv is not installed: pip install uv")


def test_a_tag_without_digest_is_pinned(pins, capsys):
    path, host, digests = pins
    unpinned = f"{host}/nvidia/cuda:12.8.1-devel-ubuntu24.04"
    path.write_text(path.read_text().replace(_line(path, "devel"), f'devel = "{unpinned}"'))
    assert bump(path, "--images-only", "--dry-run") == 0
    assert f'+devel = "{unpinned}@{digests["12.8.1-devel-ubuntu24.04"]}"' in capsys.readouterr().out


def _line(path: Path, key: str) -> str:
    return next(ln for ln in path.read_text().splitlines() if ln.startswith(f"{key} = "))


def test_allow_minor_moves_to_12_9_but_never_13(pins, capsys):
    path, host, digests = pins
    assert bump(path, "--images-only", "--allow-minor") == 0
    after = path.read_text()
    assert f"12.9.0-devel-ubuntu24.04@{digests['12.9.0-devel-ubuntu24.04']}" in after
    assert "13.0" not in after
    assert 'version = "0.18.0"' in after  # packages untouched


def test_check_reports_outdated_and_writes_nothing(pins, capsys):
    path, _, _ = pins
    before = path.read_bytes()
    assert bump(path, "--check") == OutdatedError.exit_code
    captured = capsys.readouterr()
    assert "need attention" in captured.err and captured.err.count("\n") == 1
    assert path.read_bytes() == before
    assert bump(path) == 0
    assert bump(path, "--check") == 0
    assert "all pins are current" in capsys.readouterr().out


def test_dry_run_prints_a_diff_and_writes_nothing(pins, capsys):
    path, _, _ = pins
    before = path.read_bytes()
    assert bump(path, "--dry-run", "--packages-only") == 0
    out = capsys.readouterr().out
    assert '-version = "0.18.0"\n+version = "0.19.1"\n' in out
    assert out.count("+++ b/versions.toml") == 1
    assert path.read_bytes() == before
    assert not (path.parent / "locks").exists()


def test_unreachable_index_leaves_the_file_untouched(pins, capsys):
    path, _, _ = pins
    broken = path.read_text().replace(
        _index_url(path.read_text()), f"http://127.0.0.1:{free_port()}/s"
    )
    path.write_text(broken)
    assert bump(path) == IndexError_.exit_code
    err = capsys.readouterr().err
    assert "cannot reach the package index" in err and err.count("\n") == 1
    assert path.read_text() == broken


# ---------------------------------------------------------------------------- the real index
@pytest.mark.network
def test_what_the_bump_would_choose_today_on_the_real_index():
    found = solve(
        SimpleIndex(pipconfig.index_url(), timeout_s=60),
        Target(python="3.12", cuda="12.8"),
        need_sdist=True,
    )
    print(
        f"\nvllm {found.vllm} (sdist sha256 {found.vllm_sdist_sha256}), torch {found.torch}"
        f" [{found.torch_cuda_requirement}], torchvision {found.torchvision},"
        f" torchaudio {found.torchaudio}, flashinfer {found.flashinfer}"
    )
    for line in found.skipped:
        print("  refused", line)
    assert found.torch_cuda_requirement.startswith("nvidia-cuda-runtime-cu12==12.8.")
    assert len(found.vllm_sdist_sha256) == 64
