"""Before the model load: can this host hand the GPU in, and does the image have kernels for it?

One short container of the image runs its kernel probe with the GPU flags the server will get.
The engine's own answer decides whether the GPU can be handed in (a static look for the NVIDIA
Container Toolkit could be wrong both ways: `Engine.gpu_runtime_problem` only words the advice,
and tells a dry run what a start would meet). A missing kernel image otherwise shows up after a
long download and model load ("no kernel image is available for execution on the device"); the
probe finds it in a second.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass

from ..engines import Engine
from ..errors import EngineCommandError, EngineError, VerifyError

PROBE = "/usr/local/bin/kernel-probe"
# What the engines print when the container could not get the GPU at all (no toolkit, no spec).
_NO_GPU_RUNTIME = (
    "could not select device driver",
    "unresolvable CDI devices",
    "nvidia-container-cli",
    "nvidia.com/gpu",
)


def _no_gpu_runtime(line: str) -> bool:
    return any(text in line for text in _NO_GPU_RUNTIME)


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    exit_code: int
    outcome: str
    message: str
    gpus: tuple[str, ...]  # "GPU 0 NVIDIA GeForce RTX 5090 (sm_120): ran ..."


def interpret(returncode: int, stdout: str, stderr: str) -> ProbeResult:
    """The probe's `--json` line, or what the engine said when it could not even start it."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                break
            return ProbeResult(
                exit_code=returncode,
                outcome=str(report.get("outcome", "?")),
                message=str(report.get("message") or ""),
                gpus=tuple(str(g.get("message", "")) for g in report.get("gpus") or []),
            )
    lines = [line.strip() for line in (stderr or stdout).strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]  # not docker's "Run '... --help'"
    # the GPU runtime's own words first: docker 20.10 may add "error waiting for container:
    # context canceled" after them
    runtime = [line for line in errors if _no_gpu_runtime(line)]
    message = (runtime or errors or lines or ["no output"])[-1]
    return ProbeResult(exit_code=returncode, outcome="engine", message=message, gpus=())


def check_probe(result: ProbeResult, engine: Engine, image: str) -> str:
    """The one-line summary of a probe that ran; the error that stops serve otherwise."""
    gpus = "; ".join(g for g in result.gpus if g)
    if result.exit_code == 0:
        return gpus or result.message or "every GPU ran the probe's kernel"
    detail = "; ".join(p for p in (result.message, gpus) if p)
    if result.exit_code == 2:
        raise VerifyError(
            f"kernel probe: {detail}: {image} has no kernel for this GPU, so vLLM would fail after"
            " the model load; rebuild with its arch in [build].torch_cuda_arch_list. Nothing was"
            " started"
        )
    if result.exit_code == 3:
        raise EngineError(
            f"kernel probe: {detail}; the container got no usable GPU: install the NVIDIA"
            " Container Toolkit (and, for podman, its CDI spec) and check the driver"
        )
    if result.outcome == "engine":
        if _no_gpu_runtime(result.message):
            problem = engine.gpu_runtime_problem() or "install the NVIDIA Container Toolkit"
            raise EngineError(
                f"{engine.name} could not hand the GPU in ({result.message}); {problem}"
            )
        raise EngineCommandError(
            f"kernel probe: {engine.name} could not run {PROBE} in {image} (exit"
            f" {result.exit_code}): {detail}; is it a vllm-forge image?"
        )
    raise EngineCommandError(f"kernel probe: exit {result.exit_code}: {detail}")


def probe_argv(engine: Engine, image: str, gpus: str, name: str | None = None) -> list[str]:
    extra = [*engine.gpu_device_flags(gpus), *engine.label_flags(), *engine.no_network_flags()]
    return engine.run_argv(image, ["--json"], entrypoint=PROBE, name=name, extra=extra)


def run_probe(engine: Engine, image: str, gpus: str, *, timeout: float = 120) -> str:
    """Run the image's kernel probe on the GPUs `gpus` names; its summary, or the error."""
    name = f"vllm-forge-serve-probe-{uuid.uuid4().hex[:12]}"
    argv = probe_argv(engine, image, gpus, name)
    try:
        done = engine.run(argv, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        engine.run(engine.remove_container_argv(name), check=False)  # --rm acts on exit only
        raise EngineCommandError(f"kernel probe: no answer in {timeout:.0f} s") from None
    return check_probe(interpret(done.returncode, done.stdout, done.stderr), engine, image)
