"""CUDA architecture lists: the `TORCH_CUDA_ARCH_LIST` grammar, which ones an nvcc can build,
and the nvcc flags a list means."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError

_ARCH = re.compile(r"^(?P<major>[1-9][0-9]?)\.(?P<minor>[0-9])(?P<suffix>[af]?)(?P<ptx>\+PTX)?$")
ACCEPTED_FORMS = '"12.0", "12.0a", "12.0f", "8.9+PTX", several separated by spaces or semicolons'

# The GPU this project builds for: an arch list without it builds an image that fails on it
# ("no kernel image is available for execution on the device").
SERVED_GPU = "RTX 5090"
SERVED_CAPABILITY = (12, 0)

# What each nvcc accepts (`-gencode arch=compute_X,code=sm_X`), read from NVIDIA's own tools:
# the `--gpu-name` list of `ptxas --help` in nvidia-cuda-nvcc-cu12 12.8.93 and 12.9.86 and
# nvidia-cuda-nvcc 13.0.88 and 13.5.37 (13.0's `nvcc --list-gpu-code` agrees). CUDA 12.9 brought
# the `f` (family) forms; 13.0 dropped everything before 7.5 (Maxwell, Pascal, Volta) and renamed
# 10.1 to 11.0. An nvcc between two known ones is taken to accept what the older one does (within
# a major, nvcc has only ever added targets).
_CUDA12_BASE = "5.0 5.2 5.3 6.0 6.1 6.2 7.0 7.2 7.5 8.0 8.6 8.7 8.9 9.0 9.0a"
_CUDA13_BASE = "7.5 8.0 8.6 8.7 8.8 8.9 9.0 9.0a 10.0 10.0a 10.0f 10.3 10.3a 10.3f 11.0 11.0a 11.0f"
NVCC_ARCHES: dict[tuple[int, int], frozenset[str]] = {
    (12, 8): frozenset(f"{_CUDA12_BASE} 10.0 10.0a 10.1 10.1a 12.0 12.0a".split()),
    (12, 9): frozenset(
        f"{_CUDA12_BASE} 10.0 10.0a 10.0f 10.1 10.1a 10.1f 10.3 10.3a 10.3f"
        " 12.0 12.0a 12.0f 12.1 12.1a 12.1f".split()
    ),
    (13, 0): frozenset(f"{_CUDA13_BASE} 12.0 12.0a 12.0f 12.1 12.1a 12.1f".split()),
    (13, 5): frozenset(
        f"{_CUDA13_BASE} 10.7 10.7a 10.7f 12.0 12.0a 12.0f 12.1 12.1a 12.1f".split()
    ),
}


@dataclass(frozen=True, order=True)
class Arch:
    major: int
    minor: int
    suffix: str = ""  # "", "a" (arch-specific) or "f" (family, CUDA >= 12.9)
    ptx: bool = False

    @property
    def sm(self) -> str:
        """The SASS target name, e.g. ``sm_120a``."""
        return f"sm_{self.major}{self.minor}{self.suffix}"

    @property
    def compute(self) -> str:
        return f"compute_{self.major}{self.minor}{self.suffix}"

    @property
    def capability(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def target(self) -> str:
        """The target without `+PTX`: what nvcc has to know, e.g. ``12.0a``."""
        return f"{self.major}.{self.minor}{self.suffix}"

    def __str__(self) -> str:
        return f"{self.target}{'+PTX' if self.ptx else ''}"


def parse_arch_list(text: str, *, what: str = "torch_cuda_arch_list") -> tuple[Arch, ...]:
    """Parse a TORCH_CUDA_ARCH_LIST-style string; one clear ConfigError on a bad entry."""
    items = [item for item in re.split(r"[;\s]+", text.strip()) if item]
    if not items:
        raise ConfigError(f"{what} is empty; accepted forms: {ACCEPTED_FORMS}")
    archs: list[Arch] = []
    for item in items:
        match = _ARCH.match(item)
        if match is None:
            raise ConfigError(
                f"{what}: {item!r} is not a CUDA architecture; accepted forms: {ACCEPTED_FORMS}"
            )
        arch = Arch(int(match["major"]), int(match["minor"]), match["suffix"], bool(match["ptx"]))
        twin = next((a for a in archs if a.target == arch.target), None)
        if twin is not None:  # `12.0+PTX 12.0` would emit the sm_120 gencode flag twice
            both = f"{twin} and {arch}" if twin != arch else f"{arch} twice"
            raise ConfigError(
                f"{what}: {text!r} names {arch.target} more than once ({both}); write it once,"
                f" as {arch.target}+PTX if PTX should ship too"
            )
        archs.append(arch)
    return tuple(archs)


def format_arch_list(archs: tuple[Arch, ...], sep: str = ";") -> str:
    return sep.join(str(a) for a in archs)


def nvcc_accepts(cuda: str) -> tuple[str, frozenset[str]]:
    """(the nvcc release whose list applies, the targets it accepts) for CUDA `cuda` ("12.8")."""
    major, _, minor = cuda.partition(".")
    wanted = (int(major), int(minor or 0))
    known = [v for v in NVCC_ARCHES if v[0] == wanted[0] and v <= wanted]
    if not known:
        releases = ", ".join(f"{a}.{b}" for a, b in sorted(NVCC_ARCHES))
        raise ConfigError(
            f"which architectures CUDA {cuda}'s nvcc builds is not known here (known: {releases});"
            " add its list to vllm_forge/cuda_arch.py (NVCC_ARCHES) from `ptxas --help`"
        )
    release = max(known)
    return f"{release[0]}.{release[1]}", NVCC_ARCHES[release]


def _sort_key(target: str) -> tuple[int, int, str]:
    number, suffix = target.rstrip("af"), target[len(target.rstrip("af")) :]
    major, minor = number.split(".")
    return int(major), int(minor), suffix


def check_nvcc_can_build(archs: tuple[Arch, ...], cuda: str, *, what: str, nvcc: str) -> None:
    """Refuse an arch the profile's nvcc (CUDA `cuda`, from `nvcc`) cannot compile for."""
    _, accepted = nvcc_accepts(cuda)
    refused = [a for a in archs if a.target not in accepted]
    if refused:
        listed = " ".join(sorted(accepted, key=_sort_key))
        hint = ""
        if any(a.suffix == "f" for a in refused) and not any(t.endswith("f") for t in accepted):
            hint = " (the `f` family forms need CUDA >= 12.9: write 12.0a for 12.8)"
        raise ConfigError(
            f"{what}: {', '.join(str(a) for a in refused)} cannot be built by CUDA {cuda}'s nvcc"
            f" ({nvcc}); it builds {listed}{hint}"
        )


def covers(archs: tuple[Arch, ...], capability: tuple[int, int]) -> str:
    """How a binary built for `archs` runs on a GPU of `capability`: "sass", "ptx" or "none".

    SASS runs on its own capability (an `f` form also on later minors of its major); PTX of an
    earlier capability is compiled by the driver at first use (not `a`/`f` PTX: it is tied to
    its own architecture or family).
    """
    major, minor = capability
    for arch in archs:
        if arch.capability == capability or (
            arch.suffix == "f" and arch.major == major and arch.minor <= minor
        ):
            return "sass"
    for arch in archs:
        if arch.ptx and not arch.suffix and arch.capability <= capability:
            return "ptx"
    return "none"


def served_gpu_warning(archs: tuple[Arch, ...], *, what: str) -> str | None:
    """A warning when `archs` has no SASS for the GPU this project serves, else None."""
    listed = format_arch_list(archs, sep=" ")
    cc = ".".join(str(n) for n in SERVED_CAPABILITY)
    how = covers(archs, SERVED_CAPABILITY)
    if how == "sass":
        return None
    if how == "ptx":
        return (
            f"{what} = {listed!r} has no {cc} SASS for the {SERVED_GPU}: its kernels run only as"
            f" PTX the driver compiles at first launch (slow start); add {cc}"
        )
    return (
        f"{what} = {listed!r} builds nothing that runs on the {SERVED_GPU} ({cc}): the image"
        f" would fail there with 'no kernel image is available'; add {cc}"
    )


def nvcc_gencode_flags(archs: tuple[Arch, ...]) -> list[str]:
    """nvcc flags that put SASS for each arch (and PTX where `+PTX`) into the binary."""
    flags = []
    for arch in archs:
        flags.append(f"-gencode=arch={arch.compute},code={arch.sm}")
        if arch.ptx:
            flags.append(f"-gencode=arch={arch.compute},code={arch.compute}")
    return flags


def sass_targets(archs: tuple[Arch, ...]) -> frozenset[str]:
    """The `sm_XY` names whose SASS a binary built for `archs` must contain."""
    return frozenset(a.sm for a in archs)
