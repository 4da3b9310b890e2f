"""The index client and the whole bump, against a loopback index and a real loopback registry."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import bumpkit
import pytest
from bumpkit import (
    CU128,
    PINS,
    PROFILES,
    REVISION,
    TORCH,
    LoopbackIndex,
    bump,
    free_port,
)

from vllm_forge import pipconfig
from vllm_forge.bump import http
from vllm_forge.bump.pyindex import RangeFile, SimpleIndex, make_dist, read_wheel_metadata
from vllm_forge.bump.solve import Target, solve
from vllm_forge.errors import ConfigError, IndexError_, OutdatedError

index, registry, pins = bumpkit.index, bumpkit.registry, bumpkit.pins  # fixtures


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
    remote = RangeFile(http.Client(), index.url.replace("/simple", f"/files/{name}"))
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
    expected = bumpkit.sdist_sha256("vllm", "0.19.1")
    assert found.vllm_sdist_sha256 == expected
    wheels = {path.rsplit("/", 1)[1] for path in index.fetched()}
    assert not any(
        name.startswith(("vllm-0.19.0", "vllm-0.18.0", "vllm-0.19.3")) for name in wheels
    )
    assert "vllm-0.19.2rc1" not in " ".join(wheels)


def test_unreachable_index_is_one_line():
    url = f"http://127.0.0.1:{free_port()}/simple"
    with pytest.raises(IndexError_, match="cannot reach 127.0.0.1") as info:
        SimpleIndex(url, timeout_s=2).files("vllm")
    assert f"the package index {url}" in str(info.value) and "\n" not in str(info.value)


def test_index_answering_503_is_retried_by_the_default_session(index: LoopbackIndex):
    index.state.unavailable = 2
    assert SimpleIndex(index.url).files("torch")
    assert [status for _, _, status in index.state.seen[:3]] == [503, 503, 200]


# ---------------------------------------------------------------------------- the whole bump
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
        old_sha=bumpkit.sdist_sha256("vllm", "0.19.1"),
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
    assert (
        f"note: [flashinfer].revision {REVISION} is not moved by bump (it cannot read git tags),"
        " and cudnn, local, rtx5090 build flashinfer from it: set it to the commit of tag v0.6.6"
    ) in out
    assert "(v0.6.5)" not in out  # the revision's tag is not guessed from the old version
    assert "localhost/" not in out
    # The locks follow, beside this pins file (the Project decides where), one per profile.
    locks = path.parent / "locks"
    assert captured.err == ""
    for profile in PROFILES:
        lock = (locks / f"{profile}.txt").read_text()
        assert "vllm==0.19.1" in lock and "torch==2.10.0" in lock and "--hash=sha256:" in lock
        assert f"lock: wrote {locks / profile}.txt" in out
        build = (locks / f"{profile}-build.txt").read_text()  # the compile stages' tools
        assert "wheel==0.45.1" in build and "torch==" not in build
        assert f"lock: wrote {locks / profile}-build.txt" in out


def _index_url(text: str) -> str:
    return text.split('index_url = "', 1)[1].split('"', 1)[0]


def test_a_failed_relock_fails_the_bump_and_the_pins_stay_written(pins, capsys, monkeypatch):
    path, _, _ = pins
    monkeypatch.setattr("vllm_forge.lock.uv_binary", _no_uv)
    assert bump(path, "--packages-only") == ConfigError.exit_code
    captured = capsys.readouterr()
    assert 'version = "0.19.1"' in path.read_text()
    assert "is updated but the locks are not (uv is not installed" in captured.err
    assert captured.err.count("\n") == 1 and captured.err.startswith("vllm-forge: error: ")


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


def test_allow_minor_with_images_only_holds_the_bases_on_the_pinned_cuda(pins, capsys):
    path, host, digests = pins
    assert bump(path, "--images-only", "--allow-minor") == 0
    after = path.read_text()
    assert f"12.8.1-devel-ubuntu24.04@{digests['12.8.1-devel-ubuntu24.04']}" in after
    assert "12.9" not in after and "13.0" not in after
    assert 'version = "0.18.0"' in after  # packages untouched
    assert "note: CUDA 12.9 bases exist; held at CUDA 12.8" in capsys.readouterr().out


def test_allow_minor_holds_the_bases_when_no_torch_is_built_for_the_newer_cuda(pins, capsys):
    path, _, _ = pins
    assert bump(path, "--allow-minor", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "note: CUDA 12.9 bases exist; held at CUDA 12.8: no vLLM release" in out
    assert "12.9.0-devel" not in out and '+version = "12.9"' not in out
    assert "12.8.1-devel-ubuntu24.04@" in out  # the patch move within 12.8 still happens


def test_allow_minor_moves_bases_cuda_and_torch_together(tmp_path, registry, monkeypatch, capsys):
    host, digests = registry
    (tmp_path / "index129").mkdir()
    with bumpkit.loopback_index(tmp_path / "index129", cu129=True) as index129:
        path = bumpkit.write_pins(tmp_path, host, digests, index129.url, monkeypatch)
        assert bump(path, "--allow-minor", "--profile", "rtx5090") == 0
        after = path.read_text()
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("cuda.version ")]
    assert line.endswith(" 12.8 → 12.9  (the bases and torch 2.10.1 move to CUDA 12.9)")
    for tag in (
        "12.9.0-devel-ubuntu24.04",
        "12.9.0-base-ubuntu24.04",
        "12.9.0-cudnn-devel-ubuntu24.04",
    ):
        assert f"{tag}@{digests[tag]}" in after
    assert '[cuda]\nversion = "12.9"' in after and 'version = "2.10.1"' in after
    for profile in PROFILES:  # and the locks follow: torch's CUDA runtime is 12.9's
        assert (
            "nvidia-cuda-runtime-cu12==12.9.79"
            in (path.parent / "locks" / f"{profile}.txt").read_text()
        )


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
    assert "cannot reach 127.0.0.1" in err and err.count("\n") == 1
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


# ---------------------------------------------------------------------------- hostile index
class _DrippingIndex(bumpkit.QuietHandler):
    """Sends its answer one byte every 0.2 s: never silent for long, never done in time."""

    def do_GET(self) -> None:
        body = b"<html>" + b" " * 200 + b"</html>"
        self.send_response(206 if "Range" in self.headers else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
        self.end_headers()
        with contextlib.suppress(OSError):
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(0.2)


def _dripping_client() -> SimpleIndex:
    return SimpleIndex("", http=http.Client(deadline_s=2, read_timeout_s=2))


def test_a_dripping_index_page_ends_at_the_deadline():
    with bumpkit.serve(_DrippingIndex) as base:
        client = _dripping_client()
        client.url = f"{base}/simple"
        started = time.monotonic()
        with pytest.raises(IndexError_, match="did not finish in 2 s") as info:
            client.files("vllm")
    assert time.monotonic() - started < 3.0
    assert "\n" not in str(info.value)


def test_a_dripping_wheel_read_ends_at_the_deadline():
    with bumpkit.serve(_DrippingIndex) as base:
        wheel = make_dist(f"torch-2.10.0-{TORCH}.whl", f"{base}/files/torch.whl")
        started = time.monotonic()
        with pytest.raises(IndexError_, match="did not finish in 2 s"):
            _dripping_client().metadata(wheel)
    assert time.monotonic() - started < 3.0
