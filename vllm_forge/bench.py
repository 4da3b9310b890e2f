"""`nox -s bench`: the speed and size numbers, measured and printed (never asserted in tests).

- rebuild after a source change: the probe stage built twice with --no-cache; the second
  compile is served by ccache (hit rate, seconds),
- the slim and builder images: build time with a warm layer cache, and sizes; what the slim
  image's runtime stage pruned by arch list (vllm_forge/prune.toml), entry by entry,
- a no-op rebuild (every layer cached): the whole command against the engine's own build,
- where the slim image's bytes go, package by package (site-packages),
- rendering time,
- the compile side, which no machine here can run: the unit table and the expected compile time
  of the rtx5090 profile on a 16-core / 32 GB desktop, shown as its derivation (`nox -s jobs`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import jobs as jobs_mod
from .build import build_image, default_tag
from .engines import Engine
from .jobs import JobPlan
from .pins import Pins
from .project import Project
from .prune import describe_pruned
from .render import render_dockerfile, source_pins_for


def run_bench(engine: Engine, pins: Pins, *, project: Project, jobs: JobPlan, echo=print) -> dict:
    quiet = lambda _line: None  # noqa: E731 - the build logs still go to build/logs
    start = time.perf_counter()
    source_pins = source_pins_for(pins, project)
    for _ in range(100):
        render_dockerfile(pins, project.templates, source_pins)
    results: dict = {"render_ms": (time.perf_counter() - start) * 10}
    probe_tag = f"localhost/vllm-forge-bench:{pins.profile}-probe"
    # Two compiles the layer cache cannot answer (MAX_JOBS values no build used before), not
    # --no-cache: docker 20.10's BuildKit gives --no-cache builds fresh cache mounts.
    unique = 1000 + time.time_ns() % 50_000
    try:
        probe = [
            build_image(
                engine, pins, target="kernel-probe", tag=probe_tag, project=project, echo=quiet,
                jobs=JobPlan(max_jobs=unique + i, nvcc_threads=1, ninja_jobs=unique + i,
                             reason="bench"),
            )
            for i in (0, 1)
        ]  # fmt: skip
    finally:
        engine.remove_image(probe_tag)
    stats = [p.ccache.get("kernel-probe") for p in probe]
    results["probe_cold_s"], results["probe_rebuild_s"] = probe[0].seconds, probe[1].seconds
    results["ccache_second_build"] = {
        "hits": stats[1].hits if stats[1] else None,
        "misses": stats[1].misses if stats[1] else None,
        "hit_rate": stats[1].hit_rate if stats[1] else None,
    }
    for target in ("builder", "runtime"):
        summary = build_image(
            engine, pins, target=target, tag=default_tag(pins.profile, target), jobs=jobs,
            project=project, echo=quiet,
        )  # fmt: skip
        results[f"{target}_s"] = summary.seconds
        results[f"{target}_gb"] = summary.size_bytes / 1e9
    results["runtime_pruned_bytes"] = dict(summary.pruned)
    # The same slim build again: every layer cached. The engine's part is its own build command.
    began = time.perf_counter()
    noop = build_image(
        engine, pins, target="runtime", tag=default_tag(pins.profile, "runtime"), jobs=jobs,
        project=project, echo=quiet,
    )  # fmt: skip
    results["noop_s"] = time.perf_counter() - began
    results["noop_engine_s"] = noop.seconds
    results["packages"] = package_sizes(engine, default_tag(pins.profile, "runtime"))
    results["compile"] = desktop_compile()
    project.reports.mkdir(parents=True, exist_ok=True)
    report = project.reports / f"bench-{pins.profile}-{engine.name}.json"
    report.write_text(json.dumps(results, indent=2) + "\n")
    echo(describe(engine, pins, results, report))
    return results


SITE_SIZES = (
    "cd /opt/venv/lib/python3*/site-packages && du -sk -- * | sort -rn | head -n 15"
    " && du -sk . | sed 's/\t.*/\tall of site-packages/'"
)


def package_sizes(engine: Engine, image: str) -> list[tuple[str, int]]:
    """The image's largest site-packages entries, (name, bytes), biggest first, then the total."""
    out = engine.run(engine.run_argv(image, ["-c", SITE_SIZES], entrypoint="/bin/sh")).stdout
    return parse_du(out)


def parse_du(text: str) -> list[tuple[str, int]]:
    """`du -sk` lines ("KIB<tab>NAME") -> [(name, bytes)]."""
    found = []
    for line in text.splitlines():
        kib, _, name = line.partition("\t")
        if kib.strip().isdigit() and name:
            found.append((name, int(kib) * 1024))
    return found


def desktop_compile(kinds: list[jobs_mod.UnitKind] | None = None) -> dict:
    """The rtx5090 profile's compile on a 16-core, 32 GB desktop, from the unit table."""
    kinds = jobs_mod.unit_kinds() if kinds is None else kinds
    label, cores, gb = jobs_mod.MACHINES[0]
    budget_gib, simulated = jobs_mod.expected_compile(kinds, cores=cores, memory_gib=gb)
    stages = {}
    for stage, sim in simulated.items():
        units = jobs_mod.stage_units(kinds, stage)
        measured = sum(
            k.count for k in kinds if k.stage == stage and k.source.startswith("measured")
        )
        stages[stage] = {
            "units": len(units),
            "units_of_measured_kinds": measured,
            "serial_s": sum(seconds for _, seconds in units),
            "seconds": sim.seconds,
            "peak_gib": sim.peak_gib,
        }
    return {"machine": label, "budget_gib": budget_gib, "stages": stages}


def describe(engine: Engine, pins: Pins, r: dict, report: Path) -> str:
    rate = r["ccache_second_build"]["hit_rate"]
    return "\n".join(
        [
            f"bench: {pins.profile} on {engine.name} {engine.version}",
            f"  render (Dockerfile)            {r['render_ms']:.1f} ms",
            f"  probe compile, first           {r['probe_cold_s']:.0f} s",
            f"  probe compile, layer-cache miss {r['probe_rebuild_s']:.0f} s; ccache hit rate "
            + ("n/a" if rate is None else f"{rate:.0%}"),
            f"  builder image                  {r['builder_gb']:.2f} GB in {r['builder_s']:.0f} s",
            f"  slim image                     {r['runtime_gb']:.2f} GB in {r['runtime_s']:.0f} s",
            "  pruned by arch list            "
            + (
                describe_pruned(r["runtime_pruned_bytes"])
                if r["runtime_pruned_bytes"]
                else "nothing"
            ),
            f"  no-op rebuild (all cached)     {r['noop_s']:.1f} s, of which the engine's own build "
            f"{r['noop_engine_s']:.1f} s",
            "  slim image by package (site-packages):",
            *(f"    {name:36} {size / 1e6:8.0f} MB" for name, size in r["packages"]),
            *describe_compile(r["compile"]),
            f"  report                         {report}",
        ]
    )


def describe_compile(c: dict) -> list[str]:
    """The expected first compile of the rtx5090 profile, as its derivation."""
    lines = [f"  rtx5090 compile on a {c['machine']} desktop (budget {c['budget_gib']:.0f} GiB;"
             " unit table vllm_forge/compile_memory.toml, `nox -s jobs`):"]  # fmt: skip
    total = 0.0
    for stage, s in c["stages"].items():
        total += s["seconds"]
        lines.append(
            f"    {stage:10} {s['units']:5} units ({s['units_of_measured_kinds']} of measured kinds)"
            f" x their seconds = {s['serial_s'] / 3600:.1f} h on one core -> admitted replay"
            f" {s['seconds'] / 60:.0f} min, peak {s['peak_gib']:.0f} GiB"
        )
    lines.append(f"    compiling, one stage after the other: ~{total / 60:.0f} min (plus downloads,"
                 " CMake, links and the other layers)")  # fmt: skip
    return lines
