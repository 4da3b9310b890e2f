"""`nox -s clean`: remove what builds and tests created, and bound the engines' build caches.

Run it when no build is running: it also removes podman's build working containers.

Images: everything tagged localhost/vllm-forge* (the project's own names) and dangling layers.
Build caches (pip downloads, ccache, apt lists) are kept up to a cap so rebuilds stay fast but
storage cannot grow without bound across runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .engines import Engine

PREFIX = "localhost/vllm-forge"
BUILDAH_CACHE = Path("/var/tmp/buildah-cache")  # podman's RUN --mount=type=cache storage


def project_images(engine: Engine) -> list[str]:
    argv = [engine.client, "images", "--format", "{{.Repository}}:{{.Tag}}"]
    out = engine.run(argv, check=False).stdout
    return sorted({line for line in out.split() if line.startswith(PREFIX)})


def directory_bytes(path: Path) -> int:
    result = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(result.stdout.split()[0]) if result.returncode == 0 and result.stdout else 0


def clean(engine: Engine, *, keep_cache_gb: float, keep_images: bool = False, log=print) -> None:
    if not keep_images:
        for ref in project_images(engine):
            engine.remove_image(ref)
            log(f"clean: {engine.name}: removed {ref}")
    if engine.name == "podman":
        # Working containers left by interrupted builds hold whole layers (GBs each).
        engine.run([engine.client, "rm", "--all", "--force", "--external"], check=False)
    engine.run([engine.client, "image", "prune", "-f"], check=False)
    cap = int(keep_cache_gb * 1e9)
    if engine.name == "docker":
        engine.run(
            [engine.client, "builder", "prune", "-f", "--keep-storage", str(cap)], check=False
        )
        log(f"clean: docker build cache pruned to at most {keep_cache_gb:g} GB")
    elif BUILDAH_CACHE.is_dir():
        size = directory_bytes(BUILDAH_CACHE)
        if size > cap:
            shutil.rmtree(BUILDAH_CACHE, ignore_errors=True)
            log(
                f"clean: podman cache mounts were {size / 1e9:.1f} GB > {keep_cache_gb:g} GB: removed"
            )
        else:
            log(f"clean: podman cache mounts {size / 1e9:.1f} GB (cap {keep_cache_gb:g} GB): kept")


def empty_cache_mounts(engine: Engine, log=print) -> None:
    """Empty this project's RUN --mount=type=cache storage (ids vllm-forge-*) before a build."""
    if engine.name == "podman":
        found = sorted(BUILDAH_CACHE.glob("vllm-forge-*")) if BUILDAH_CACHE.is_dir() else []
        for path in found:
            shutil.rmtree(path)
        log(f"cache mounts: podman: emptied {len(found)} (vllm-forge-* in {BUILDAH_CACHE})")
    elif engine.mode == "buildx":
        # BuildKit cannot prune one cache id: every cache mount of this builder goes.
        engine.run([engine.client, "builder", "prune", "-f", "--filter", "type=exec.cachemount"])
        log("cache mounts: docker buildx: pruned every cache mount of the builder")
    else:
        log(f"cache mounts: {engine.name} ({engine.mode}) gives --no-cache builds empty ones")
