"""MAX_JOBS and the compile memory budget, from cores AND memory.

vLLM's setup.py runs `max(1, MAX_JOBS // NVCC_THREADS)` ninja jobs, each an nvcc with
NVCC_THREADS threads; nvcc's threads only split work across gencode targets. vLLM's and
FlashInfer's compile units differ tenfold in memory: most of vLLM's peak at 2.4-2.8 GiB, its
FlashAttention 2 units at 4-5, four sm120 CUTLASS units at 7.5-10.8 GiB. One MAX_JOBS cannot serve
both (a flat 5 GiB per job OOMs when three CUTLASS units meet; a flat 11 leaves a 32 GB desktop two
jobs for hours). So ninja gets a job per core, and every compile passes scripts/compile_admit.py,
which starts it only when its own expected peak (compile_memory.toml, measured where measured) fits
in the memory budget beside the compiles already running. `simulate` replays that policy over the
table's inventory of units to give each machine an expected peak and wall time.
"""

from __future__ import annotations

import fnmatch
import math
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

GIB = 1024**3
MIB = 1024**2
# Left for the OS, the engine, ninja, ccache and the rest of the build.
RESERVED_GIB = 4
COMPILE_TABLE = Path(__file__).with_name("compile_memory.toml")


@dataclass(frozen=True, kw_only=True)
class JobPlan:
    max_jobs: int  # the MAX_JOBS handed to vLLM's setup.py and FlashInfer's ninja
    nvcc_threads: int
    ninja_jobs: int  # compiles started at once: max(1, max_jobs // nvcc_threads)
    reason: str
    memory_budget_mib: int = 0  # what admitted compiles may expect to use together (0: no limit)


CGROUP = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_dirs(
    controller: str, cgroup: Path = CGROUP, proc: Path = PROC_SELF_CGROUP
) -> list[Path]:
    """Where this process's limits for `controller` may be written, most specific first.

    cgroup v2 (`0::/path`): `cgroup/path`; v1 (`N:cpu,cpuacct:/path`): `cgroup/cpu/path` (and the
    joined `cpu,cpuacct` mount). Each with its parents up to the mount point (a limit set above
    applies too), then the mount point itself, which is what a container sees of its own cgroup.
    """
    paths: list[Path] = []
    for line in (_read(proc) or "").splitlines():
        _, controllers, where = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        names = controllers.split(",") if controllers else []
        if not names:  # v2
            mounts = [cgroup]
        elif controller in names:
            mounts = [cgroup / controller, cgroup / controllers]
        else:
            continue
        rel = Path(where.lstrip("/"))
        for mount in mounts:
            for part in [rel, *rel.parents]:
                paths.append(mount / part)
    paths += [cgroup, cgroup / controller]
    return list(dict.fromkeys(paths))


def memory_bytes(
    meminfo: Path = Path("/proc/meminfo"), cgroup: Path = CGROUP, proc: Path = PROC_SELF_CGROUP
) -> int:
    """Total memory, lowered to the smallest cgroup limit that applies (v1 or v2)."""
    total = 0
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    for directory in cgroup_dirs("memory", cgroup, proc):
        for name in ("memory.max", "memory.limit_in_bytes"):
            raw = _read(directory / name) or ""
            if raw.isdigit() and 0 < int(raw) < total:
                total = int(raw)
    return total


def cpu_quota(cgroup: Path = CGROUP, proc: Path = PROC_SELF_CGROUP) -> int | None:
    """The CPUs a cgroup quota allows (rounded up), or None without a quota.

    v2: `cpu.max` is "QUOTA PERIOD" or "max PERIOD"; v1: `cpu.cfs_quota_us` (-1: none) over
    `cpu.cfs_period_us`. `docker run --cpus 2` sets exactly these.
    """
    found: list[int] = []
    for directory in cgroup_dirs("cpu", cgroup, proc):
        quota_period: list[str] = (_read(directory / "cpu.max") or "").split()
        if not quota_period:
            quota_period = [
                _read(directory / "cpu.cfs_quota_us") or "",
                _read(directory / "cpu.cfs_period_us") or "",
            ]
        if len(quota_period) == 2 and all(p.lstrip("-").isdigit() for p in quota_period):
            quota, period = (int(p) for p in quota_period)
            if quota > 0 and period > 0:
                found.append(max(1, math.ceil(quota / period)))
    return min(found) if found else None


def cores_here(cgroup: Path = CGROUP, proc: Path = PROC_SELF_CGROUP) -> tuple[int, str]:
    """(usable cores, how they were counted): the CPU affinity, lowered by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0))
    quota = cpu_quota(cgroup, proc)
    if quota is not None and quota < cores:
        return quota, f"{quota} cores (cgroup CPU quota; {cores} online)"
    return cores, f"{cores} cores"


def plan(
    *,
    cores: int,
    memory: int,
    nvcc_threads: int,
    gencode_targets: int,
    requested: int | None = None,
    cores_note: str | None = None,
) -> JobPlan:
    """A compile job per core (or the requested MAX_JOBS), within a memory budget that the
    admission launcher enforces per compile: memory less a reserve, divided among the gencode
    targets one nvcc compiles at once (the table's peaks are for one target)."""
    cores_note = cores_note or f"{cores} cores"
    busy_threads = max(1, min(nvcc_threads, gencode_targets))
    usable = max(GIB, memory - RESERVED_GIB * GIB)
    budget_mib = usable // MIB // busy_threads
    admitted = (
        f"each compile admitted by its expected peak (compile_memory.toml) within "
        f"{budget_mib / 1024:.0f} GiB of {memory // GIB} GiB ({RESERVED_GIB} GiB reserved)"
    )
    if requested is not None:
        return JobPlan(
            max_jobs=requested,
            nvcc_threads=nvcc_threads,
            ninja_jobs=max(1, requested // nvcc_threads),
            reason=f"requested; {admitted}",
            memory_budget_mib=budget_mib,
        )
    return JobPlan(
        max_jobs=cores * nvcc_threads,
        nvcc_threads=nvcc_threads,
        ninja_jobs=cores,
        reason=f"auto: {cores_note} -> {cores} job(s); {admitted}",
        memory_budget_mib=budget_mib,
    )


# ---- the unit table, and what a machine can expect ------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UnitKind:
    name: str
    pattern: str
    gib: float
    seconds: float
    count: int
    source: str  # "measured: ..." or "estimate: ..."
    stage: str  # "vllm" or "flashinfer"


def unit_kinds(path: Path = COMPILE_TABLE) -> list[UnitKind]:
    table = tomllib.loads(path.read_text())
    return [
        UnitKind(
            name=rule["name"],
            pattern=rule["pattern"],
            gib=float(rule["gib"]),
            seconds=float(rule["seconds"]),
            count=int(rule["count"]),
            source=rule["source"],
            stage="flashinfer" if rule["name"].startswith("flashinfer") else "vllm",
        )
        for rule in table["unit"]
    ]


@dataclass(frozen=True, kw_only=True)
class Simulated:
    seconds: float
    peak_gib: float  # the most expected memory in use at once
    busy: float  # mean fraction of the job slots compiling


def simulate(units: list[tuple[float, float]], *, jobs: int, budget_gib: float) -> Simulated:
    """Replay the admission policy: ninja hands `jobs` units (gib, seconds) to the launcher in
    order; a unit starts when its peak fits beside the running ones (alone if above the budget)."""
    pending = list(units)
    running: list[tuple[float, float]] = []  # (end time, gib)
    now = peak = work = 0.0
    while pending or running:
        window = pending[: max(0, jobs - len(running))]
        for unit in window:
            used = sum(g for _, g in running)
            gib, seconds = unit
            if not running or used + gib <= budget_gib:
                running.append((now + seconds, gib))
                pending.remove(unit)
                work += seconds
                peak = max(peak, used + gib)
        now = min(end for end, _ in running)
        running = [(end, g) for end, g in running if end > now]
    return Simulated(seconds=now, peak_gib=peak, busy=work / (now * jobs) if now else 0.0)


def kind_of(source: str, kinds: Sequence[UnitKind]) -> str:
    """A unit's kind: the first whose pattern matches its source (scripts/compile_admit.py's
    rule, which runs alone in the image and so keeps its own copy), else "default"."""
    return next((k.name for k in kinds if fnmatch.fnmatch(source, k.pattern)), "default")


T = TypeVar("T")


def spread(groups: Iterable[list[T]]) -> list[T]:
    """The items of every group, each group spread evenly over the whole sequence and the groups
    interleaved in the order given: how ninja meets the kinds of units (it follows the targets'
    source lists, not the units' weights)."""
    placed = [
        ((i + 0.5) / len(group), n, i, item)
        for n, group in enumerate(groups)
        for i, item in enumerate(group)
    ]
    return [item for *_, item in sorted(placed, key=lambda p: p[:3])]


def stage_units(kinds: list[UnitKind], stage: str) -> list[tuple[float, float]]:
    """The stage's units in the order ninja is assumed to start them (`spread`)."""
    return spread([(k.gib, k.seconds)] * k.count for k in kinds if k.stage == stage)


MACHINES = (("16 cores, 32 GB", 16, 32), ("24 cores, 64 GB", 24, 64))


STAGES = ("vllm", "flashinfer")  # the rtx5090 profile's compile stages, one after the other


def expected_compile(
    kinds: list[UnitKind], *, cores: int, memory_gib: float
) -> tuple[float, dict[str, Simulated]]:
    """(memory budget in GiB, {stage: the admission replayed}) for a machine of that size."""
    budget = plan(cores=cores, memory=round(memory_gib * GIB), nvcc_threads=1, gencode_targets=1)
    budget_gib = budget.memory_budget_mib / 1024
    return budget_gib, {
        stage: simulate(stage_units(kinds, stage), jobs=cores, budget_gib=budget_gib)
        for stage in STAGES
    }


def machine_lines(kinds: list[UnitKind], machines=MACHINES) -> list[str]:
    """Expected peak and compile time per stage for a few machines (the table's inventory)."""
    lines = []
    for label, cores, gb in machines:
        budget_gib, stages = expected_compile(kinds, cores=cores, memory_gib=gb)
        for stage, sim in stages.items():
            lines.append(
                f"{label:16} {stage:10} {cores:3} jobs, budget {budget_gib:4.0f}"
                f" GiB: ~{sim.seconds / 60:4.0f} min, expected peak {sim.peak_gib:4.1f} GiB, "
                f"cores busy {sim.busy:4.0%}"
            )
    return lines


def report(here: JobPlan, kinds: list[UnitKind] | None = None) -> list[str]:
    """`nox -s jobs`: the unit table with where each figure comes from, then what this machine
    and two desktops can expect from the rtx5090 profile's compiles (one stage after the other)."""
    kinds = unit_kinds() if kinds is None else kinds
    lines = ["compile units (compile_memory.toml; peak GiB, seconds each, count, source):"]
    lines += [f"  {k.name:34} {k.gib:5.1f} {k.seconds:5.0f} {k.count:5}  {k.source}" for k in kinds]
    lines.append("expected for the rtx5090 profile (simulated admission over that inventory):")
    cores = max(1, here.ninja_jobs)
    this = (f"this machine ({cores} jobs)", cores, here.memory_budget_mib / 1024 + RESERVED_GIB)
    lines += ["  " + line for line in machine_lines(kinds, (*MACHINES, this))]
    return lines


def plan_here(*, nvcc_threads: int, gencode_targets: int, requested: int | None) -> JobPlan:
    cores, cores_note = cores_here()
    return plan(
        cores=cores,
        memory=memory_bytes(),
        nvcc_threads=nvcc_threads,
        gencode_targets=gencode_targets,
        requested=requested,
        cores_note=cores_note,
    )
