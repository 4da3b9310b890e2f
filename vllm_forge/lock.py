"""Hash-pinned locks of each profile's runtime environment (`nox -s lock`).

uv resolves the lock, not pip-tools: pip-tools resolves for the interpreter it runs in, while a
lock here is for the image's Python and glibc (`--python-version`, `--python-platform`), and uv
reads wheel metadata with range requests (the index serves no PEP 658 files). The build installs
from the lock with `--require-hashes --no-deps`: nothing is resolved at build time.

A lock starts with a line naming the digest of its inputs (the requirements, Python, platform);
a lock whose digest differs from the pins' is stale, and the build refuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import pipconfig
from .errors import ConfigError, IndexError_
from .pins import Pins, profile_names, read_document, resolve
from .project import Project

_DIGEST_LINE = re.compile(r"^# vllm-forge lock inputs: sha256:(?P<digest>[0-9a-f]{64})$", re.M)
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==", re.M)


def requirements(pins: Pins) -> list[str]:
    """The top-level requirements of the serving environment."""
    return [
        f"vllm=={pins.vllm.version}",
        f"torch=={pins.torch.version}",
        f"torchvision=={pins.torch.torchvision}",
        f"torchaudio=={pins.torch.torchaudio}",
        *(f"{p}=={pins.flashinfer.version}" for p in pins.flashinfer.packages),
    ]


def inputs_digest(pins: Pins) -> str:
    inputs = {
        "requirements": requirements(pins),
        "python": pins.python_version,
        "platform": pins.python_platform,
        "torch_index": pins.torch.index_url,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def lock_digest(text: str) -> str | None:
    match = _DIGEST_LINE.search(text)
    return match["digest"] if match else None


def fresh_lock(pins: Pins, project: Project) -> str | None:
    """The text of the first lock of the profile made from these pins: the lock dir's, else
    the package's own (a copy of the project's versions.toml builds from those)."""
    wanted = inputs_digest(pins)
    for path in project.lock_candidates(pins.profile):
        if path.is_file() and lock_digest(text := path.read_text()) == wanted:
            return text
    return None


def read_fresh_lock(pins: Pins, project: Project) -> str:
    """The profile's lock text; a ConfigError if no lock made from these pins exists."""
    text = fresh_lock(pins, project)
    if text is not None:
        return text
    remedy = (
        f"run `nox -s lock` (installed: `vllm-forge lock --pins {project.pins_file}`), "
        f"which writes {project.lock_path(pins.profile)}"
    )
    found = [p for p in project.lock_candidates(pins.profile) if p.is_file()]
    if not found:
        raise ConfigError(f"no lock for profile {pins.profile}: {remedy}")
    raise ConfigError(
        f"the lock of profile {pins.profile} ({found[0]}) is stale: {project.pins_file.name} "
        f"changed since it was made; {remedy}"
    )


@dataclass(frozen=True, kw_only=True)
class SplitLock:
    vllm: str  # the vllm entry with its hashes (empty when the profile compiles vLLM)
    deps: str  # every other entry


def split(text: str, *, drop_vllm: bool) -> SplitLock:
    """Split a lock into the vLLM entry and the rest (pip requirement-file syntax)."""
    entries: list[list[str]] = []
    for line in text.splitlines():
        if _ENTRY.match(line):
            entries.append([line])
        elif entries and line.startswith((" ", "\t")):
            entries[-1].append(line)
    vllm = [e for e in entries if _ENTRY.match(e[0])["name"].lower() == "vllm"]
    rest = [e for e in entries if _ENTRY.match(e[0])["name"].lower() != "vllm"]
    if len(vllm) != 1:
        raise ConfigError("the lock has no single vllm entry: run `nox -s lock`")

    def join(chosen: list[list[str]]) -> str:
        kept = [[ln for ln in e if not ln.strip().startswith("#")] for e in chosen]
        text = "\n".join("\n".join(e).rstrip(" \\") for e in kept)
        return text + "\n" if text else ""

    return SplitLock(vllm="" if drop_vllm else join(vllm), deps=join(rest))


def uv_binary() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        raise ConfigError("uv is not installed: `nox -s lock` installs it, or pip install uv")
    return found


def compile_argv(pins: Pins, uv: str, req_file: Path, index_url: str) -> list[str]:
    argv = [
        uv, "pip", "compile", str(req_file),
        "--python-version", pins.python_version,
        "--python-platform", pins.python_platform,
        "--generate-hashes", "--no-header", "--no-annotate",
        "--index-url", index_url,
        "--index-strategy", "unsafe-best-match",
    ]  # fmt: skip
    if pins.torch.index_url:
        argv += ["--extra-index-url", pins.torch.index_url]
    return argv


def make_lock(pins: Pins, work_dir: Path, index_url: str | None = None) -> str:
    """Resolve the profile's runtime environment with uv; return the lock text."""
    work_dir.mkdir(parents=True, exist_ok=True)
    req_file = work_dir / f"{pins.profile}.in"
    req_file.write_text("\n".join(requirements(pins)) + "\n")
    argv = compile_argv(pins, uv_binary(), req_file, index_url or pipconfig.index_url())
    # uv resolves for another Python without one: never let it try to download an interpreter
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise IndexError_(f"uv could not resolve profile {pins.profile}: {tail}")
    header = (
        f"# vllm-forge lock inputs: sha256:{inputs_digest(pins)}\n"
        f"# profile {pins.profile}: Python {pins.python_version}, {pins.python_platform}. "
        "Made by `nox -s lock`; do not edit.\n"
    )
    return header + result.stdout


def write_lock(pins: Pins, text: str, project: Project) -> Path:
    path = project.lock_path(pins.profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def refresh(
    project: Project,
    *,
    profiles: list[str] | None = None,
    upgrade: bool = False,
    log=print,
) -> list[Path]:
    """Re-lock every profile whose lock is missing or stale (all of them with `upgrade`)."""
    doc = read_document(project.pins_file)
    written = []
    for name in profiles or profile_names(doc):
        resolved = resolve(doc, name)
        path = project.lock_path(name)
        if not upgrade and fresh_lock(resolved, project) is not None:
            log(f"lock: {name} is current")
            continue
        written.append(write_lock(resolved, make_lock(resolved, project.lock_work), project))
        log(f"lock: wrote {path}")
    return written
