"""A tiny image built through the real build path, for the signal and planted-secret tests.

Run as a program, it is `vllm-forge` (cli.main: its signal handling and redaction) building
with `build.build_image` (its secrets dir, the engine's client, log, replay script and manifest)
— with one difference: the rendered Dockerfile is swapped for a three-step one, so that a RUN
step runs in a second, and can be held running or made to print its secrets:

    python tests/tinybuild.py hold|leaky NONCE vllm-forge-arguments...

NONCE is copied into the image by a COPY step: a new one makes the RUN step after it run; the
same one again finds that COPY layer in the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "debian-pypi"
BASE = "localhost/vllm-forge/debian:bookworm"

DOCKERFILES = {
    # Holds its RUN step for as many seconds as the `hold` secret says; the marker line is
    # written so that the echoed command line does not contain it.
    "hold": f"""\
FROM {BASE} AS probe
COPY nonce /nonce
RUN --mount=type=secret,id=pip-conf,target=/etc/pip.conf \\
    --mount=type=secret,id=hold,target=/run/secrets/hold \\
    read seconds < /run/secrets/hold; echo "vllm-forge-test: hold""ing $seconds s"; \\
    sleep "$seconds"
""",
    # A careless RUN step that prints the pip.conf (the index URL with its credentials) and the
    # --secret file into the build's output.
    "leaky": f"""\
FROM {BASE} AS probe
COPY nonce /nonce
RUN --mount=type=secret,id=pip-conf,target=/etc/pip.conf \\
    --mount=type=secret,id=hf-token,target=/run/secrets/hf-token \\
    echo "careless: $(cat /etc/pip.conf /run/secrets/hf-token | tr '\\n' ' ')" \\
    && test -s /etc/pip.conf
""",
}


def project(directory: Path) -> Path:
    """A project of its own (its build/ inside `directory`) with this checkout's pins."""
    directory.mkdir(parents=True, exist_ok=True)
    pins = directory / "versions.toml"
    shutil.copyfile(ROOT / "versions.toml", pins)
    return pins


def argv(kind: str, nonce: str, *cli_args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), kind, nonce, *cli_args]


def log_path(pins: Path, engine: str) -> Path:
    return pins.parent / "build" / "logs" / f"{PROFILE}-probe-{engine}.log"


def copy_step_cached(output: str) -> bool:
    """Whether the build output shows the `COPY nonce` step answered by the layer cache."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if "COPY nonce /nonce" in line:
            after = lines[i + 1 : i + 3]
            return any(  # docker BuildKit: "#6 CACHED"; podman: "--> Using cache <id>"
                a.rstrip().endswith(" CACHED") or a.startswith("--> Using cache") for a in after
            )
    return False


def run(kind: str, nonce: str, *cli_args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        argv(kind, nonce, *cli_args), capture_output=True, text=True, env=env, timeout=300
    )


def _main() -> int:
    from vllm_forge import build, cli

    kind, nonce, *cli_args = sys.argv[1:]

    def write_context(pins, project) -> Path:
        context = project.context(pins.profile)
        shutil.rmtree(context, ignore_errors=True)
        (context / "lock").mkdir(parents=True)
        (context / "lock" / "deps.txt").write_text("")  # the manifest digests the lock
        (context / "nonce").write_text(nonce + "\n")
        (context / "Dockerfile").write_text(DOCKERFILES[kind])
        return context / "Dockerfile"

    build.write_context = write_context
    return cli.main(cli_args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(_main())
