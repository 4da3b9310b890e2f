"""`nox -s bench`: the speed and size numbers, measured and printed (never asserted in tests).

- rebuild after a source change: the probe stage built twice with --no-cache; the second
  compile is served by ccache (hit rate, seconds),
- the slim and builder images: build time with a warm layer cache, and sizes; what the slim
  image's runtime stage pruned by arch list (vllm_forge/prune.toml), entry by entry,
- rendering time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

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
    project.reports.mkdir(parents=True, exist_ok=True)
    report = project.reports / f"bench-{pins.profile}-{engine.name}.json"
    report.write_text(json.dumps(results, indent=2) + "\n")
    echo(describe(engine, pins, results, report))
    return results


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
            f"  report                         {report}",
        ]
    )
