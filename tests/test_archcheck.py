"""Architecture coverage (vllm_forge.verify.archcheck) and the kernel probe, without a GPU.

The parser tests run on cuobjdump output captured from real binaries. The rest use the real
tools: a CUDA 13 toolkit and cuobjdump pip-installed from the package index into build/.cache
(reused when present), real nvcc compiles, a real `make` of the probe.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vllm_forge
from vllm_forge.cuda_arch import nvcc_gencode_flags, parse_arch_list
from vllm_forge.errors import IndexError_, VerifyError
from vllm_forge.verify.archcheck import (
    NO_DEVICE_CODE,
    CoverageReport,
    CudaContents,
    coverage,
    ensure_cuobjdump,
    file_coverage,
    list_contents,
    parse_cuobjdump_listing,
    pip_install_target,
    required_targets,
    satisfies,
    sorted_targets,
)

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / ".cache"
PROBE_DIR = Path(vllm_forge.__file__).parent / "probe"

# `cuobjdump --list-elf --list-ptx` (13.2/13.5) on the probe built for
# 9.0, 12.0+PTX and 12.0a, stdout and stderr together.
LISTING_MULTI_ARCH = """\
ELF file    1: kernel-probe.1.sm_90.cubin
ELF file    2: kernel-probe.2.sm_120.cubin
PTX file    1: kernel-probe.1.sm_120.ptx
ELF file    3: kernel-probe.3.sm_120a.cubin
"""
# ... on a static library (nvcc -lib) for 9.0 and 10.0a with compute_100 PTX.
LISTING_ARCHIVE = """\

member /tmp/libt.a:tmpxft_00003085_00000000-12_t.o:
ELF file    1: libt.1.sm_90.cubin
ELF file    2: libt.2.sm_100a.cubin
PTX file    1: libt.1.sm_100.ptx
"""
# ... on a shared object built with code=compute_120 only.
LISTING_PTX_ONLY = """\
PTX file    1: ptxonly.1.sm_120.ptx
cuobjdump info    : No ELF file found to extract from '/tmp/ptxonly.so'. You may try with \
-all option.
"""
# ... on a host-only object (exit status 255).
LISTING_NO_DEVICE_CODE = (
    "cuobjdump info    : File '/tmp/pb/probe_main.o' does not contain device code\n"
)


# --- the parser and the arithmetic: pure, no tools --------------------------------------------


def test_parser_reads_sass_and_ptx_of_a_multi_arch_binary():
    contents = parse_cuobjdump_listing(LISTING_MULTI_ARCH)
    assert contents.sass == {"sm_90", "sm_120", "sm_120a"}
    assert contents.ptx == {"compute_120"}


def test_parser_skips_archive_member_headers():
    contents = parse_cuobjdump_listing(LISTING_ARCHIVE)
    assert contents.sass == {"sm_90", "sm_100a"}
    assert contents.ptx == {"compute_100"}


def test_parser_reads_a_ptx_only_binary_as_no_sass():
    contents = parse_cuobjdump_listing(LISTING_PTX_ONLY)
    assert contents.sass == frozenset()
    assert contents.ptx == {"compute_120"}
    assert contents.has_device_code


def test_parser_reads_no_device_code_message_as_empty():
    assert parse_cuobjdump_listing(LISTING_NO_DEVICE_CODE) == NO_DEVICE_CODE
    assert not NO_DEVICE_CODE.has_device_code


def test_arch_specific_sass_serves_the_plain_arch_but_not_the_reverse():
    assert satisfies("sm_120", "sm_120")
    assert satisfies("sm_120a", "sm_120")
    assert not satisfies("sm_120", "sm_120a")
    assert not satisfies("sm_121", "sm_120")
    assert not satisfies("sm_90", "sm_120")


def test_targets_sort_numerically():
    assert sorted_targets({"sm_120", "sm_90a", "sm_75", "sm_90", "sm_100"}) == [
        "sm_75",
        "sm_90",
        "sm_90a",
        "sm_100",
        "sm_120",
    ]


def test_required_targets_follow_the_arch_list_grammar():
    assert required_targets("9.0;12.0a") == {"sm_90", "sm_120a"}
    assert required_targets("12.0+PTX") == {"sm_120"}


def test_file_without_the_required_sass_reports_it_missing_and_the_rest_extra():
    result = file_coverage(Path("_C.abi3.so"), parse_cuobjdump_listing(LISTING_ARCHIVE), {"sm_120"})
    assert not result.ok
    assert result.missing == {"sm_120"}
    assert result.extra == {"sm_90", "sm_100a"}


def test_file_with_the_required_sass_is_ok_and_reports_only_other_capabilities_extra():
    result = file_coverage(
        Path("_C.abi3.so"), parse_cuobjdump_listing(LISTING_MULTI_ARCH), {"sm_120"}
    )
    assert result.ok
    assert result.missing == frozenset()
    assert result.extra == {"sm_90"}  # sm_120a serves 12.0: not waste


def test_ptx_alone_does_not_count_as_a_kernel_image():
    result = file_coverage(Path("p.so"), parse_cuobjdump_listing(LISTING_PTX_ONLY), {"sm_120"})
    assert result.missing == {"sm_120"}


def test_file_without_cuda_code_is_reported_as_such_not_as_a_failure():
    result = file_coverage(Path("libfoo.so"), NO_DEVICE_CODE, {"sm_120"})
    assert result.ok
    assert not result.has_device_code
    assert result.to_dict()["cuda_code"] is False


def test_report_table_and_failure_message_name_file_found_and_required():
    report = CoverageReport(
        frozenset({"sm_120"}),
        (
            file_coverage(Path("a.so"), parse_cuobjdump_listing(LISTING_ARCHIVE), {"sm_120"}),
            file_coverage(Path("b.so"), NO_DEVICE_CODE, {"sm_120"}),
            file_coverage(
                Path("c.so"), CudaContents(frozenset({"sm_120"}), frozenset()), {"sm_120"}
            ),
        ),
    )
    assert not report.ok
    assert [f.path.name for f in report.failing] == ["a.so"]
    table = report.table().splitlines()
    assert table[0].split() == ["file", "SASS", "PTX", "missing", "extra"]
    assert table[1].split() == [
        "a.so",
        "sm_90",
        "sm_100a",
        "compute_100",
        "sm_120",
        "sm_90",
        "sm_100a",
    ]
    assert "no CUDA code" in table[2]
    message = report.failure_message()
    assert "a.so: no SASS for sm_120 (found: sm_90 sm_100a; required: sm_120)" in message
    assert "b.so" not in message and "c.so" not in message
    assert json.loads(json.dumps(report.to_dict()))["files"][0]["missing"] == ["sm_120"]


# --- real tools from the package index --------------------------------------------------------


@pytest.fixture(scope="session")
def cuobjdump() -> Path:
    try:
        # use_path=False: exercise the index install even where a toolkit is on PATH.
        return ensure_cuobjdump(CACHE, use_path=False)
    except IndexError_ as err:
        if "index is unreachable" in str(err):
            pytest.skip(f"package index unreachable, cannot install cuobjdump: {err}")
        raise


TINY_KERNEL = "__global__ void scale(float *x, float a) { x[threadIdx.x] *= a; }\n"


def _build_shared_object(cuda_home: Path, arch_list: str, out: Path) -> Path:
    source = out.with_suffix(".cu")
    source.write_text(TINY_KERNEL)
    cmd = [
        str(cuda_home / "bin" / "nvcc"),
        "-shared",
        "-Xcompiler",
        "-fPIC",
        *nvcc_gencode_flags(parse_arch_list(arch_list)),
        f"-L{cuda_home / 'lib'}",
        str(source),
        "-o",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


@pytest.mark.network
def test_coverage_of_a_library_built_without_sm120_reports_it_missing(
    cuda_home, cuobjdump, tmp_path
):
    lib = _build_shared_object(cuda_home, "9.0", tmp_path / "libsm90.so")
    report = coverage([lib], required_targets("12.0"), cuobjdump)
    assert not report.ok
    (result,) = report.files
    assert result.contents.sass == {"sm_90"}
    assert result.missing == {"sm_120"}
    assert result.extra == {"sm_90"}
    assert "libsm90.so: no SASS for sm_120" in report.failure_message()


@pytest.mark.network
def test_coverage_of_a_library_built_for_sm120_is_ok(cuda_home, cuobjdump, tmp_path):
    lib = _build_shared_object(cuda_home, "12.0", tmp_path / "libsm120.so")
    assert list_contents(lib, cuobjdump).sass == {"sm_120"}
    report = coverage([lib], required_targets("12.0"), cuobjdump)
    assert report.ok, report.failure_message()
    assert report.files[0].extra == frozenset()


@pytest.mark.network
def test_host_only_binary_is_no_cuda_code_not_a_crash(cuobjdump):
    report = coverage([Path(sys.executable).resolve()], required_targets("12.0"), cuobjdump)
    assert report.ok
    assert not report.files[0].has_device_code


@pytest.mark.network
def test_file_cuobjdump_cannot_read_is_a_verify_error(cuobjdump, tmp_path):
    bogus = tmp_path / "not-a-binary.so"
    bogus.write_text("hello\n")
    with pytest.raises(VerifyError, match="cuobjdump could not read .*not-a-binary.so"):
        coverage([bogus], required_targets("12.0"), cuobjdump)


# --- the kernel probe, built by its Makefile --------------------------------------------------


def _make_probe(cuda_home: Path, arch_list: str, build_dir: Path) -> Path:
    gencode = " ".join(nvcc_gencode_flags(parse_arch_list(arch_list)))
    cmd = [
        "make",
        "-C",
        str(PROBE_DIR),
        "-j2",
        f"CUDA_HOME={cuda_home}",
        f"GENCODE={gencode}",
        f"BUILD_DIR={build_dir}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return build_dir / "kernel-probe"


def _gpu_driver_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


@pytest.mark.network
def test_probe_without_gpu_exits_3_and_says_no_gpu_or_no_driver(cuda_home, cuobjdump, tmp_path):
    if _gpu_driver_present():
        pytest.skip("an NVIDIA driver is present: this test pins the no-GPU outcome")
    probe = _make_probe(cuda_home, "12.0", tmp_path)

    text = subprocess.run([str(probe)], capture_output=True, text=True, check=False)
    assert text.returncode == 3, text.stdout + text.stderr
    assert "no driver" in text.stdout or "no GPU" in text.stdout
    assert "built for sm_120 with CUDA runtime 13.0" in text.stdout

    machine = subprocess.run([str(probe), "--json"], capture_output=True, text=True, check=False)
    assert machine.returncode == 3
    report = json.loads(machine.stdout)
    assert report["outcome"] in {"no_driver", "no_gpu", "driver_too_old", "driver_mismatch"}
    assert report["built_for"] == ["sm_120"]
    assert report["gpus"] == []

    # The binary carries what it says, and nothing else (no default-arch device-link cubin).
    assert list_contents(probe, cuobjdump).sass == {"sm_120"}


@pytest.mark.network
def test_probe_rebuilds_when_the_arch_list_changes(cuda_home, cuobjdump, tmp_path):
    env_json = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, whatever the machine
    for arch_list, sm in (("9.0", "sm_90"), ("12.0", "sm_120")):
        probe = _make_probe(cuda_home, arch_list, tmp_path)
        assert list_contents(probe, cuobjdump).sass == {sm}
        out = subprocess.run(
            [str(probe), "--json"], capture_output=True, text=True, check=False, env=env_json
        )
        assert out.returncode == 3
        assert json.loads(out.stdout)["built_for"] == [sm]


@pytest.mark.network
def test_probe_rejects_unknown_arguments_with_exit_1(cuda_home, tmp_path):
    probe = _make_probe(cuda_home, "12.0", tmp_path)
    out = subprocess.run([str(probe), "--bogus"], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert "usage: kernel-probe" in out.stderr


def test_pip_failure_to_reach_the_index_is_named_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # discard port: refused
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", " ")
    monkeypatch.setenv("PIP_FIND_LINKS", " ")
    monkeypatch.setenv("PIP_RETRIES", "1")
    target = tmp_path / "never"
    with pytest.raises(IndexError_, match="index is unreachable"):
        pip_install_target(["nvidia-cuda-cuobjdump==13.2.51"], target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no half-installed directory left behind


@pytest.mark.network
def test_probe_built_twice_is_the_same_file(cuda_home, tmp_path):
    """nvcc names its temporary host source after its PID; none of that may reach the binary.

    CI's podman repro once failed on exactly this: two cold builds, kernel-probe differing in the
    FILE symbol `tmpxft_<pid>_00000000-6_probe_kernel.cudafe1.cpp`. Two makes here run under
    different PIDs, so the test fails the same way if the Makefile stops stripping it.
    """
    first = _make_probe(cuda_home, "12.0", tmp_path / "a").read_bytes()
    second = _make_probe(cuda_home, "12.0", tmp_path / "b").read_bytes()
    assert b"tmpxft_" not in first
    assert first == second


# --- FlashInfer's compiles through ccache ------------------------------------------------------

NVCC_CCACHE = ROOT / "vllm_forge" / "scripts" / "nvcc_ccache.sh"


def _flashinfer_style_compile(nvcc: list[str], source: Path, env: dict) -> None:
    """One compile as FlashInfer's ninja rule spells it (jit/cpp_ext.py at v0.6.6)."""
    obj = source.with_suffix(".cuda.o")
    cmd = [
        *nvcc, "--generate-dependencies-with-compile", "--dependency-output", f"{obj}.d",
        "-gencode=arch=compute_120,code=sm_120", "-O3", "-std=c++17",
        "-c", str(source), "-o", str(obj),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    assert source.name in Path(f"{obj}.d").read_text()  # the dependency file is still written


def _ccache_hits(env: dict) -> int:
    out = subprocess.run(
        ["ccache", "--print-stats"], capture_output=True, text=True, check=True, env=env
    ).stdout
    stats = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    return int(stats.get("direct_cache_hit", 0)) + int(stats.get("preprocessed_cache_hit", 0))


@pytest.mark.network
@pytest.mark.skipif(shutil.which("ccache") is None, reason="ccache is not installed")
@pytest.mark.parametrize("through", ["wrapper", "plain ccache"])
def test_flashinfer_compiles_hit_ccache_only_through_the_wrapper(cuda_home, tmp_path, through):
    """A rebuild of an unchanged FlashInfer unit is a ccache hit through nvcc_ccache.sh; plain
    `ccache nvcc` with FlashInfer's long option spellings never is (the wrapper's reason)."""
    env = {**os.environ, "CCACHE_DIR": str(tmp_path / "ccache"), "CUDA_HOME": str(cuda_home)}
    env.pop("CCACHE_DISABLE", None)
    nvcc = [str(NVCC_CCACHE)] if through == "wrapper" else ["ccache", str(cuda_home / "bin/nvcc")]
    for _build in ("a", "b"):  # two build trees, same path: a wiped layer rebuilt
        work = tmp_path / "build"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        (work / "kernel.cu").write_text(TINY_KERNEL)
        _flashinfer_style_compile(nvcc, work / "kernel.cu", env)
    assert _ccache_hits(env) == (1 if through == "wrapper" else 0)
