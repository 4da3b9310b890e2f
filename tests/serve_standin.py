"""The tests' own tiny image that stands in for the slim image where no GPU is: Debian's python3,
the slim image's user and cache layout, a `vllm` that answers like vLLM's server
(serve_standin_vllm.py), a `vllm` package with the few names serve reads from the image, and a
kernel probe that reports what the real one reports on a GPU without sm_120 code (exit 2).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from vllm_forge.engines import BuildRequest, Engine

HERE = Path(__file__).resolve().parent
BASE = "localhost/forge-serve-test:debian-base"  # the project's Debian base, under a test name
PROJECT_BASE = "localhost/vllm-forge/debian:bookworm"
TAG = "localhost/forge-serve-test:standin"

DOCKERFILE = f"""\
FROM {BASE} AS standin
RUN apt-get update && apt-get install -y --no-install-recommends python3 \\
    && rm -rf /var/lib/apt/lists/*
# As the slim image: a vllm user it does not use, the driver's JIT cache any user can write.
RUN useradd --create-home --uid 1000 vllm \\
    && mkdir -p /var/cache/vllm-forge/cuda && chmod 1777 /var/cache/vllm-forge/cuda
COPY vllm-package/ /usr/local/lib/python3.11/dist-packages/vllm/
COPY serve_standin_vllm.py /usr/local/bin/vllm
COPY kernel-probe /usr/local/bin/kernel-probe
RUN chmod 755 /usr/local/bin/vllm /usr/local/bin/kernel-probe
ENV CUDA_CACHE_PATH=/var/cache/vllm-forge/cuda \\
    CUDA_CACHE_MAXSIZE=4294967296
EXPOSE 8000
ENTRYPOINT ["vllm", "serve"]
"""

# What serve asks the image's vllm package (serve/image.py's FACTS), as vLLM 0.19.1 answers it.
PACKAGE = {
    "__init__.py": '__version__ = "0.19.1"\n',
    "envs.py": "environment_variables = {name: None for name in (\n"
    '    "VLLM_API_KEY", "VLLM_LOGGING_LEVEL", "VLLM_CACHE_ROOT", "VLLM_USE_V1",\n'
    ")}\n",
    "v1/__init__.py": "",
    "v1/attention/__init__.py": "",
    "v1/attention/backends/__init__.py": "",
    "v1/attention/backends/registry.py": "import enum\n"
    "AttentionBackendEnum = enum.Enum('AttentionBackendEnum',\n"
    "    'FLASH_ATTN TRITON_ATTN FLASHINFER FLASHMLA FLEX_ATTENTION')\n",
    "reasoning/__init__.py": "class ReasoningParserManager:\n"
    "    lazy_parsers = {'deepseek_r1': None, 'qwen3': None}\n",
}

NO_KERNEL_JSON = (
    '{"outcome": "no_kernel_image", "exit_code": 2, "message": "", "built_for": ["sm_80"],'
    ' "cuda_runtime": "12.8", "driver_cuda": "13.0", "gpus": [{"index": 0, "name": "NVIDIA'
    ' GeForce RTX 5090", "capability": "12.0", "sm": "sm_120", "kernel_image": 0,'
    ' "loaded_sass": null, "error": "cudaErrorNoKernelImageForDevice", "message": "GPU 0 NVIDIA'
    ' GeForce RTX 5090 (sm_120): no kernel image for sm_120 in this binary (built for sm_80)"}]}'
)
PROBE = f"#!/bin/sh\necho '{NO_KERNEL_JSON}'\nexit 2\n"


def base_or_reason(engine: Engine, pins_file: Path) -> str | None:
    """Make sure the test's name for the Debian base exists, making the base with `vllm-forge
    base` (mmdebstrap, under `pins_file`'s build/) if the engine has none; why not, if it
    cannot."""
    if engine.image_exists(BASE):
        return None
    if not engine.image_exists(PROJECT_BASE):
        made = subprocess.run(
            [sys.executable, "-m", "vllm_forge.cli", "base", "--profile", "debian-pypi",
             "--engine", engine.name, "--pins", str(pins_file)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if made.returncode != 0:
            last = (made.stderr.strip().splitlines() or ["no output"])[-1]
            return f"{PROJECT_BASE} is not in {engine.name} and could not be made: {last}"
    # CI's `clean` removes localhost/vllm-forge* at any time: a name of the tests' own.
    engine.run([engine.client, "tag", PROJECT_BASE, BASE])
    return None


def build(engine: Engine, context: Path) -> str:
    """Build the stand-in image with `engine`; its tag."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(DOCKERFILE)
    shutil.copyfile(HERE / "serve_standin_vllm.py", context / "serve_standin_vllm.py")
    (context / "kernel-probe").write_text(PROBE)
    for name, text in PACKAGE.items():
        path = context / "vllm-package" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    request = BuildRequest(
        context=context, dockerfile=context / "Dockerfile", tag=TAG, target="standin"
    )
    engine.run(engine.build_argv(request), timeout=900)
    return TAG


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
