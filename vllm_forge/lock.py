"""Hash-pinned locks of each profile's runtime environment (`nox -s lock`).

uv resolves the lock, not pip-tools: pip-tools resolves for the interpreter it runs in, while a
lock here is for the image's Python and glibc (`--python-version`, `--python-platform`), and uv
reads wheel metadata with range requests (the index serves no PEP 658 files). The build installs
from the lock with `--require-hashes --no-deps`: nothing is resolved at build time.

A lock starts with a line naming the digest of its inputs (the requirements, Python, platform);
a lock whose digest differs from the pins' is stale, and the build refuses it.

A profile that compiles (vLLM from source, FlashInfer's jit-cache wheel) has a second lock, its
build lock (`<profile>-build.txt`): the tools those compiles need (vLLM's requirements/build.txt
and [build-system].requires, read from the pinned sdist by `upstream`; flashinfer-jit-cache's
build requirements; `build`), resolved with every version of the runtime lock as a constraint,
and holding only what the runtime lock lacks. The builder installs it after the runtime lock's
deps, both `--no-deps --require-hashes`: the build tools never move torch, numpy or anything
else of the runtime. Its inputs are the runtime lock's versions, the vLLM source pin and
FlashInfer's revision and requirements, so a re-lock of the runtime makes it stale too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import pipconfig, upstream
from .errors import ConfigError, IndexError_
from .pins import Pins, profile_names, read_document, resolve
from .project import Project

_DIGEST_LINE = re.compile(r"^# vllm-forge lock inputs: sha256:(?P<digest>[0-9a-f]{64})$", re.M)
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==", re.M)
_PINNED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)", re.M)


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


def _entries(text: str) -> list[list[str]]:
    """Each `name==version` entry of a lock with its continuation lines (its hashes)."""
    entries: list[list[str]] = []
    for line in text.splitlines():
        if _ENTRY.match(line):
            entries.append([line])
        elif entries and line.startswith((" ", "\t")):
            entries[-1].append(line)
    return entries


def _entry_name(entry: list[str]) -> str:
    return normalize_name(_ENTRY.match(entry[0])["name"])


def _join(chosen: list[list[str]]) -> str:
    kept = [[ln for ln in e if not ln.strip().startswith("#")] for e in chosen]
    text = "\n".join("\n".join(e).rstrip(" \\") for e in kept)
    return text + "\n" if text else ""


def split(text: str, *, drop_vllm: bool) -> SplitLock:
    """Split a lock into the vLLM entry and the rest (pip requirement-file syntax)."""
    entries = _entries(text)
    vllm = [e for e in entries if _entry_name(e) == "vllm"]
    rest = [e for e in entries if _entry_name(e) != "vllm"]
    if len(vllm) != 1:
        raise ConfigError("the lock has no single vllm entry: run `nox -s lock`")
    return SplitLock(vllm="" if drop_vllm else _join(vllm), deps=_join(rest))


def normalize_name(name: str) -> str:
    """A project name as the index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(text: str) -> dict[str, str]:
    """{normalized name: version} of every entry of a lock."""
    return {normalize_name(m["name"]): m["version"] for m in re.finditer(_PINNED, text)}


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


def _uv_compile(argv: list[str], what: str) -> str:
    # uv resolves for another Python without one: never let it try to download an interpreter
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise IndexError_(f"uv could not resolve {what}: {tail}")
    return result.stdout


def make_lock(pins: Pins, work_dir: Path, index_url: str | None = None) -> str:
    """Resolve the profile's runtime environment with uv; return the lock text."""
    work_dir.mkdir(parents=True, exist_ok=True)
    req_file = work_dir / f"{pins.profile}.in"
    req_file.write_text("\n".join(requirements(pins)) + "\n")
    argv = compile_argv(pins, uv_binary(), req_file, index_url or pipconfig.index_url())
    stdout = _uv_compile(argv, f"profile {pins.profile}")
    header = (
        f"# vllm-forge lock inputs: sha256:{inputs_digest(pins)}\n"
        f"# profile {pins.profile}: Python {pins.python_version}, {pins.python_platform}. "
        "Made by `nox -s lock`; do not edit.\n"
    )
    return header + stdout


def write_lock(pins: Pins, text: str, project: Project) -> Path:
    return _write(project.lock_path(pins.profile), text)


# ---- the build lock: the compile stages' tools -------------------------------------------------

# The flashinfer-jit-cache stage builds its wheel with `python -m build --no-isolation`.
BUILD_FRONTEND = ("build",)


def build_lock_name(profile: str) -> str:
    """The build lock's name beside the runtime locks: the file is `<profile>-build.txt`."""
    return f"{profile}-build"


def build_requirements(pins: Pins, vllm: upstream.BuildRequirements) -> list[str]:
    """What the profile's compile stages need beside the runtime's packages: vLLM's build
    requirements (read from its source) and, when it builds FlashInfer's jit-cache wheel, that
    wheel's build requirements and the `build` frontend."""
    found = list(vllm.all)
    if pins.builds_flashinfer:
        if pins.flashinfer.revision != upstream.FLASHINFER_JIT_CACHE_REVISION:
            raise ConfigError(
                f"[flashinfer].revision = {pins.flashinfer.revision!r}, but the build"
                " requirements of flashinfer-jit-cache that vllm_forge/upstream.py records are"
                f" those of {upstream.FLASHINFER_JIT_CACHE_REVISION}: read"
                " flashinfer-jit-cache/pyproject.toml at the new revision, update"
                " FLASHINFER_JIT_CACHE_BUILD_REQUIRES and its revision, then run `nox -s lock`"
            )
        found += [*upstream.FLASHINFER_JIT_CACHE_BUILD_REQUIRES, *BUILD_FRONTEND]
    return list(dict.fromkeys(found))


def _runtime_pins(runtime_text: str) -> dict[str, str]:
    """What the compile stages have before the build lock: the runtime lock less vLLM."""
    return {name: v for name, v in pinned(runtime_text).items() if name != "vllm"}


def build_inputs_digest(pins: Pins, runtime_text: str) -> str:
    inputs = {
        "runtime": inputs_digest(pins),  # Python, platform, torch index, top-level pins
        "runtime_versions": sorted(f"{n}=={v}" for n, v in _runtime_pins(runtime_text).items()),
        "vllm_source": pins.vllm.source_pin,
        "flashinfer": (
            [
                pins.flashinfer.revision,
                *upstream.FLASHINFER_JIT_CACHE_BUILD_REQUIRES,
                *BUILD_FRONTEND,
            ]
            if pins.builds_flashinfer
            else []
        ),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def target_environment(pins: Pins) -> dict[str, str]:
    """PEP 508 marker values of the image's interpreter (for requirements with markers)."""
    machine = pins.python_platform.split("-")[0]
    if machine not in ("x86_64", "aarch64"):
        machine = "x86_64"
    full = f"{pins.python_version}.0"
    return {
        "python_version": pins.python_version,
        "python_full_version": full,
        "implementation_version": full,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_machine": machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
    }


def unsatisfied(
    required: Iterable[str], locked: Mapping[str, str], environment: Mapping[str, str]
) -> list[str]:
    """Each requirement that `locked` ({normalized name: version}) does not meet, with why;
    requirements whose marker is false in `environment` are skipped."""
    from packaging.requirements import InvalidRequirement, Requirement  # not at import: setup

    missing = []
    for text in required:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise ConfigError(f"build requirement {text!r} is not PEP 508 ({error})") from None
        if requirement.marker and not requirement.marker.evaluate(dict(environment)):
            continue
        version = locked.get(normalize_name(requirement.name))
        if version is None:
            missing.append(f"{text} (not locked)")
        elif not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{text} (locked: {version})")
    return missing


def make_build_lock(
    pins: Pins,
    runtime_text: str,
    vllm: upstream.BuildRequirements,
    work_dir: Path,
    index_url: str | None = None,
) -> str:
    """Resolve the compile stages' tools with uv, every runtime lock version a constraint;
    return the build lock: only what the runtime lock lacks, hash-pinned."""
    wanted = build_requirements(pins, vllm)
    runtime = _runtime_pins(runtime_text)
    work_dir.mkdir(parents=True, exist_ok=True)
    req_file = work_dir / f"{build_lock_name(pins.profile)}.in"
    req_file.write_text("\n".join(wanted) + "\n")
    constraints = work_dir / f"{build_lock_name(pins.profile)}.constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(runtime.items())))
    argv = compile_argv(pins, uv_binary(), req_file, index_url or pipconfig.index_url())
    argv += ["--constraint", str(constraints)]
    stdout = _uv_compile(
        argv, f"the build tools of profile {pins.profile} within its runtime lock's versions"
    )
    added = [e for e in _entries(stdout) if _entry_name(e) not in runtime]
    moved = sorted(
        f"{name} {runtime[name]} -> {version}"
        for name, version in pinned(stdout).items()
        if name in runtime and runtime[name] != version
    )
    if moved:  # uv honours constraints; this guards the filter above
        raise IndexError_(f"uv moved runtime pins of profile {pins.profile}: {', '.join(moved)}")
    text = _join(added)
    missing = unsatisfied(wanted, runtime | pinned(text), target_environment(pins))
    if missing:
        raise IndexError_(f"the build lock of profile {pins.profile} misses {', '.join(missing)}")
    return _build_header(pins, runtime_text, vllm) + text


def _build_header(pins: Pins, runtime_text: str, vllm: upstream.BuildRequirements) -> str:
    lines = [
        f"# vllm-forge lock inputs: sha256:{build_inputs_digest(pins, runtime_text)}",
        f"# profile {pins.profile}, build tools: Python {pins.python_version},"
        f" {pins.python_platform}. Made by `nox -s lock`; do not edit.",
        f"# Installed after {pins.profile}.txt less vllm, both --no-deps --require-hashes; holds"
        " only what that lacks.",
        f"# vLLM {pins.vllm.source_pin}, requirements/build.txt (torch lines dropped):"
        f" {'; '.join(vllm.requirements_txt)}",
        f"# vLLM pyproject.toml [build-system].requires: {'; '.join(vllm.build_system)}",
    ]
    if pins.builds_flashinfer:
        lines.append(
            f"# flashinfer-jit-cache at {pins.flashinfer.revision}:"
            f" {'; '.join(upstream.FLASHINFER_JIT_CACHE_BUILD_REQUIRES)}; frontend:"
            f" {'; '.join(BUILD_FRONTEND)}"
        )
    return "\n".join(lines) + "\n"


def fresh_build_lock(pins: Pins, project: Project, runtime_text: str) -> str | None:
    """The text of the first build lock of the profile made from these pins and this runtime
    lock (the lock dir's, else the package's own)."""
    wanted = build_inputs_digest(pins, runtime_text)
    for path in project.lock_candidates(build_lock_name(pins.profile)):
        if path.is_file() and lock_digest(text := path.read_text()) == wanted:
            return text
    return None


def read_fresh_build_lock(pins: Pins, project: Project) -> str | None:
    """The profile's build lock text, a pip requirements file with hashes; None when the
    profile compiles nothing; a ConfigError if no build lock made from these pins and the
    profile's current runtime lock exists."""
    if not pins.compiles_vllm:
        return None
    text = fresh_build_lock(pins, project, read_fresh_lock(pins, project))
    if text is not None:
        return text
    name = build_lock_name(pins.profile)
    remedy = (
        f"run `nox -s lock` (installed: `vllm-forge lock --pins {project.pins_file}`), "
        f"which writes {project.lock_path(name)}"
    )
    found = [p for p in project.lock_candidates(name) if p.is_file()]
    if not found:
        raise ConfigError(f"no build lock for profile {pins.profile}: {remedy}")
    raise ConfigError(
        f"the build lock of profile {pins.profile} ({found[0]}) is stale: its pins or its runtime"
        f" lock changed since it was made; {remedy}"
    )


def _write(path: Path, text: str) -> Path:
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
    """Re-lock every profile whose lock is missing or stale (all of them with `upgrade`), and
    the build lock of every one that compiles."""
    doc = read_document(project.pins_file)
    names = profile_names(doc)
    written = []
    for name in profiles or names:
        if build_lock_name(name) in names:
            raise ConfigError(
                f"profiles {name} and {build_lock_name(name)} clash: the build lock of {name} is"
                f" {build_lock_name(name)}.txt; rename the profile {build_lock_name(name)}"
            )
        resolved = resolve(doc, name)
        path = project.lock_path(name)
        runtime = None if upgrade else fresh_lock(resolved, project)
        if runtime is not None:
            log(f"lock: {name} is current")
        else:
            runtime = make_lock(resolved, project.lock_work)
            written.append(write_lock(resolved, runtime, project))
            log(f"lock: wrote {path}")
        if not resolved.compiles_vllm:
            continue
        if not upgrade and fresh_build_lock(resolved, project, runtime) is not None:
            log(f"lock: {name}'s build tools are current")
            continue
        source = upstream.vllm_source(resolved, project)
        text = make_build_lock(
            resolved, runtime, upstream.vllm_build_requirements(source), project.lock_work
        )
        written.append(_write(project.lock_path(build_lock_name(name)), text))
        log(f"lock: wrote {project.lock_path(build_lock_name(name))}")
    return written
