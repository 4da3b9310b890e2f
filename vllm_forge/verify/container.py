"""The one long-lived container a verify session runs its checks in, and image-level helpers.

The container runs `sleep infinity` (entrypoint overridden) as root with no GPU, so every check
can look anywhere; testinfra's docker:// or podman:// backend execs into it. Engine quirks stay
in `vllm_forge.engines`: the `Engine` builds every argument list here, this module runs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ..engines import Engine

# Without this, an NVIDIA runtime configured as the default would hand the GPU in anyway.
NO_GPU_ENV = {"NVIDIA_VISIBLE_DEVICES": "void"}


class Container:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name

    @classmethod
    def start(cls, engine: Engine, image: str) -> Container:
        name = f"vllm-forge-verify-{uuid.uuid4().hex[:12]}"
        argv = engine.run_argv(
            image,
            ["infinity"],
            entrypoint="sleep",
            user="0",
            env=NO_GPU_ENV,
            detach=True,
            name=name,
        )
        engine.run(argv)
        return cls(engine, name)

    def remove(self) -> None:
        self.engine.run(self.engine.remove_container_argv(self.name), check=False)

    def copy_out(self, path: str, dest: Path) -> Path:
        """`engine cp NAME:path dest`: a file of the image onto the host."""
        self.engine.run(self.engine.copy_out_argv(self.name, path, dest))
        return dest

    def hostspec(self, user: str | None = None) -> str:
        """The testinfra backend URL: docker://NAME or podman://USER@NAME."""
        return f"{self.engine.name}://{user + '@' if user else ''}{self.name}"


@contextmanager
def client_first_on_path(engine: Engine) -> Iterator[None]:
    """testinfra runs `docker exec`/`podman exec` from PATH: make that the engine's own client."""
    shim = Path(tempfile.mkdtemp(prefix="vllm-forge-shim-"))
    (shim / engine.name).symlink_to(engine.client)
    saved = {k: os.environ.get(k) for k in ("PATH", *engine.env)}
    os.environ["PATH"] = f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.update(engine.env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(shim, ignore_errors=True)


@contextmanager
def saved_image(engine: Engine, image: str) -> Iterator[IO[bytes]]:
    """`engine save IMAGE` as a stream (never written to disk: the slim image is ~10 GB)."""
    argv = engine.save_argv(image)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **engine.env},
    )
    assert proc.stdout is not None
    try:
        yield proc.stdout
        proc.stdout.read()  # drain, so the engine is not killed by SIGPIPE mid-archive
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
    if rc != 0:
        raise engine.command_failed(argv, rc, err)


def run_once(
    engine: Engine,
    image: str,
    command: list[str],
    *,
    entrypoint: str | None = None,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    """A throwaway `engine run --rm` (GPU checks need their own devices); never raises on rc."""
    argv = engine.run_argv(image, command, entrypoint=entrypoint, env=env, extra=extra)
    try:
        return engine.run(argv, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout:.0f}s")
