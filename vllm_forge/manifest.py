"""The build manifest: every input and tool that decides an image's bytes, and what came out.

Written by every build to build/reports/<image>.json, so a reviewer can tell two builds apart
without rebuilding: diff two manifests and the changed input is named.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from . import prune
from .engines import Engine
from .pins import Pins


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree_digest(root: Path) -> str:
    """One digest over the relative paths, modes and contents of every file below `root`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def layers(engine: Engine, ref: str) -> list[str]:
    """The image's layer diff IDs (uncompressed tar digests), bottom first."""
    return list((engine.inspect(ref).get("RootFS") or {}).get("Layers") or [])


def pruned_by_build(engine: Engine, tag: str, target: str, lines: list[str]) -> dict[str, int]:
    """What the runtime stage pruned, prune.toml entry -> bytes: from the build's
    `vllm-forge-prune` lines, or, when that layer came from the cache (no lines), from the
    record the image keeps (prune.RECORD)."""
    found = prune.parse_lines(lines)
    if found or target != "runtime":
        return found
    argv = engine.run_argv(tag, [prune.RECORD], entrypoint="cat")
    result = engine.run(argv, check=False)
    return prune.parse_lines(result.stdout.splitlines()) if result.returncode == 0 else {}


def base_inputs(engine: Engine, pins: Pins, base_dir: Path) -> dict:
    """What each base image is: its pinned digest, or (made here) its image ID and tar hash."""
    out = {}
    for role, ref in (("devel", pins.devel), ("runtime", pins.runtime)):
        entry: dict = {"ref": ref.raw}
        if ref.local:
            entry["image_id"] = engine.image_id(ref.raw) if engine.image_exists(ref.raw) else None
            record = base_dir / f"debian-{pins.base.suite}.json" if pins.base else None
            if record and record.is_file():
                entry["made_here"] = json.loads(record.read_text())
        else:
            entry["digest"] = ref.digest
        out[role] = entry
    return out


def build_manifest(
    *,
    engine: Engine,
    pins: Pins,
    pins_file: Path,
    context: Path,
    target: str,
    tag: str,
    build_args: dict[str, str],
    base_dir: Path,
) -> dict:
    dockerfile = context / "Dockerfile"
    return {
        "image": {
            "tag": tag,
            "id": engine.image_id(tag),
            "layers": layers(engine, tag),
            "size_bytes": engine.image_size(tag),
        },
        "inputs": {
            "profile": pins.profile,
            "target": target,
            "versions_toml": sha256_bytes(pins_file.read_bytes()),
            "dockerfile": sha256_bytes(dockerfile.read_bytes()),
            "context": tree_digest(context),
            "lock": sha256_bytes((context / "lock" / "deps.txt").read_bytes()),
            "vllm_source": pins.vllm.source_pin,
            "bases": base_inputs(engine, pins, base_dir),
            "arch_list": [str(a) for a in pins.build.arch_list],
            "source_date_epoch": pins.source_date_epoch,
            "build_args": dict(sorted(build_args.items())),
        },
        "tools": {
            "engine": engine.name,
            "engine_version": engine.version,
            "engine_mode": engine.mode,
            "timestamps_fixed": engine.fixes_timestamps,
            "host": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version(),
        },
    }


def diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two manifests."""
    changed = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        path = f"{prefix}{key}"
        if isinstance(left, dict) and isinstance(right, dict):
            changed += diff(left, right, path + ".")
        elif left != right:
            changed.append(path)
    return changed
