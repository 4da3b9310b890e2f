"""The runtime stage's user step on a base that already has uid 1000, with a real engine.

ubuntu:24.04, under every nvidia/cuda:*-ubuntu24.04 base of the rtx5090 profile, ships user and
group `ubuntu` with uid/gid 1000; a plain `useradd --uid 1000` stops the build there. Those bases
are out of reach here, so the Debian base made here gets the same user (the way Ubuntu's image
has it) and the rendered template's own RUN step runs on top of it.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, engine_or_skip

from vllm_forge import pins, render
from vllm_forge.engines import BuildRequest
from vllm_forge.project import Project

pytestmark = pytest.mark.engine

BASE = "localhost/vllm-forge/debian:bookworm"
UBUNTU_USER = "RUN groupadd --gid 1000 ubuntu && useradd --create-home --uid 1000 --gid 1000 ubuntu"


def user_step() -> str:
    """The runtime stage's RUN step that makes the vllm user, as the rtx5090 profile renders it."""
    project = Project.at(ROOT / "versions.toml")
    resolved = pins.load(project.pins_file, "rtx5090")
    text = render.render_dockerfile(
        resolved, project.templates, render.source_pins_for(resolved, project)
    )
    runtime = text.split(" AS runtime\n", 1)[1]
    lines = runtime.splitlines()
    (start,) = [
        i for i, line in enumerate(lines) if line.startswith("RUN ") and "create_user" in line
    ]
    end = start
    while lines[end].endswith("\\"):
        end += 1
    return "\n".join(lines[start : end + 1])


def build(engine, context: Path, dockerfile: str) -> tuple[str, object]:
    (context / "Dockerfile").write_text(dockerfile)
    tag = f"localhost/vllm-forge-test:user-{uuid.uuid4().hex[:8]}"
    request = BuildRequest(
        context=context, dockerfile=context / "Dockerfile", tag=tag, target="user", no_cache=True
    )
    return tag, engine.run(engine.build_argv(request), check=False)


@pytest.fixture(params=["docker", "podman"])
def engine(request):
    found = engine_or_skip(request.param)
    if not found.image_exists(BASE):
        pytest.skip(f"{BASE} is not in {found.name}: run `vllm-forge base --engine {found.name}`")
    return found


def test_user_step_replaces_the_uid_1000_user_of_an_ubuntu_like_base(engine, tmp_path):
    shutil.copytree(ROOT / "vllm_forge" / "scripts", tmp_path / "scripts")
    tags = []
    try:
        # The failure the step exists for: this base reproduces it.
        tag, plain = build(
            engine, tmp_path, f"FROM {BASE} AS user\n{UBUNTU_USER}\nRUN useradd --uid 1000 vllm\n"
        )
        tags.append(tag)
        assert plain.returncode != 0
        assert "UID 1000 is not unique" in plain.stdout + plain.stderr

        tag, result = build(
            engine, tmp_path, f"FROM {BASE} AS user\n{UBUNTU_USER}\n{user_step()}\n"
        )
        tags.append(tag)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "removed user ubuntu, which held uid 1000" in result.stdout + result.stderr

        def run(*command: str) -> str:
            out = engine.run(engine.run_argv(tag, list(command)), check=False)
            assert out.returncode == 0, out.stderr
            return out.stdout.strip()

        assert run("getent", "passwd", "1000").startswith("vllm:x:1000:1000:")
        assert run("getent", "group", "1000").startswith("vllm:x:1000:")
        assert run("sh", "-c", "getent passwd ubuntu || echo gone; ls /home") == "gone\nvllm"
        assert run("stat", "-c", "%a", render.CUDA_CACHE_PATH, render.CACHE_ROOT) == "1777\n1777"
    finally:
        for tag in tags:
            engine.remove_image(tag)


def test_user_step_on_a_base_without_uid_1000_just_adds_the_user(engine, tmp_path):
    shutil.copytree(ROOT / "vllm_forge" / "scripts", tmp_path / "scripts")
    tag, result = build(engine, tmp_path, f"FROM {BASE} AS user\n{user_step()}\n")
    try:
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "removed" not in result.stdout + result.stderr
    finally:
        engine.remove_image(tag)
