"""vllm_forge.compilebench: the ninja parser, the sample rule, and real measurements.

The measuring tests run real processes: a Python child that holds ~200 MB shows a peak of at
least that (both the polled tree sum and the kernel's ru_maxrss), a child that itself starts a
child holding memory shows the sum, and the admission launcher keeps two heavy "units" apart. The
network test compiles a real kernel with the index's CUDA 13 nvcc through a ninja file written
the way FlashInfer's cpp_ext writes them.
"""

from __future__ import annotations

import json
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from vllm_forge.compilebench import (
    Command,
    family,
    family_table,
    kind_figures,
    kind_table,
    load_commands,
    main,
    module_family,
    parse_compile_commands,
    parse_ninja,
    refresh_table,
    rewrite,
    run_commands,
    sample,
    save_commands,
    stratified,
    tree_rss_bytes,
    unit_kind,
    vllm_cmake_argv,
)
from vllm_forge.jobs import UnitKind, kind_of, unit_kinds

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20

# A child that holds `mib` MiB resident (touched, not just reserved) for `secs` seconds.
HOLD = (
    "import sys,time; b=bytearray({mib}*1048576); b[::4096]=b'x'*len(b[::4096]); time.sleep({secs})"
)


def hold(mib: int, secs: float) -> list[str]:
    return [sys.executable, "-c", HOLD.format(mib=mib, secs=secs)]


# --- ninja files as FlashInfer's cpp_ext writes them ---------------------------------------------

NINJA = """\
ninja_required_version = 1.3
name = batch_prefill_x_head_dim_qk_128
cuda_home = /opt/cuda
cxx = c++
nvcc = $cuda_home/bin/nvcc

common_cflags = -DPy_LIMITED_API=0x03090000 $
    -isystem $cuda_home/include $
    -isystem /src/fi/include
cflags = $common_cflags $
    -fPIC
post_cflags =
cuda_cflags = $common_cflags $
    --expt-relaxed-constexpr $
    -gencode=arch=compute_120a,code=sm_120a $
    -O3
cuda_post_cflags =
ldflags = -shared $
    -L$cuda_home/lib64

rule compile
  command = $cxx -MMD -MF $out.d $cflags -c $in -o $out $post_cflags
  depfile = $out.d
  deps = gcc

rule cuda_compile
  command = $nvcc --generate-dependencies-with-compile --dependency-output $out.d $cuda_cflags -c $in -o $out $cuda_post_cflags
  depfile = $out.d
  deps = gcc

rule link
  command = $cxx $in $ldflags -o $out

build /b/m/paged_kernel_mask_1.cuda.o: cuda_compile /gen/m/paged_kernel_mask_1.cu
build /b/m/bind.o: compile /gen/m/bind.cpp

build /b/m/m.so: link /b/m/paged_kernel_mask_1.cuda.o /b/m/bind.o
default /b/m/m.so
"""


def test_parse_ninja_expands_variables_and_skips_the_link(tmp_path):
    path = tmp_path / "m" / "build.ninja"
    path.parent.mkdir()
    path.write_text(NINJA)
    cuda, cpp = parse_ninja(path)
    assert cuda.source == "/gen/m/paged_kernel_mask_1.cu"
    assert cuda.module == "m"
    assert cuda.argv[:4] == [
        "/opt/cuda/bin/nvcc",
        "--generate-dependencies-with-compile",
        "--dependency-output",
        "/b/m/paged_kernel_mask_1.cuda.o.d",
    ]
    assert "-isystem" in cuda.argv and "/opt/cuda/include" in cuda.argv
    assert "-gencode=arch=compute_120a,code=sm_120a" in cuda.argv
    assert cuda.argv[-4:] == [
        "-c",
        "/gen/m/paged_kernel_mask_1.cu",
        "-o",
        "/b/m/paged_kernel_mask_1.cuda.o",
    ]
    assert cpp.argv[0] == "c++" and "-fPIC" in cpp.argv and "$" not in " ".join(cpp.argv)


def test_rewrite_and_substitute_round_trip(tmp_path):
    path = tmp_path / "m" / "build.ninja"
    path.parent.mkdir()
    path.write_text(NINJA)
    commands = rewrite(parse_ninja(path), [("/opt/cuda", "@{cuda_home}"), ("/src/fi", "@{fi}")])
    assert commands[0].argv[0] == "@{cuda_home}/bin/nvcc"
    save_commands(commands, tmp_path / "c.json")
    (back, _cpp) = [
        c.substituted({"cuda_home": "/x/cuda", "fi": "/y/fi"})
        for c in load_commands(tmp_path / "c.json")
    ]
    assert back.argv[0] == "/x/cuda/bin/nvcc" and "/y/fi/include" in back.argv


def test_families_and_kinds_of_flashinfer_paths():
    assert (
        module_family(
            "batch_prefill_with_kv_cache_dtype_q_bf16_dtype_kv_e4m3_dtype_o_bf16_dtype_idx_i32_head_dim_qk_256"
        )
        == "batch_prefill"
    )
    assert module_family("single_decode_with_kv_cache_dtype_q_f16") == "single_decode"
    assert module_family("selective_state_update_s_bf16_i_bf16_w_bf16") == "selective_state_update"
    assert module_family("fused_moe_120") == "fused_moe_120"
    assert unit_kind("/g/batch_prefill_paged_kernel_mask_3.cu") == "batch_prefill_paged_kernel"
    assert unit_kind("/c/gemm_groupwise_e4m3_bf16_majorfalse_sm120.cu") == unit_kind(
        "/c/gemm_groupwise_e5m2_f16_majortrue_sm120.cu"
    )


def test_sample_takes_each_kind_once_from_the_largest_head_dim():
    def cmd(module, name):
        return Command(source=f"/g/{module}/{name}", argv=["true"], module=module)

    small = "batch_prefill_with_kv_cache_dtype_q_bf16_head_dim_qk_64_head_dim_vo_64"
    big = "batch_prefill_with_kv_cache_dtype_q_bf16_head_dim_qk_256_head_dim_vo_256"
    commands = [
        cmd(small, "batch_prefill_paged_kernel_mask_0.cu"),
        cmd(big, "batch_prefill_paged_kernel_mask_0.cu"),
        cmd(big, "batch_prefill_paged_kernel_mask_1.cu"),
        cmd(big, "batch_prefill.cu"),
        cmd("norm", "norm.cu"),
    ]
    chosen = sample(commands, "first-module")
    assert [(c.module, Path(c.source).name) for c in chosen] == [
        (big, "batch_prefill_paged_kernel_mask_0.cu"),
        (big, "batch_prefill.cu"),
        ("norm", "norm.cu"),
    ]
    assert {family(c) for c in chosen} == {"batch_prefill", "norm"}


# --- real measurements ---------------------------------------------------------------------------


def test_a_unit_holding_200_mib_shows_a_peak_of_at_least_that(tmp_path):
    commands = [
        Command(source="big.cu", argv=hold(200, 1.5), cwd=str(tmp_path)),
        Command(source="small.cu", argv=hold(10, 1.0), cwd=str(tmp_path)),
    ]
    report = run_commands(commands, jobs=2, logs=tmp_path / "logs", progress=lambda _l: None)
    big, small = report.units
    assert big.exit == 0 and small.exit == 0
    assert big.proc_peak_mib >= 200  # the kernel's high-water mark of the process
    assert big.tree_peak_mib >= 200  # the polled sum caught it while it slept
    assert small.peak_mib < 100
    assert 1.4 <= big.wall_s < 10
    assert report.peak_total_mib >= 200 + 5  # both ran at once
    assert report.wall_s < big.wall_s + small.wall_s  # ... in parallel


def test_the_tree_peak_sums_a_unit_and_its_children(tmp_path):
    # A launcher (like nvcc) whose child holds 150 MiB while a second child holds 150 MiB too.
    script = textwrap.dedent(f"""\
        import subprocess, sys
        a = subprocess.Popen({hold(150, 2.0)!r})
        b = subprocess.Popen({hold(150, 2.0)!r})
        sys.exit(a.wait() | b.wait())
    """)
    commands = [Command(source="nvcc-like.cu", argv=[sys.executable, "-c", script])]
    report = run_commands(commands, jobs=1, logs=tmp_path / "logs", progress=lambda _l: None)
    (unit,) = report.units
    assert unit.exit == 0
    assert unit.tree_peak_mib >= 300  # both children at once
    assert 150 <= unit.proc_peak_mib < 300  # ru_maxrss: the largest single process only


def test_tree_rss_of_this_process_is_positive():
    import os

    assert tree_rss_bytes(os.getpid()) > 10 * MIB


def test_a_failing_unit_is_reported_with_its_exit_code_and_log(tmp_path):
    commands = [
        Command(source="bad.cu", argv=[sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    ]
    report = run_commands(commands, jobs=1, logs=tmp_path / "logs", progress=lambda _l: None)
    assert report.units[0].exit == 3
    (log,) = (tmp_path / "logs").iterdir()
    assert "boom" in log.read_text()


def test_admission_keeps_two_heavy_units_apart_within_the_budget(tmp_path):
    table = tmp_path / "table.toml"
    table.write_text(
        '[default]\ngib = 0.1\nseconds = 1\nsource = "t"\n\n'
        '[[unit]]\nname = "heavy"\npattern = "*heavy*"\ngib = 0.25\nseconds = 1\ncount = 2\nsource = "t"\n'
    )
    commands = [
        Command(source=f"/x/heavy{i}.cu", argv=[*hold(200, 1.0), f"/x/heavy{i}.cu"])
        for i in range(2)
    ]
    report = run_commands(
        commands,
        jobs=2,
        logs=tmp_path / "logs",
        budget_mib=400,  # one heavy unit (256 MiB expected) at a time
        admit_table=table,
        progress=lambda _l: None,
    )
    assert all(u.exit == 0 for u in report.units)
    assert report.wall_s >= 2.0  # they ran one after the other
    assert max(u.waited_s for u in report.units) >= 0.5
    assert report.peak_total_mib < 400  # never both at once


def test_admission_without_a_table_of_its_own_uses_the_projects(tmp_path):
    """The launcher's own default (beside itself) holds in a build context, not in the package:
    run_commands hands it the project's table."""
    commands = [Command(source="/x/light.cu", argv=[*hold(20, 0.1), "/x/light.cu"])]
    report = run_commands(
        commands, jobs=1, logs=tmp_path / "logs", budget_mib=4096, progress=lambda _l: None
    )
    assert [u.exit for u in report.units] == [0]


def test_cli_run_writes_a_report_and_a_family_table(tmp_path, capsys):
    commands = [Command(source="@{here}/a.cu", argv=hold(50, 0.3), module="norm")]
    save_commands(commands, tmp_path / "c.json")
    code = main(["run", str(tmp_path / "c.json"), "-j", "1", "--root", f"here={tmp_path}",
                 "--out", str(tmp_path), "--name", "t"])  # fmt: skip
    assert code == 0
    data = json.loads((tmp_path / "t" / "report.json").read_text())
    assert data["units"][0]["source"] == f"{tmp_path}/a.cu"
    assert data["units"][0]["peak_mib"] >= 50
    assert "| norm | 1 |" in capsys.readouterr().out
    assert family_table(data["units"])[2].startswith("| norm | 1 |")


# --- CMake's exported commands, the table's kinds, the stratified sample ---------------------------


def test_compile_commands_give_the_exact_argv_and_the_cmake_target(tmp_path):
    path = tmp_path / "compile_commands.json"
    path.write_text(json.dumps([
        {"directory": "/b", "file": "/s/csrc/cache_kernels.cu",
         "output": "CMakeFiles/_C.dir/csrc/cache_kernels.cu.o",
         "command": '/cuda/bin/nvcc -DX="a b" -gencode arch=compute_120,code=sm_120 -c '
                    "/s/csrc/cache_kernels.cu -o CMakeFiles/_C.dir/csrc/cache_kernels.cu.o"},
        {"directory": "/b", "file": "/fa/hopper/instantiations/f.cu",
         "output": "vllm-flash-attn/CMakeFiles/_vllm_fa3_C.dir/hopper/instantiations/f.cu.o",
         "arguments": ["/cuda/bin/nvcc", "-c", "/fa/hopper/instantiations/f.cu"]},
    ]))  # fmt: skip
    first, second = parse_compile_commands(path)
    assert first.argv[1] == "-DX=a b" and first.argv[0] == "/cuda/bin/nvcc"
    assert (first.module, first.cwd, first.source) == ("_C", "/b", "/s/csrc/cache_kernels.cu")
    assert second.module == "_vllm_fa3_C" and second.argv[-1] == "/fa/hopper/instantiations/f.cu"
    assert (
        main(["cmake", str(path), "--out", str(tmp_path / "c.json"), "--prefix", "/s=@{vllm}"]) == 0
    )
    assert load_commands(tmp_path / "c.json")[0].source == "@{vllm}/csrc/cache_kernels.cu"


def test_the_projects_table_sorts_vllm_units_into_its_kinds():
    """First match wins, as in compile_admit.py: FA3's instantiations are named flash_fwd_* too,
    and must not count as FA2's."""
    rules = unit_kinds()
    assert kind_of("/v/fa/hopper/instantiations/flash_fwd_hdim64_bf16_sm90.cu", rules) == (
        "flash-attention-3"
    )
    assert kind_of("/v/fa/csrc/flash_attn/src/flash_fwd_hdim64_bf16_sm80.cu", rules) == (
        "flash-attention-2"
    )
    assert kind_of("/v/vllm/csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm120_fp8.cu", rules) == (
        "cutlass-sm120-fp8-gemm"
    )
    assert kind_of("/v/vllm/csrc/torch_bindings.cpp", rules) == "vllm-cpp"
    assert kind_of("/v/fa/hopper/flash_prepare_scheduler.cu", rules) == "default"


RULES = [
    UnitKind(name=n, pattern=f"*/{n}*", gib=1.0, seconds=1.0, count=1, source="t", stage="vllm")
    for n in ("a", "b")
]


def units_of(names: list[str]) -> list[Command]:
    return [Command(source=f"/s/{n}", argv=["true"]) for n in names]


def test_stratified_spreads_each_kind_and_honours_per_kind_counts():
    commands = units_of([f"a{i:02d}" for i in range(12)] + ["b0", "b1", "c0"])
    picked = [Path(c.source).name for c in stratified(commands, RULES, 3)]
    assert sorted(picked) == ["a02", "a06", "a10", "b0", "b1", "c0"]  # stride 4 from its middle
    assert picked.index("a02") < picked.index("a10")  # in the kind's order, kinds interleaved
    other = [Path(c.source).name for c in stratified(commands, RULES, 3, phase=0.0)]
    assert sorted(other) == ["a00", "a04", "a08", "b0", "b1", "c0"]
    only = [Path(c.source).name for c in stratified(commands, RULES, 0, {"a": 1, "default": 1})]
    assert sorted(only) == ["a06", "c0"]  # b left out


def measured(a5_peak_mib: float) -> list[dict]:
    """Two finished units of kind a (100 s and 260 s), one of b stopped at its deadline."""
    return [
        {"source": "/s/a1", "kind": "a", "exit": 0, "wall_s": 100.0, "peak_mib": 2048.0},
        {"source": "/s/a5", "kind": "a", "exit": 0, "wall_s": 260.0, "peak_mib": a5_peak_mib},
        {"source": "/s/b0", "kind": "b", "exit": -9, "wall_s": 400.0, "peak_mib": 9216.0,
         "finished": False},
    ]  # fmt: skip


def test_kind_table_extrapolates_mean_time_over_the_whole_count():
    commands = units_of([f"a{i}" for i in range(10)] + ["b0", "b1"])
    units = measured(3072.0)
    again = {"source": "/s/a5", "kind": "a", "exit": 0, "wall_s": 260.0, "peak_mib": 1024.0}
    rows = kind_table(commands, [*units, again], RULES)  # a5 measured twice: one unit
    assert "| a | 10 | 2 | 3.00 | 180 (260) | 0.50 |" in rows  # 180 s x 10 units = 0.5 job-hours
    assert "| b | 2 | 0 | - | > 400 | - |" in rows
    assert rows[-1] == "| all | 12 | 3 | | | 0.50 |"


TABLE_TEXT = """\
# comment kept
[default]
gib = 3.0

[[unit]]
name = "a"
pattern = "*/a*"
gib = 8.0
seconds = 150
count = 62
source = "estimate: a guess"

[[unit]]
name = "b"
pattern = "*/b*"
gib = 5.0
seconds = 230
count = 52
source = "estimate: untouched"
"""


def test_refresh_rewrites_only_the_measured_kinds_and_keeps_the_rest(tmp_path):
    commands = units_of([f"a{i}" for i in range(10)] + ["b0"])
    figures = kind_figures(commands, measured(3000.0), RULES)
    assert set(figures) == {"a"}  # b: nothing finished
    text = refresh_table(TABLE_TEXT, figures, "m16")
    table = tomllib.loads(text)
    a, b = table["unit"]
    assert (a["gib"], a["seconds"], a["count"]) == (3.5, 180, 10)  # 2.93 GiB + 10 % -> 3.5
    assert a["source"] == "measured: 2 of 10 (m16): peak 2.9 GiB, 100-260 s"
    assert b == tomllib.loads(TABLE_TEXT)["unit"][1]
    assert text.startswith("# comment kept\n[default]\ngib = 3.0\n")
    earlier = TABLE_TEXT.replace('source = "estimate: a guess"', 'source = "measured: 4 of 62"')
    kept = tomllib.loads(refresh_table(earlier, figures, "m16"))["unit"][0]
    assert (kept["gib"], kept["seconds"]) == (8.0, 180)  # the higher measured peak stays
    assert kept["source"].endswith("; gib kept from before (measured: 4 of 62)")


def test_a_unit_past_the_kill_deadline_is_reported_unfinished_with_its_peak(tmp_path):
    commands = [
        Command(source="/x/long.cu", argv=hold(80, 30)),
        Command(source="/x/later.cu", argv=hold(10, 0.1)),
    ]
    seen = []
    report = run_commands(
        commands, jobs=1, logs=tmp_path / "logs", kill_after_s=1.5, kinds=[],
        progress=lambda _l: None, on_result=seen.append,
    )  # fmt: skip
    (unit,) = report.units
    assert not unit.finished and unit.exit != 0
    assert 1.4 <= unit.wall_s < 10
    assert unit.peak_mib >= 80
    assert report.not_started == 1 and seen == [unit]


def test_no_unit_starts_after_stop_after_and_the_running_ones_finish(tmp_path):
    commands = [Command(source=f"/x/u{i}.cu", argv=hold(10, 0.6)) for i in range(3)]
    report = run_commands(
        commands, jobs=1, logs=tmp_path / "logs", stop_after_s=0.3, kinds=[],
        progress=lambda _l: None,
    )  # fmt: skip
    assert [u.finished for u in report.units] == [True]
    assert report.not_started == 2


def test_the_launcher_runs_between_admission_and_the_compiler(tmp_path):
    wrapper = tmp_path / "wrap.py"
    wrapper.write_text(
        "import os, sys\n"
        f"open({str(tmp_path / 'seen')!r}, 'a').write(sys.argv[1] + '\\n')\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n"
    )
    commands = [Command(source="/x/light.cu", argv=[*hold(10, 0.1), "/x/light.cu"])]
    report = run_commands(
        commands, jobs=1, logs=tmp_path / "logs", budget_mib=4096, kinds=[],
        launcher=[sys.executable, str(wrapper)], progress=lambda _l: None,
    )  # fmt: skip
    assert [u.exit for u in report.units] == [0]
    assert (tmp_path / "seen").read_text() == sys.executable + "\n"


@pytest.mark.network
def test_the_configure_passes_what_the_pinned_vllm_setup_py_passes(vllm_sdist):
    """Drift: every -D option of vllm_cmake_argv but the template's own and the export is one the
    real pinned sdist's setup.py (cmake_build_ext.configure) passes itself."""
    import tarfile

    with tarfile.open(vllm_sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/setup.py"))
        setup_py = tar.extractfile(member).read().decode()
    configure = setup_py[setup_py.index("def configure(") : setup_py.index("def build_extensions(")]
    argv = vllm_cmake_argv(Path("/v"), Path("/b"), python="py", nvcc="/c/bin/nvcc", jobs=4)
    ours = {"-DFETCHCONTENT_FULLY_DISCONNECTED", "-DCMAKE_POLICY_DEFAULT_CMP0170",
            "-DCMAKE_EXPORT_COMPILE_COMMANDS"}  # fmt: skip
    options = [a.split("=")[0] for a in argv if a.startswith("-D") and a.split("=")[0] not in ours]
    assert len(options) == 8
    for option in options:
        assert f'"{option}' in configure, f"{option} is not in the pinned setup.py's configure"
    assert '"-G", "Ninja"' in configure


# --- a real nvcc compile, FlashInfer-style ninja file --------------------------------------------


KERNEL = """\
#include <cuda_fp16.h>
template <int N> __global__ void axpy(__half *y, const __half *x, float a) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  #pragma unroll
  for (int k = 0; k < N; ++k) y[i * N + k] = __float2half(a * __half2float(x[i * N + k]) + __half2float(y[i * N + k]));
}
template __global__ void axpy<1>(__half *, const __half *, float);
template __global__ void axpy<8>(__half *, const __half *, float);
"""


@pytest.mark.network
def test_real_nvcc_units_from_a_flashinfer_style_ninja_file(cuda_home, tmp_path):
    gen = tmp_path / "generated" / "tiny_module"
    gen.mkdir(parents=True)
    (gen / "axpy_kernel_mask_0.cu").write_text(KERNEL)
    ninja = tmp_path / "cached_ops" / "tiny_module" / "build.ninja"
    ninja.parent.mkdir(parents=True)
    text = NINJA.replace("/opt/cuda", "@{cuda_home}").replace(
        "/gen/m/paged_kernel_mask_1.cu", f"{gen}/axpy_kernel_mask_0.cu"
    )
    text = text.replace("/b/m/", f"{ninja.parent}/").replace(
        "-isystem /src/fi/include", "--threads=1"
    )
    text = text.replace("build /b/m/bind.o: compile /gen/m/bind.cpp\n", "")
    ninja.write_text(text.replace("@{cuda_home}", str(cuda_home)))
    commands = [c for c in parse_ninja(ninja) if c.source.endswith(".cu")]
    assert len(commands) == 1 and commands[0].module == "tiny_module"
    report = run_commands(commands, jobs=1, logs=tmp_path / "logs", progress=lambda _l: None)
    (unit,) = report.units
    assert unit.exit == 0, (tmp_path / "logs").iterdir().__next__().read_text()
    assert Path(commands[0].output).stat().st_size > 1000
    assert unit.family == "tiny_module"
    # nvcc's stages (cudafe++, cicc, ptxas, the host compiler) need tens of MiB at least
    assert unit.proc_peak_mib > 20 and unit.tree_peak_mib > 20
    assert unit.cpu_s > 0.1 and unit.wall_s >= unit.cpu_s * 0.5
    assert "release 13.0" in report.machine.get("nvcc", "")
