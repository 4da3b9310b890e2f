"""Choosing vLLM, torch and FlashInfer pins from an index: pure logic over what the index returns.

Walk vLLM releases newest first and take the first one whose wheels' own metadata allows the
profile: vLLM pins torch exactly, and that torch's wheel for the profile's Python must be a build
for the profile's CUDA (it requires `nvidia-cuda-runtime-cu12==12.8.*`; a torch that pulls CUDA 13
packages is refused). torchvision, torchaudio and FlashInfer versions are the ones vLLM pins.
Metadata is read only for the releases walked, newest first, so a bump costs a few range reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import IndexError_
from ..pins import Pins
from .pyindex import Dist, Metadata

_CUDA_RUNTIME = re.compile(r"^nvidia-cuda-runtime(-cu(?P<major>\d+))?$")


class IndexView(Protocol):
    def files(self, project: str) -> list[Dist]: ...

    def metadata(self, dist: Dist) -> Metadata: ...


@dataclass(frozen=True, kw_only=True)
class Target:
    """The interpreter and platform the image installs into."""

    python: str  # "3.12"
    cuda: str  # "12.8"
    machine: str = "x86_64"
    glibc: tuple[int, int] = (2, 39)  # Ubuntu 24.04

    @classmethod
    def of(cls, pins: Pins) -> Target:
        """The profile's target: its Python, CUDA, and `[python].platform` (validated by pins)."""
        machine, _, glibc = pins.python_platform.partition("-manylinux_")
        major, _, minor = glibc.partition("_")
        return cls(
            python=pins.python_version,
            cuda=pins.cuda_version,
            machine=machine,
            glibc=(int(major), int(minor)),
        )

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)

    def marker_environment(self) -> dict[str, str]:
        return {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "platform_python_implementation": "CPython",
            "os_name": "posix",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
            "platform_release": "",
            "platform_version": "",
            "extra": "",
        }

    def supported_tags(self) -> list[Tag]:
        """Most preferred first, as pip orders them."""
        major, minor = self.glibc
        platforms = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        platforms += [f"{name}_{self.machine}" for m, name in legacy.items() if m <= minor]
        platforms.append(f"linux_{self.machine}")
        version = self.python_tuple
        return [
            *cpython_tags(version, platforms=platforms),
            *compatible_tags(version, f"cp{version[0]}{version[1]}", platforms=platforms),
        ]


@dataclass(frozen=True, kw_only=True)
class Solution:
    vllm: str
    vllm_sdist_sha256: str
    torch: str
    torchvision: str | None
    torchaudio: str | None
    flashinfer: str | None
    torch_cuda_requirement: str  # the evidence, e.g. "nvidia-cuda-runtime-cu12==12.8.90"
    torch_cuda: str = ""  # the CUDA major.minor torch is built for (the target's), e.g. "12.8"
    skipped: tuple[str, ...] = field(default=())  # one line per newer vLLM refused, and why


class Refused(Exception):
    """A candidate vLLM release does not fit; the message says why (for the changelog)."""


def best_wheel(dists: Iterable[Dist], version: Version, tags: Sequence[Tag]) -> Dist | None:
    """The wheel pip would take for `version` on the target: best tag, then highest build."""
    rank = {tag: i for i, tag in enumerate(tags)}
    fitting = [
        (min(rank[t] for t in d.tags if t in rank), d)
        for d in dists
        if d.is_wheel and d.version == version and not d.yanked and d.tags & rank.keys()
    ]
    if not fitting:
        return None
    return min(fitting, key=lambda pair: (pair[0], _neg_build(pair[1].build)))[1]


def _neg_build(build: tuple[int, str] | tuple[()]) -> tuple[int, str]:
    return (-build[0], build[1]) if build else (1, "")


def applicable(metadata: Metadata, target: Target) -> list[Requirement]:
    """The Requires-Dist lines that apply on the target (no extras)."""
    env = target.marker_environment()
    return [r for r in metadata.requires_dist if r.marker is None or r.marker.evaluate(env)]


def exact_pin(requirements: Iterable[Requirement], name: str) -> str | None:
    """The version of `name==X` among the requirements; None if not required or not exact."""
    wanted = canonicalize_name(name)
    for req in requirements:
        if canonicalize_name(req.name) != wanted:
            continue
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return specs[0].version
        return None
    return None


def cuda_of_torch(requirements: Iterable[Requirement]) -> tuple[str, str] | None:
    """(CUDA major.minor, the requirement that says so) for a torch wheel, None if not a CUDA build.

    Reads `nvidia-cuda-runtime-cuNN==X` (CUDA 12 builds) or `cuda-toolkit[cudart]==X` /
    `nvidia-cuda-runtime==X` (CUDA 13 builds).
    """
    for req in requirements:
        name = canonicalize_name(req.name)
        if not (_CUDA_RUNTIME.match(name) or (name == "cuda-toolkit" and "cudart" in req.extras)):
            continue
        version = _pinned_release(req.specifier)
        if version is not None:
            return f"{version.major}.{version.minor}", f"{req.name}{req.specifier}"
    return None


def _pinned_release(specifier: SpecifierSet) -> Version | None:
    for spec in specifier:
        if spec.operator in ("==", "==="):
            try:
                return Version(spec.version.rstrip(".*"))
            except InvalidVersion:
                return None
    return None


def _has_file(index: IndexView, project: str, version: str, tags: Sequence[Tag]) -> bool:
    return best_wheel(index.files(project), Version(version), tags) is not None


def _check_torch(index: IndexView, version: str, target: Target, tags: Sequence[Tag]) -> str:
    wheel = best_wheel(index.files("torch"), Version(version), tags)
    if wheel is None:
        raise Refused(f"torch {version} has no wheel for cp{target.python.replace('.', '')}")
    found = cuda_of_torch(applicable(index.metadata(wheel), target))
    if found is None:
        raise Refused(f"torch {version} ({wheel.filename}) requires no CUDA runtime")
    cuda, evidence = found
    if cuda != target.cuda:
        raise Refused(f"torch {version} is a CUDA {cuda} build (requires {evidence})")
    return evidence


def _check_companion(
    index: IndexView,
    project: str,
    version: str | None,
    torch: str,
    target: Target,
    tags: Sequence[Tag],
) -> None:
    if version is None:
        return
    wheel = best_wheel(index.files(project), Version(version), tags)
    if wheel is None:
        raise Refused(f"{project} {version} has no wheel for the target")
    pin = exact_pin(applicable(index.metadata(wheel), target), "torch")
    if pin is not None and Version(pin) != Version(torch):
        raise Refused(f"{project} {version} requires torch=={pin}, not {torch}")


def _sdist_sha256(dists: Iterable[Dist], version: Version) -> str:
    for dist in dists:
        if not dist.is_wheel and dist.version == version and dist.sha256 and not dist.yanked:
            return dist.sha256
    return ""


def try_vllm(
    index: IndexView,
    version: Version,
    target: Target,
    *,
    flashinfer_packages: Sequence[str],
    need_sdist: bool,
) -> Solution:
    """The pins for one vLLM release, or Refused with the reason."""
    tags = target.supported_tags()
    dists = index.files("vllm")
    wheel = best_wheel(dists, version, tags)
    if wheel is None:
        raise Refused(f"no manylinux {target.machine} wheel for glibc {target.glibc}")
    sdist_sha256 = _sdist_sha256(dists, version)
    if need_sdist and not sdist_sha256:
        raise Refused("no sdist with a sha256 on the index")
    if wheel.requires_python and Version(f"{target.python}.0") not in SpecifierSet(
        wheel.requires_python
    ):
        raise Refused(f"requires Python {wheel.requires_python}")
    requirements = applicable(index.metadata(wheel), target)
    torch = exact_pin(requirements, "torch")
    if torch is None:
        raise Refused("does not pin torch exactly")
    evidence = _check_torch(index, torch, target, tags)
    companions = {name: exact_pin(requirements, name) for name in ("torchvision", "torchaudio")}
    for name, pinned in companions.items():
        _check_companion(index, name, pinned, torch, target, tags)
    flashinfer = _flashinfer_version(requirements, flashinfer_packages)
    if flashinfer is not None:
        for package in flashinfer_packages:
            if not _has_file(index, package, flashinfer, tags):
                raise Refused(f"{package} {flashinfer} is not on the index")
    return Solution(
        vllm=str(version),
        vllm_sdist_sha256=sdist_sha256,
        torch=torch,
        torchvision=companions["torchvision"],
        torchaudio=companions["torchaudio"],
        flashinfer=flashinfer,
        torch_cuda_requirement=evidence,
        torch_cuda=target.cuda,
    )


def _flashinfer_version(requirements: Sequence[Requirement], packages: Sequence[str]) -> str | None:
    """The one version at which vLLM requires the FlashInfer packages (None: not required)."""
    pins = {name: exact_pin(requirements, name) for name in packages}
    required = {canonicalize_name(r.name) for r in requirements} & {
        canonicalize_name(p) for p in packages
    }
    versions = {pins[p] for p in packages if canonicalize_name(p) in required}
    if None in versions:
        raise Refused("requires FlashInfer without an exact pin")
    if len(versions) > 1:
        raise Refused(f"requires FlashInfer packages at different versions {sorted(versions)}")
    return next((v for v in versions if v is not None), None)


def release_versions(dists: Iterable[Dist]) -> list[Version]:
    """Final releases with at least one file that is not yanked, newest first."""
    versions = {d.version for d in dists if not d.yanked and not d.version.is_prerelease}
    return sorted(versions, reverse=True)


def solve(
    index: IndexView,
    target: Target,
    *,
    flashinfer_packages: Sequence[str] = ("flashinfer-python", "flashinfer-cubin"),
    need_sdist: bool = False,
    stop_at: str | None = None,
) -> Solution:
    """The newest vLLM release whose pins fit the target; `stop_at` bounds the walk downwards."""
    skipped: list[str] = []
    versions = release_versions(index.files("vllm"))
    if not versions:
        raise IndexError_("the package index has no vllm releases: check the index URL")
    for version in versions:
        try:
            found = try_vllm(
                index,
                version,
                target,
                flashinfer_packages=flashinfer_packages,
                need_sdist=need_sdist,
            )
        except Refused as why:
            skipped.append(f"vllm {version}: {why}")
            if stop_at is not None and version <= Version(stop_at):
                break
            continue
        return replace(found, skipped=tuple(skipped))
    raise IndexError_(
        f"no vLLM release on the index fits CUDA {target.cuda} / Python {target.python}"
        f" (newest refused: {skipped[0] if skipped else 'none'}); keep the current pins"
    )
