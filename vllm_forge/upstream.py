"""What the pinned upstream sources need in order to be built, read from those sources.

The builder compiles vLLM (from its sdist or a git revision) and, in the default profile,
FlashInfer's flashinfer-jit-cache wheel. The tools those compiles need are facts of the sources,
not of this project, so they are read from the sources where the sources can be had:

- vLLM: `requirements/build.txt` (what the vllm-build stage pip-installs) and pyproject.toml's
  `[build-system].requires`, both after `python use_existing_torch.py` (the stage runs it first;
  without `--prefix` it drops every line that mentions torch, so the build uses the torch that
  is already installed). Read from the very sdist the image fetches (`fetch_sdist.py`), or from a
  shallow checkout of the pinned revision.
- FlashInfer: flashinfer-jit-cache's build requirements live only in FlashInfer's git tree (the
  flashinfer-python sdist on the package index has no flashinfer-jit-cache directory), which
  this project's machines cannot always reach; they are kept below, copied from the pinned commit.

Standard library only at import time: the CLI imports this module through `lock`, and
`vllm-forge setup` runs where nothing is installed.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import redact, sources
from .errors import ConfigError, IndexError_
from .pins import Pins
from .project import Project

# flashinfer-ai/flashinfer at 70b142b75b46aa56e7f675a8e6ec1a977352c91f (tag v0.6.6),
# flashinfer-jit-cache/pyproject.toml, [build-system].requires, in its order. Its build backend
# (flashinfer-jit-cache/build_backend.py, same commit) imports `setuptools.build_meta` and
# `wheel.bdist_wheel`, then `flashinfer.aot` from the source tree, which imports flashinfer-python's
# own runtime dependencies (in the runtime lock: flashinfer-python is installed at this version).
# Move this with [flashinfer].revision: the build lock's inputs include both.
FLASHINFER_JIT_CACHE_REVISION = "70b142b75b46aa56e7f675a8e6ec1a977352c91f"
FLASHINFER_JIT_CACHE_BUILD_REQUIRES: tuple[str, ...] = (
    "setuptools>=77",
    "packaging>=24",
    "wheel",
    "torch",
    "ninja",
    "requests",
    "numpy",
    "nvidia-ml-py",
    "nvidia-nvshmem-cu12",
    "apache-tvm-ffi>=0.1,<0.2",
)

VLLM_BUILD_TXT = "requirements/build.txt"
VLLM_PYPROJECT = "pyproject.toml"

_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's own rule (req_file.COMMENT_RE)
_INCLUDE = re.compile(r"^(-r|--requirement)(\s*=\s*|\s*)(?P<path>\S+)$")


@dataclass(frozen=True, kw_only=True)
class BuildRequirements:
    """A source's build requirements, as requirement strings, each list in the file's order."""

    requirements_txt: tuple[str, ...]  # requirements/build.txt, after use_existing_torch.py
    build_system: tuple[str, ...]  # pyproject.toml [build-system].requires, after it too

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.requirements_txt + self.build_system))


def drop_torch_lines(text: str) -> str:
    """The file as vLLM's `use_existing_torch.py` (run without `--prefix`) rewrites it: every
    line that mentions torch, in any case, removed (torchvision, torchaudio and comments too)."""
    return "".join(line for line in text.splitlines(keepends=True) if "torch" not in line.lower())


def source_files(source: Path) -> dict[str, str]:
    """pyproject.toml and every file under requirements/ of a vLLM source, by relative path:
    from an sdist tarball (below its one top directory) or an extracted tree."""
    wanted = (VLLM_PYPROJECT, "requirements/")
    if source.is_dir():
        paths = [source / VLLM_PYPROJECT, *sorted((source / "requirements").rglob("*"))]
        return {
            p.relative_to(source).as_posix(): p.read_text(errors="replace")
            for p in paths
            if p.is_file()
        }
    if not source.is_file():
        raise ConfigError(f"{source}: no such sdist or source directory")
    files: dict[str, str] = {}
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                relative = "/".join(parts[1:])
                if member.isfile() and relative.startswith(wanted):
                    data = tar.extractfile(member)
                    files[relative] = data.read().decode(errors="replace") if data else ""
    except (tarfile.TarError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(":")
        raise ConfigError(f"{source} is not a readable sdist ({first})") from None
    return files


def _requirement_lines(
    files: dict[str, str], relative: str, seen: tuple[str, ...] = ()
) -> list[str]:
    """The requirements of a pip requirements file (comments, continuations and `-r` includes
    handled, the way pip reads them); any other option is refused, not silently skipped."""
    if relative in seen:
        raise ConfigError(f"{relative} includes itself ({' -> '.join(seen)})")
    if relative not in files:
        raise ConfigError(f"the vLLM source has no {relative}: not a vLLM source tree")
    text = drop_torch_lines(files[relative]).replace("\\\n", "")
    found: list[str] = []
    for raw in text.splitlines():
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        if include := _INCLUDE.match(line):
            path = posixpath.normpath(posixpath.join(posixpath.dirname(relative), include["path"]))
            found += _requirement_lines(files, path, (*seen, relative))
        elif line.startswith("-"):
            raise ConfigError(
                f"vLLM's {relative} has the option line {line!r}, which the build lock cannot"
                " follow; extend vllm_forge/upstream.py"
            )
        else:
            found.append(line)
    return found


def build_requirements_of(files: dict[str, str]) -> BuildRequirements:
    """vLLM's build requirements from its files (`source_files`), as the vllm-build stage sees
    them after `python use_existing_torch.py`."""
    txt = _requirement_lines(files, VLLM_BUILD_TXT)
    if VLLM_PYPROJECT not in files:
        raise ConfigError(f"the vLLM source has no {VLLM_PYPROJECT}: not a vLLM source tree")
    try:
        doc = tomllib.loads(drop_torch_lines(files[VLLM_PYPROJECT]))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"vLLM's {VLLM_PYPROJECT} without its torch lines is not TOML ({error}):"
            " use_existing_torch.py changed upstream; extend vllm_forge/upstream.py"
        ) from None
    requires = doc.get("build-system", {}).get("requires", [])
    return BuildRequirements(
        requirements_txt=tuple(txt), build_system=tuple(r.strip() for r in requires)
    )


def vllm_build_requirements(source: Path) -> BuildRequirements:
    """vLLM's build requirements, read from its sdist tarball or an extracted source tree."""
    return build_requirements_of(source_files(source))


# ---- the pinned vLLM source on this machine ---------------------------------------------------


def vllm_source(pins: Pins, project: Project) -> Path:
    """The pinned vLLM source here: the sdist tarball (build/.cache/sdist, fetched by the script
    the image runs and checked against [vllm].sdist_sha256) or a shallow checkout of
    [vllm].revision (build/.cache/src/vllm)."""
    vllm = pins.vllm
    if vllm.source == "sdist":
        return sources.fetch_sdist(project, pins)  # the source cache's: the same file and script
    if vllm.source == "git":
        return _git_checkout(vllm.git_url, vllm.revision, project.cache / "src" / "vllm")
    raise ConfigError(f"profile {pins.profile} compiles no vLLM: it has no source to read")


def _git_checkout(url: str, revision: str, parent: Path) -> Path:
    target = parent / revision
    if (target / VLLM_PYPROJECT).is_file():
        return target
    work = parent / f"{revision}.tmp"
    if work.exists():
        shutil.rmtree(work)  # a checkout that broke off
    steps = [
        ["git", "init", "-q", str(work)],
        ["git", "-C", str(work), "fetch", "-q", "--depth", "1", url, revision],
        ["git", "-C", str(work), "checkout", "-q", "FETCH_HEAD"],
    ]
    for argv in steps:
        try:
            result = subprocess.run(argv, capture_output=True, text=True)
        except FileNotFoundError:
            raise ConfigError("git is not installed: the build lock reads vLLM's source") from None
        if result.returncode != 0:
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise IndexError_(
                redact.redact(f"cannot check out vLLM {revision} from [vllm].git_url: {tail}")
            )
    if target.exists():  # an earlier, incomplete one (no pyproject.toml): replaced
        shutil.rmtree(target)
    work.replace(target)
    return target
