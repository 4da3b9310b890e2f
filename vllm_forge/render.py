"""Rendering: pins -> Dockerfile text (pure), and the build context on disk (I/O, separate)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from . import jobs, lock, prune, sources
from .base import sha256_file
from .cuda_arch import format_arch_list, nvcc_gencode_flags
from .errors import ConfigError
from .pins import Pins, check_lock_cuda
from .project import PACKAGE_DIR, Project

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "Dockerfile.j2"
# Everything the runtime image writes at run time and should keep, under one root (one volume),
# writable by any user; in it the driver's cache of the PTX it JIT-compiled, at the largest size
# the driver accepts (4 GiB; its default is 256 MiB to 1 GiB, by driver).
CACHE_ROOT = "/var/cache/vllm-forge"
CUDA_CACHE_PATH = f"{CACHE_ROOT}/cuda"
CUDA_CACHE_MAX_SIZE = 4 * 1024**3
# The compile admission launcher (scripts/compile_admit.py) and its table, as the compile steps
# mount them; CMake puts the launcher in front of ccache for every CUDA and C++ compile.
FORGE_DIR = "/opt/forge"
ADMIT_SCRIPT = f"{FORGE_DIR}/compile_admit.py"


def template_context(pins: Pins, source_pins: sources.SourcePins | None = None) -> dict:
    """Every value the template needs, as plain strings, lists and flags."""
    python = f"python{pins.python_version}"
    # vLLM's and FlashInfer's git dependencies come from the host's source cache; only a vLLM
    # pinned by git revision is fetched in the build.
    needs_git = pins.vllm.source == "git"
    toolchain = [python, f"{python}-venv", f"{python}-dev", "build-essential", "ccache", "make"]
    toolchain += ["ca-certificates"] + (["git"] if needs_git else [])
    return {
        "profile": pins.profile,
        "description": pins.description,
        "devel_image": pins.devel.raw,
        "runtime_image": pins.runtime.raw,
        "cuda_version": pins.cuda_version,
        "python": python,
        "toolchain_packages": toolchain,
        # gcc, libc headers and Python.h: Triton builds its launcher stub at first launch.
        "runtime_packages": [
            python,
            f"{python}-venv",
            f"{python}-dev",
            "gcc",
            "libc6-dev",
            "ca-certificates",
        ],  # fmt: skip
        "nvcc_from_index": pins.nvcc == "index",
        "nvcc_package": pins.nvcc_package,
        "nvcc_major": _nvcc_major(pins.nvcc_package),
        "nvcc_threads": pins.build.nvcc_threads,
        "ccache_max_size": pins.build.ccache_max_size,
        "gencode_flags": " ".join(nvcc_gencode_flags(pins.build.arch_list)),
        "torch_cuda_arch_list": format_arch_list(pins.build.arch_list),
        "compiles_vllm": pins.compiles_vllm,
        "vllm_source": pins.vllm.source,
        "vllm_version": pins.vllm.version,
        "vllm_sdist_sha256": pins.vllm.sdist_sha256,
        "vllm_git_url": pins.vllm.git_url,
        "vllm_revision": pins.vllm.revision,
        "flashinfer_jit_cache": pins.flashinfer.jit_cache == "source",
        "flashinfer_revision": pins.flashinfer.revision,
        "flashinfer_arch_list": format_arch_list(pins.flashinfer.cuda_arch_list, sep=" "),
        "labels": sorted(pins.labels().items()),
        # The runtime stage's pruning: plain names and find patterns (vllm_forge/prune.py).
        "site_packages": f"/opt/venv/lib/{python}/site-packages",
        "prune": prune.template_values(pins.build.arch_list),
        "prune_record": prune.RECORD,
        "prune_record_dir": prune.RECORD.rpartition("/")[0],
        "source_date_epoch": pins.source_date_epoch,
        "cache_root": CACHE_ROOT,
        "cuda_cache_path": CUDA_CACHE_PATH,
        "cuda_cache_max_size": CUDA_CACHE_MAX_SIZE,
        "forge_dir": FORGE_DIR,
        "admit_script": ADMIT_SCRIPT,
        "compile_launchers": " ".join(
            f"-DCMAKE_{lang}_COMPILER_LAUNCHER=python3;{ADMIT_SCRIPT};ccache"
            for lang in ("CUDA", "CXX")
        ),
        "create_user_sha256": sha256_file(PACKAGE_DIR / "scripts" / "create_user.sh"),
        **sources.template_values(source_pins),
    }


def _nvcc_major(package: str) -> str:
    """`cuda-toolkit[nvcc]==13.0.2` -> "13" (the pip toolkit's nvidia/cuXX folder)."""
    _, _, version = package.partition("==")
    return version.split(".")[0] if version else "13"


def _environment(templates_dir: Path) -> jinja2.Environment:
    # Imported here, not at the top: the CLI imports this module, and `vllm-forge setup` (run by
    # a stock python3 before anything is installed) must need the standard library only.
    try:
        import jinja2
    except ImportError:
        raise ConfigError(
            "rendering needs jinja2, which this Python lacks: install vllm-forge (pip install .)"
            " or run it through nox (`nox -s render`)"
        ) from None

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def source_pins_for(pins: Pins, project: Project) -> sources.SourcePins | None:
    """The git sources a profile's compile stages mount (None: it compiles nothing)."""
    return sources.load_for(pins, project) if pins.compiles_vllm else None


def render_dockerfile(
    pins: Pins, templates_dir: Path, source_pins: sources.SourcePins | None = None
) -> str:
    """Pins (and, for a profile that compiles, its source pins) in, Dockerfile text out: same
    pins, byte-identical text."""
    if pins.compiles_vllm and source_pins is None:
        raise ConfigError(f"profile {pins.profile} compiles vLLM: rendering needs its source pins")
    template = _environment(templates_dir).get_template(TEMPLATE)
    return template.render(**template_context(pins, source_pins))


def write_context(pins: Pins, project: Project, *, need_sources: bool = True, log=print) -> Path:
    """Write the Dockerfile and everything it COPYs into the profile's context directory;
    return the Dockerfile path. Refuses (ConfigError) when the profile's lock is missing or stale,
    or (`need_sources`, as a build does) when a git source it mounts is not in the cache.
    """
    out_dir = project.context(pins.profile)
    source_pins = source_pins_for(pins, project)
    text = render_dockerfile(pins, project.templates, source_pins)
    lock_text = lock.read_fresh_lock(pins, project)
    check_lock_cuda(pins, lock_text, f"the lock of profile {pins.profile}")
    parts = lock.split(lock_text, drop_vllm=pins.compiles_vllm)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "lock").mkdir(exist_ok=True)
    (out_dir / "lock" / "deps.txt").write_text(parts.deps)
    (out_dir / "lock" / "vllm.txt").write_text(parts.vllm)
    build_lock = out_dir / "lock" / "build.txt"
    if (build_text := lock.read_fresh_build_lock(pins, project)) is not None:
        build_lock.write_text(build_text)
    else:
        build_lock.unlink(missing_ok=True)
    for sub, source in (("probe", project.probe_sources), ("scripts", project.context_scripts)):
        target = out_dir / sub
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(jobs.COMPILE_TABLE, out_dir / "scripts" / jobs.COMPILE_TABLE.name)
    if source_pins is not None:
        try:
            sources.stage(source_pins, project, out_dir)
        except ConfigError as missing:
            if need_sources:
                raise
            log(f"note: the context lacks git sources a build mounts: {missing}")
    dockerfile = out_dir / "Dockerfile"
    tmp = dockerfile.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(dockerfile)
    return dockerfile
