"""scripts/compile_admit.py: compiles admitted by their expected peak memory, with real processes.

Fake compiles (a Python child that records when it starts and ends) run through the real launcher,
many at once as ninja would start them; the test reads back who ran alongside whom.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADMIT = ROOT / "vllm_forge" / "scripts" / "compile_admit.py"
sys.path.insert(0, str(ADMIT.parent))
import compile_admit  # noqa: E402

from vllm_forge import pins  # noqa: E402

EMPTY = {"running": {}, "waiting": {}}
TABLE = """\
[default]
gib = 1.0
seconds = 1
source = "test"

[[unit]]
name = "heavy"
pattern = "*heavy*.cu"
gib = 6.0
seconds = 1
count = 1
source = "test"

[[unit]]
name = "huge"
pattern = "*huge*.cu"
gib = 20.0
seconds = 1
count = 1
source = "test"
"""

# A compile that takes `seconds` and writes "start|end NAME TIME" lines to the events file.
FAKE_COMPILE = """\
import sys, time
events, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(events, "a") as f: f.write(f"start {name} {time.monotonic()}\\n")
time.sleep(seconds)
with open(events, "a") as f: f.write(f"end {name} {time.monotonic()}\\n")
sys.exit(3 if "fails" in name else 0)
"""


@pytest.fixture
def rig(tmp_path):
    table = tmp_path / "table.toml"
    table.write_text(TABLE)
    fake = tmp_path / "fake_compile.py"
    fake.write_text(FAKE_COMPILE)
    events = tmp_path / "events"
    env = {
        **os.environ,
        "FORGE_ADMIT_TABLE": str(table),
        "FORGE_ADMIT_DIR": str(tmp_path / "state"),
        "FORGE_MEM_BUDGET_MIB": str(8 * 1024),
    }

    def start(name: str, seconds: float = 1.0, **extra_env) -> subprocess.Popen:
        argv = [sys.executable, str(ADMIT), sys.executable, str(fake), str(events), name]
        return subprocess.Popen(
            [*argv, str(seconds)],
            env={**env, **extra_env},
            stderr=subprocess.PIPE,
            text=True,
        )

    def intervals() -> dict[str, tuple[float, float]]:
        spans: dict[str, list[float]] = {}
        for line in events.read_text().splitlines():
            _, name, when = line.split()
            spans.setdefault(name, []).append(float(when))
        return {name: (times[0], times[1]) for name, times in spans.items()}

    def wait_started(name: str) -> None:
        deadline = time.monotonic() + 20
        while not events.exists() or f"start {name} " not in events.read_text():
            if time.monotonic() > deadline:
                pytest.fail(f"{name} never started")
            time.sleep(0.05)

    rig = type("Rig", (), {})()
    rig.wait_started = wait_started
    rig.start, rig.intervals, rig.env, rig.state = start, intervals, env, tmp_path / "state"
    return rig


def _peak_expected(spans: dict[str, tuple[float, float]]) -> float:
    """The most GiB expected at any moment, from who ran alongside whom."""
    gib = lambda name: 20.0 if "huge" in name else 6.0 if "heavy" in name else 1.0  # noqa: E731
    return max(
        sum(gib(other) for other, (s, e) in spans.items() if s <= start < e)
        for start, _ in spans.values()
    )


def test_light_units_fill_the_budget_and_heavy_ones_never_overlap_beyond_it(rig):
    names = ["heavy-a.cu", "heavy-b.cu", "heavy-c.cu"] + [f"light-{i}.cu" for i in range(6)]
    procs = [rig.start(names[0], 2.0)]
    rig.wait_started(names[0])  # then the rest, all at once, as ninja would
    procs += [rig.start(name, 1.0) for name in names[1:]]
    assert [p.wait(timeout=60) for p in procs] == [0] * len(procs)
    spans = rig.intervals()
    assert set(spans) == set(names)
    # 8 GiB: a heavy unit (6) and two light ones (1 each) side by side, never more
    assert _peak_expected(spans) == 8.0
    heavy = sorted(spans[n] for n in names if n.startswith("heavy"))
    assert all(a[1] <= b[0] for a, b in zip(heavy, heavy[1:], strict=False)), (
        "two heavy units ran together"
    )


def test_a_unit_above_the_whole_budget_runs_alone(rig):
    procs = [rig.start("light-1.cu", 1.5), rig.start("huge.cu", 1.0), rig.start("light-2.cu", 1.5)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    spans = rig.intervals()
    start, end = spans["huge.cu"]
    others = [spans["light-1.cu"], spans["light-2.cu"]]
    assert all(e <= start or s >= end for s, e in others)


def test_a_dead_compile_does_not_hold_its_memory(rig):
    rig.state.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ledger = {"running": {str(dead.pid): 8 * 1024}, "waiting": {str(dead.pid): [0, 1024]}}
    (rig.state / "ledger.json").write_text(json.dumps(ledger))
    began = time.monotonic()
    proc = rig.start("heavy-a.cu", 0.1)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - began < 5
    assert json.loads((rig.state / "ledger.json").read_text()) == EMPTY


def test_exit_code_and_the_record_of_each_compile(rig):
    assert rig.start("light-fails.cu", 0.1).wait(timeout=30) == 3
    assert rig.start("heavy-a.cu", 0.1).wait(timeout=30) == 0
    records = [json.loads(line) for line in (rig.state / "units.jsonl").read_text().splitlines()]
    assert [(r["rule"], r["expected_mib"], r["exit"]) for r in records] == [
        ("default", 1024, 3),
        ("heavy", 6144, 0),
    ]
    assert all(r["peak_mib"] > 0 and r["seconds"] >= 0.1 for r in records)
    out = subprocess.run(
        [sys.executable, str(ADMIT), "--summary"], env=rig.env, capture_output=True, text=True
    ).stdout.splitlines()
    assert out[0] == "vllm-forge-compile units 2"
    assert any(line.startswith("vllm-forge-compile heaviest ") for line in out)


def test_without_a_budget_nothing_waits(rig):
    rig.state.mkdir()
    ledger = {"running": {str(os.getpid()): 100 * 1024}, "waiting": {}}
    (rig.state / "ledger.json").write_text(json.dumps(ledger))
    began = time.monotonic()
    assert rig.start("heavy-a.cu", 0.1, FORGE_MEM_BUDGET_MIB="0").wait(timeout=30) == 0
    assert time.monotonic() - began < 5


def test_sigterm_reaches_the_compile_and_frees_its_memory(rig):
    proc = rig.start("heavy-a.cu", 30)
    rig.wait_started("heavy-a.cu")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) != 0
    assert json.loads((rig.state / "ledger.json").read_text()) == EMPTY


def test_the_real_table_covers_the_measured_units():
    table = compile_admit.tomllib.loads((ROOT / "vllm_forge" / "compile_memory.toml").read_text())
    cases = {
        "/src/vllm/csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm120_fp8.cu": 12800,
        "/src/vllm/.deps/vllm-flash-attn-src/csrc/flash_attn/src/flash_fwd_hdim128_bf16_sm80.cu": 5120,
        "/src/vllm/csrc/attention/paged_attention_v1.cu": 3584,
        "/src/vllm/csrc/layernorm_kernels.cu": 3584,
        # heavy units the stratified sample found among the light ones
        "/src/vllm/csrc/attention/mla/sm100_cutlass_mla_kernel.cu": 10240,
        "/src/vllm/csrc/quantization/w8a8/cutlass/scaled_mm_c2x.cu": 9216,
        "/src/flashinfer/build/aot/generated/batch_prefill_x/batch_prefill_sm80.cu": 1024,
        "/src/flashinfer/build/aot/generated/cutlass_instantiations/moe_sm120_0.cu": 8192,
    }
    for source, mib in cases.items():
        assert compile_admit.expected_mib(source, table)[0] == mib, source
    assert compile_admit.source_of(["nvcc", "-x", "cu", "-c", "/a/b.cu", "-o", "b.o"]) == "/a/b.cu"
    assert compile_admit.source_of(["nvcc", "--version"]) is None


def test_flashinfer_nvcc_wrapper_rewrites_its_options_and_goes_through_admission(rig, tmp_path):
    """scripts/nvcc_ccache.sh with FORGE_ADMIT set: admission, then ccache, then nvcc with -MD/-MF
    (a ccache and an nvcc that only record what they were given stand in for the real ones)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    (bin_dir / "ccache").write_text('#!/bin/sh\necho "ccache $*" >> "$SEEN"\nexec "$@"\n')
    (bin_dir / "nvcc").write_text('#!/bin/sh\necho "nvcc $*" >> "$SEEN"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {
        **rig.env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SEEN": str(seen),
        "NVCC_REAL": str(bin_dir / "nvcc"),
        "FORGE_ADMIT": str(ADMIT),
    }
    argv = [
        str(ADMIT.with_name("nvcc_ccache.sh")),
        "--generate-dependencies-with-compile", "--dependency-output", "k.cuda.o.d",
        "-c", "/src/flashinfer/build/aot/generated/page/page.cu", "-o", "k.cuda.o",
    ]  # fmt: skip
    assert subprocess.run(argv, env=env, timeout=60).returncode == 0
    calls = seen.read_text().splitlines()
    assert calls[-1].startswith("nvcc -MD -MF k.cuda.o.d -c ")
    (record,) = [json.loads(line) for line in (rig.state / "units.jsonl").read_text().splitlines()]
    assert record["rule"] == "default" and record["source"].endswith("/page.cu")


def test_a_starving_compile_goes_before_later_ones(rig, monkeypatch):
    """Lighter compiles may pass a heavy one waiting for memory, but not once it has waited
    STARVING_S: then the ones that came after it wait behind it."""
    rig.state.mkdir()
    ledger = compile_admit.Ledger(rig.state)
    me = str(os.getpid())
    now = time.time()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    starving = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:

        def seed(running, waiting):
            running[str(holder.pid)] = 6 * 1024  # a heavy unit compiling
            waiting[str(starving.pid)] = [now - 60, 6 * 1024]  # another, waiting for a minute
            return True

        ledger.update(seed)
        monkeypatch.setattr(compile_admit, "POLL_S", (0.05, 0.05))
        monkeypatch.setattr(
            compile_admit.time, "sleep", lambda _s: (_ for _ in ()).throw(TimeoutError)
        )
        # a light newcomer fits beside the running unit (1 + 6 <= 8) but must not pass
        with pytest.raises(TimeoutError):
            compile_admit.admit(ledger, 1024, 8 * 1024)
        state = json.loads((rig.state / "ledger.json").read_text())
        assert me not in state["running"] and me not in state["waiting"]  # left cleanly
        starving.kill()
        starving.wait()
        assert compile_admit.admit(ledger, 1024, 8 * 1024)[1] == 6 * 1024  # then it may
    finally:
        for proc in (holder, starving):
            proc.kill()
            proc.wait()


@pytest.mark.network
def test_cmake_runs_every_compile_through_the_launcher_the_build_sets(tmp_path):
    """The vllm-build stage's CMAKE_ARGS, as vLLM's setup.py passes them: its own
    `-DCMAKE_CXX_COMPILER_LAUNCHER=ccache` first, ours (a `;` list) after; the later one must win
    and the list must run as launcher, ccache, compiler. With the build lock's CMake and ninja."""
    from conftest import CACHE, install_or_skip

    from vllm_forge import render

    build_lock = (ROOT / "vllm_forge" / "locks" / "rtx5090-build.txt").read_text()
    runtime_lock = (ROOT / "vllm_forge" / "locks" / "rtx5090.txt").read_text()
    cmake_pin = next(ln.split()[0] for ln in build_lock.splitlines() if ln.startswith("cmake=="))
    ninja_pin = next(ln.split()[0] for ln in runtime_lock.splitlines() if ln.startswith("ninja=="))
    tools = [install_or_skip(pin, CACHE / pin.replace("==", "-")) for pin in (cmake_pin, ninja_pin)]
    env = {
        **os.environ,
        "PATH": os.pathsep.join([*(str(t / "bin") for t in tools), os.environ["PATH"]]),
        "PYTHONPATH": os.pathsep.join(str(t) for t in tools),
        "FORGE_MEM_BUDGET_MIB": "4096",
        "FORGE_ADMIT_DIR": str(tmp_path / "admit"),
        "FORGE_ADMIT_TABLE": str(ROOT / "vllm_forge" / "compile_memory.toml"),
        "CCACHE_DIR": str(tmp_path / "ccache"),
    }
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.26)\nproject(k CXX)\nadd_library(k SHARED k.cpp)\n"
    )
    (src / "k.cpp").write_text("int k() { return 1; }\n")
    ours = [
        arg.replace(render.ADMIT_SCRIPT, str(ADMIT))
        for arg in render.template_context(pins.load(ROOT / "versions.toml", "debian-pypi"))[
            "compile_launchers"
        ].split()
        if "CXX" in arg
    ]
    configure = ["cmake", "-S", str(src), "-B", str(tmp_path / "b"), "-G", "Ninja",
                 "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", *ours]  # fmt: skip
    subprocess.run(configure, env=env, check=True, capture_output=True, text=True)
    built = subprocess.run(
        ["cmake", "--build", str(tmp_path / "b"), "-v"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert f"python3 {ADMIT} ccache " in built.stdout
    (record,) = [json.loads(line) for line in (tmp_path / "admit" / "units.jsonl").open()]
    assert record["source"] == str(src / "k.cpp") and record["exit"] == 0
