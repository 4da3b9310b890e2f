"""`nox -s clean`: remove what builds and tests created, and bound the engines' build caches.

Podman's build working containers are removed only where they belong to a vllm-forge run that
is gone (below); other containers, a running build's included, are left alone.

Images: everything tagged localhost/vllm-forge* (the project's own names) and dangling layers.
Build caches (pip downloads, ccache, apt lists) are kept up to a cap so rebuilds stay fast but
storage cannot grow without bound across runs.

Secrets: what a run killed outright (SIGKILL) left of its build secrets: its secrets dir, and
podman's working containers that hold copies of its secret files. Only dead runs' (the dir's
name carries the owning process's ID), so a build running meanwhile keeps its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .buildsecrets import owner_pid, process_alive, stale_secrets_dirs
from .engines import Engine

PREFIX = "localhost/vllm-forge"
CACHE_IDS = "vllm-forge-*"  # the project's RUN --mount=type=cache ids


def project_images(engine: Engine) -> list[str]:
    out = engine.run(engine.list_images_argv(), check=False).stdout
    return sorted({line for line in out.split() if line.startswith(PREFIX)})


def directory_bytes(path: Path) -> int:
    result = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(result.stdout.split()[0]) if result.returncode == 0 and result.stdout else 0


def remove_dead_runs_secrets(
    engine: Engine | None, *, roots: list[Path] | None = None, log=print
) -> list[str]:
    """Remove the secrets dirs of runs that are gone and the podman build containers holding
    copies of their files; return what was removed."""
    removed = []
    for path in stale_secrets_dirs(roots):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
        log(f"clean: removed {path}: the secrets of a run that is gone (pid {owner_pid(path)})")
    for container, sources in (engine.build_containers() if engine else {}).items():
        owners = {owner_pid(Path(src.partition("src=")[2]).parent) for src in sources}
        if any(pid is not None and not process_alive(pid) for pid in owners):
            engine.run(engine.remove_container_argv(container), check=False)
            removed.append(container)
            log(
                f"clean: {engine.name}: removed build container {container[:12]} of a run that is gone"
            )
    return removed


def clean(engine: Engine, *, keep_cache_gb: float, keep_images: bool = False, log=print) -> None:
    remove_dead_runs_secrets(engine, log=log)
    if not keep_images:
        for ref in project_images(engine):
            engine.remove_image(ref)
            log(f"clean: {engine.name}: removed {ref}")
    engine.run(engine.prune_dangling_images_argv(), check=False)
    cap = int(keep_cache_gb * 1e9)
    if (argv := engine.bound_build_cache_argv(cap)) is not None:
        engine.run(argv, check=False)
        log(f"clean: {engine.name} build cache pruned to at most {keep_cache_gb:g} GB")
    elif (cache := engine.cache_mount_dir) is not None and cache.is_dir():
        size = directory_bytes(cache)
        if size > cap:
            shutil.rmtree(cache, ignore_errors=True)
            log(
                f"clean: {engine.name} cache mounts were {size / 1e9:.1f} GB > "
                f"{keep_cache_gb:g} GB: removed"
            )
        else:
            log(
                f"clean: {engine.name} cache mounts {size / 1e9:.1f} GB "
                f"(cap {keep_cache_gb:g} GB): kept"
            )


def empty_cache_mounts(engine: Engine, log=print) -> None:
    """Empty this project's RUN --mount=type=cache storage (ids vllm-forge-*) before a build."""
    if (root := engine.cache_mount_dir) is not None:
        found = sorted(root.glob(CACHE_IDS)) if root.is_dir() else []
        for path in found:
            shutil.rmtree(path)
        log(f"cache mounts: {engine.name}: emptied {len(found)} ({CACHE_IDS} in {root})")
    elif (argv := engine.prune_cache_mounts_argv()) is not None:
        engine.run(argv)
        log(f"cache mounts: {engine.name} {engine.mode}: pruned every cache mount of the builder")
    else:
        log(f"cache mounts: {engine.name} ({engine.mode}) gives --no-cache builds empty ones")
