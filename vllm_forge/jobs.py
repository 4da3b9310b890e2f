"""MAX_JOBS sizing from cores AND memory.

vLLM's setup.py runs `max(1, MAX_JOBS // NVCC_THREADS)` ninja jobs, each an nvcc with
NVCC_THREADS threads; nvcc's threads only split work across gencode targets, so a job holds
about min(NVCC_THREADS, number of targets) device compiles in memory at once. vLLM's heaviest
translation units (CUTLASS GEMMs, Marlin, FlashAttention) peak at several GB each: sizing by
cores alone is how a 32 GB desktop with 16 cores gets OOM-killed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
# Peak resident memory of one nvcc device compile of vLLM's heaviest sources, with margin.
GIB_PER_COMPILE = 5
# Left for the OS, the engine and the rest of the build.
RESERVED_GIB = 4


@dataclass(frozen=True, kw_only=True)
class JobPlan:
    max_jobs: int  # the MAX_JOBS handed to vLLM's setup.py
    nvcc_threads: int
    ninja_jobs: int  # what actually runs in parallel: max(1, max_jobs // nvcc_threads)
    reason: str


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
    """MAX_JOBS for this machine, or the requested one (env / option / versions.toml).

    A requested value is kept even above what memory allows (the person asked for it), but the
    reason says so: the build may be OOM-killed.
    """
    cores_note = cores_note or f"{cores} cores"
    busy_threads = max(1, min(nvcc_threads, gencode_targets))
    usable_gib = max(0, memory // GIB - RESERVED_GIB)
    by_memory = max(1, usable_gib // (GIB_PER_COMPILE * busy_threads))
    ninja_jobs = max(1, min(cores, by_memory))
    if requested is not None:
        asked = max(1, requested // nvcc_threads)
        reason = "requested"
        if asked > by_memory:
            reason = (
                f"requested, OVER the memory guard: {asked} compile job(s) x {GIB_PER_COMPILE} GiB"
                f" > {usable_gib} GiB usable of {memory // GIB} GiB (auto would give"
                f" {ninja_jobs * nvcc_threads}); the build may be OOM-killed"
            )
        return JobPlan(
            max_jobs=requested, nvcc_threads=nvcc_threads, ninja_jobs=asked, reason=reason
        )
    limit = "memory" if by_memory < cores else "cores"
    return JobPlan(
        max_jobs=ninja_jobs * nvcc_threads,
        nvcc_threads=nvcc_threads,
        ninja_jobs=ninja_jobs,
        reason=(
            f"auto: {cores_note}, {memory // GIB} GiB ({GIB_PER_COMPILE} GiB per nvcc compile, "
            f"{RESERVED_GIB} GiB reserved) -> {ninja_jobs} job(s), limited by {limit}"
        ),
    )


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
