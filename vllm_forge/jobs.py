"""MAX_JOBS sizing from cores AND memory.

vLLM's setup.py runs `max(1, MAX_JOBS // NVCC_THREADS)` ninja jobs, each an nvcc with
NVCC_THREADS threads; nvcc's threads only split work across gencode targets, so a job holds
about min(NVCC_THREADS, number of targets) device compiles in memory at once. vLLM's heaviest
translation units (CUTLASS GEMMs, Marlin, FlashAttention) peak at several GB each: sizing by
cores alone is how a 32 GB desktop with 16 cores gets OOM-killed.
"""

from __future__ import annotations

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


def memory_bytes(
    meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")
) -> int:
    """Total memory, lowered to the cgroup limit when one applies."""
    total = 0
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    for limit_file in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        try:
            raw = limit_file.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < total:
            total = int(raw)
    return total


def plan(
    *,
    cores: int,
    memory: int,
    nvcc_threads: int,
    gencode_targets: int,
    requested: int | None = None,
) -> JobPlan:
    """MAX_JOBS for this machine, or the requested one (env / option / versions.toml)."""
    if requested is not None:
        return JobPlan(
            max_jobs=requested,
            nvcc_threads=nvcc_threads,
            ninja_jobs=max(1, requested // nvcc_threads),
            reason="requested",
        )
    busy_threads = max(1, min(nvcc_threads, gencode_targets))
    usable_gib = max(0, memory // GIB - RESERVED_GIB)
    by_memory = max(1, usable_gib // (GIB_PER_COMPILE * busy_threads))
    ninja_jobs = max(1, min(cores, by_memory))
    limit = "memory" if by_memory < cores else "cores"
    return JobPlan(
        max_jobs=ninja_jobs * nvcc_threads,
        nvcc_threads=nvcc_threads,
        ninja_jobs=ninja_jobs,
        reason=(
            f"auto: {cores} cores, {memory // GIB} GiB ({GIB_PER_COMPILE} GiB per nvcc compile, "
            f"{RESERVED_GIB} GiB reserved) -> {ninja_jobs} job(s), limited by {limit}"
        ),
    )


def plan_here(*, nvcc_threads: int, gencode_targets: int, requested: int | None) -> JobPlan:
    return plan(
        cores=len(os.sched_getaffinity(0)),
        memory=memory_bytes(),
        nvcc_threads=nvcc_threads,
        gencode_targets=gencode_targets,
        requested=requested,
    )
