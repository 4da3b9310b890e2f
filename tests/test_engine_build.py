"""The real thing: the debian-pypi profile built with docker and with podman, then looked into.

Slow (minutes per engine: ~5 GB of wheels). Images are tagged localhost/vllm-forge-test:* and
removed at the end of the module.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import ROOT, engine_or_skip

from vllm_forge import build, jobs, pins
from vllm_forge.project import Project

pytestmark = pytest.mark.engine

PROFILE = "debian-pypi"
TEST_TAG = "localhost/vllm-forge-test:{profile}-{target}-{engine}"
IMPORT_CHECK = (
    "import json, torch, vllm, flashinfer, importlib.metadata as md;"
    "print(json.dumps({'vllm': vllm.__version__, 'torch': torch.__version__,"
    " 'cuda': torch.version.cuda, 'flashinfer': md.version('flashinfer-python'),"
    " 'cubin': md.version('flashinfer-cubin')}))"
)


@pytest.fixture(scope="module")
def reachable_pins() -> pins.Pins:
    return pins.load(ROOT / "versions.toml", PROFILE)


@pytest.fixture(scope="module", params=["docker", "podman"])
def built(request, reachable_pins, tmp_path_factory):
    """Builder and slim images of the reachable profile on one engine, built for real."""
    engine = engine_or_skip(request.param)
    plan = jobs.plan_here(nvcc_threads=1, gencode_targets=1, requested=None)
    project = Project.at(ROOT / "versions.toml")
    tags = {
        target: TEST_TAG.format(profile=PROFILE, target=target, engine=engine.name)
        for target in ("builder", "runtime", "kernel-probe")
    }
    summaries = {}
    try:
        for target in ("builder", "runtime"):
            summaries[target] = build.build_image(
                engine, reachable_pins, target=target, tag=tags[target], jobs=plan, project=project
            )
        yield engine, tags, summaries
    finally:
        for tag in tags.values():
            engine.remove_image(tag)


def run_in(engine, image, *command, entrypoint=None):
    argv = engine.run_argv(image, list(command), entrypoint=entrypoint)
    return engine.run(argv, check=False)


def test_slim_image_imports_the_pinned_stack_built_for_cuda_12_8(built, reachable_pins):
    engine, tags, _ = built
    result = run_in(engine, tags["runtime"], "-c", IMPORT_CHECK, entrypoint="python")
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["vllm"] == reachable_pins.vllm.version
    assert found["torch"].split("+")[0] == reachable_pins.torch.version
    assert found["cuda"] == "12.8"
    assert found["flashinfer"] == found["cubin"] == reachable_pins.flashinfer.version


def test_slim_image_carries_the_probe_and_it_reports_no_gpu_here(built):
    engine, tags, _ = built
    result = run_in(engine, tags["runtime"], "--json", entrypoint="/usr/local/bin/kernel-probe")
    # 3 = no GPU / no driver: the probe ran, and said it checked nothing (never 0 here).
    assert result.returncode == 3, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["built_for"] == ["sm_120"]
    assert report["outcome"] in ("no_gpu", "no_driver")


def test_slim_image_has_no_build_leftovers(built):
    """Nothing in the cache and bind mount points (BuildKit leaves them as empty directories)."""
    engine, tags, _ = built
    paths = ["/root/.ccache", "/root/.cache/pip", "/wheels", "/src", "/lock", "/usr/local/cuda"]
    script = (
        "for p in "
        + " ".join(paths)
        + '; do find "$p" -mindepth 1 -print -quit 2>/dev/null; done; true'
    )
    result = run_in(engine, tags["runtime"], "-c", script, entrypoint="/bin/sh")
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout


def test_images_carry_every_pin_as_a_label(built, reachable_pins):
    engine, tags, _ = built
    for target in ("builder", "runtime"):
        labels = engine.labels(tags[target])
        for key, value in reachable_pins.labels().items():
            assert labels.get(key) == value, (target, key)
        assert labels.get("org.opencontainers.image.revision")


def test_builder_holds_the_wheel_and_the_probe(built, reachable_pins):
    engine, tags, summaries = built
    script = "ls /wheels && test -x /usr/local/bin/kernel-probe"
    result = run_in(engine, tags["builder"], "-c", script, entrypoint="/bin/sh")
    assert result.returncode == 0, result.stderr
    assert f"vllm-{reachable_pins.vllm.version}-" in result.stdout
    assert summaries["runtime"].size_bytes > summaries["builder"].size_bytes > 0


def test_ccache_persists_across_builds(built, reachable_pins):
    """The probe compiled twice with MAX_JOBS values no earlier build used (so the layer cache
    cannot answer): the second compile is served by ccache. Not --no-cache: docker 20.10's
    BuildKit hands --no-cache builds fresh cache mounts (measured), podman keeps them."""
    engine, tags, _ = built
    project = Project.at(ROOT / "versions.toml")
    unique = 1000 + time.time_ns() % 50_000
    runs = []
    for offset in (0, 1):
        plan = jobs.plan(cores=2, memory=8 * jobs.GIB, nvcc_threads=1, gencode_targets=1,
                         requested=unique + offset)  # fmt: skip
        runs.append(
            build.build_image(
                engine,
                reachable_pins,
                target="kernel-probe",
                tag=tags["kernel-probe"],
                jobs=plan,
                project=project,
            )  # fmt: skip
        )
    second = runs[1].ccache["kernel-probe"]
    assert second.hits >= 2 and second.misses == 0, second
    assert Path(runs[1].log).is_file() and Path(runs[1].replay).is_file()
