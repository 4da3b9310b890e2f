"""Reproducibility: the comparison logic, and podman building the same bytes twice."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT, engine_or_skip

from vllm_forge import build, clean, engines, jobs, manifest, pins, repro
from vllm_forge.engines import Engine
from vllm_forge.project import Project


def layer_tar(files: dict[str, tuple[bytes, int]]) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mtime) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return tarfile.open(fileobj=buffer)


def test_listing_diff_names_each_file_and_what_differs():
    a = repro.tar_listing(
        layer_tar({"etc/shadow": (b"x:1", 0), "same": (b"s", 0), "gone": (b"", 0)})
    )
    b = repro.tar_listing(
        layer_tar({"etc/shadow": (b"x:2", 0), "same": (b"s", 0), "log": (b"", 5)})
    )
    assert repro.listing_diff(a, b) == [
        "etc/shadow: content differ",
        "gone: only in build A",
        "log: only in build B",
    ]


def test_listing_diff_sees_a_timestamp_alone():
    a = repro.tar_listing(layer_tar({"f": (b"same", 0)}))
    b = repro.tar_listing(layer_tar({"f": (b"same", 1764201600)}))
    assert repro.listing_diff(a, b) == ["f: mtime differ"]


def test_a_layer_differing_only_in_mtimes_is_told_apart_from_one_differing_in_content():
    a = repro.tar_listing(layer_tar({"f": (b"same", 0), "g": (b"1", 0)}))
    b = repro.tar_listing(layer_tar({"f": (b"same", 9), "g": (b"1", 7)}))
    c = repro.tar_listing(layer_tar({"f": (b"same", 0), "g": (b"2", 0)}))
    d = repro.tar_listing(layer_tar({"f": (b"same", 0)}))
    assert repro.times_only(a, b)
    assert repro.listing_diff(a, c | {"e": (0,) * 7}) == ["e: only in build B", "g: content differ"]
    assert repro.listing_diff(b, c) == ["g: mtime, content differ", "f: mtime differ"]
    assert not repro.times_only(a, c) and not repro.times_only(a, d)

    def result(*diffs: bool) -> repro.ReproResult:
        layer_diffs = [
            repro.LayerDiff(index=i, a="x", b="y", created_by="RUN", times_only=t)
            for i, t in enumerate(diffs)
        ]
        return repro.ReproResult(
            engine="docker 20.10.24", target="t", promise="p", ids=("i", "j"), seconds=(1, 2),
            reproducible=False, layer_count=3, layer_diffs=layer_diffs,
        )  # fmt: skip

    assert "only file timestamps differ" in result(True, True).describe()
    assert "0 entries, each differing only in mtime" in result(True).describe()
    assert "contents" not in result(True, False).describe()
    assert "only the image config differs" in result().describe()


def test_manifest_diff_names_the_changed_input():
    a = {
        "inputs": {"source_date_epoch": 1, "bases": {"devel": {"digest": "x"}}},
        "image": {"id": "i"},
    }
    b = {
        "inputs": {"source_date_epoch": 2, "bases": {"devel": {"digest": "x"}}},
        "image": {"id": "j"},
    }
    assert manifest.diff(a, b) == ["image.id", "inputs.source_date_epoch"]


def test_tree_digest_changes_with_content_and_mode(tmp_path):
    (tmp_path / "a").write_text("1")
    first = manifest.tree_digest(tmp_path)
    (tmp_path / "a").chmod(0o755)
    second = manifest.tree_digest(tmp_path)
    (tmp_path / "a").write_text("2")
    assert len({first, second, manifest.tree_digest(tmp_path)}) == 3


def test_docker_classic_is_reported_as_not_promising_reproducible_ids():
    classic = Engine(name="docker", client="docker", mode="buildkit-classic", version="20.10.24")
    buildx = Engine(name="docker", client="docker", mode="buildx", version="27.3.1")
    podman = Engine(name="podman", client="podman", mode="podman", version="4.3.1")
    assert not classic.fixes_timestamps and "cannot stamp SOURCE_DATE_EPOCH" in repro.promise(
        classic
    )
    assert buildx.fixes_timestamps and podman.fixes_timestamps
    assert "fixes timestamps (rewrite-timestamp)" in repro.promise(buildx)
    assert "fixes timestamps (--timestamp)" in repro.promise(podman)
    assert repro.cache_mounts(classic, False).startswith("empty: docker 20.10")
    assert repro.cache_mounts(podman, False).startswith("kept from earlier builds")
    assert repro.cache_mounts(podman, True) == "emptied before each build"
    argv = buildx.build_argv(
        build.BuildRequest(
            context=Path("."), dockerfile=Path("D"), tag="t", target="x", timestamp=5
        )
    )
    assert "type=docker,rewrite-timestamp=true" in argv and "SOURCE_DATE_EPOCH=5" in argv
    assert "--timestamp" in podman.build_argv(
        build.BuildRequest(
            context=Path("."), dockerfile=Path("D"), tag="t", target="x", timestamp=5
        )
    )


@pytest.mark.engine
def test_podman_same_inputs_same_id_and_a_changed_epoch_changes_both(tmp_path):
    """The probe image (toolchain, nvcc compile, runtime base), built from empty layer caches:
    byte-identical, until the epoch moves; then the image ID and the manifest both change, and
    the manifest says why."""
    engine = engine_or_skip("podman")
    doc = pins.read_document(ROOT / "versions.toml")
    plan = jobs.plan(cores=2, memory=8 * jobs.GIB, nvcc_threads=1, gencode_targets=1)
    project = Project.at(ROOT / "versions.toml")
    epochs = {"a": None, "b": None, "c": 1767225600}
    records = {}
    try:
        for name, epoch in epochs.items():
            overrides = {"project": {"source_date_epoch": epoch}} if epoch else None
            resolved = pins.resolve(doc, "debian-pypi", overrides)
            tag = f"localhost/vllm-forge-test:repro-{name}"
            summary = build.build_image(
                engine,
                resolved,
                target="probe",
                tag=tag,
                jobs=plan,
                project=project,
                no_cache=True,
            )
            records[name] = json.loads(Path(summary.report).read_text())
    finally:
        for name in epochs:
            engine.remove_image(f"localhost/vllm-forge-test:repro-{name}")
    assert records["a"]["image"]["id"] == records["b"]["image"]["id"]
    assert records["a"]["image"]["layers"] == records["b"]["image"]["layers"]
    assert records["a"]["image"]["id"] != records["c"]["image"]["id"]
    changed = manifest.diff(records["a"]["inputs"], records["c"]["inputs"])
    assert "source_date_epoch" in changed


def test_cold_caches_empty_only_this_projects_podman_cache_mounts(tmp_path, monkeypatch):
    for cache_id in ("vllm-forge-ccache", "vllm-forge-apt-lists-debian-pypi-runtime", "other"):
        (tmp_path / cache_id / "sub").mkdir(parents=True)
        (tmp_path / cache_id / "sub" / "f").write_text("x")
    monkeypatch.setattr(engines, "BUILDAH_CACHE", tmp_path)
    said = []
    podman = Engine(name="podman", client="podman", mode="podman", version="4.3.1")
    clean.empty_cache_mounts(podman, log=said.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]
    assert said == [f"cache mounts: podman: emptied 2 (vllm-forge-* in {tmp_path})"]
    classic = Engine(name="docker", client="docker", mode="buildkit-classic", version="20.10.24")
    clean.empty_cache_mounts(classic, log=said.append)
    assert "gives --no-cache builds empty ones" in said[-1]


def test_inputs_that_moved_between_the_two_builds_are_named(tmp_path):
    def record(name: str, ref: str) -> Path:
        path = tmp_path / f"{name}.json"
        inputs = {"source_date_epoch": 1, "build_args": {"MAX_JOBS": "2", "VCS_REF": ref}}
        path.write_text(json.dumps({"inputs": inputs, "image": {"id": name}}))
        return path

    a, b, c = record("a", "6ab400b"), record("b", "6ab400b"), record("c", "aa919ae")
    assert repro.changed_inputs(a, b) == []
    assert repro.changed_inputs(a, c) == ["inputs.build_args.VCS_REF"]
    result = repro.ReproResult(
        engine="podman 4.3.1", target="runtime", promise="p", ids=("i", "j"), seconds=(1, 2),
        reproducible=False, layer_count=4, layer_diffs=[],
        inputs_changed=["inputs.build_args.VCS_REF"],
    )  # fmt: skip
    assert "inputs       CHANGED between the builds: inputs.build_args.VCS_REF" in result.describe()
