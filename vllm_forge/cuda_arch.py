"""CUDA architecture lists: the `TORCH_CUDA_ARCH_LIST` grammar, and the nvcc flags it means."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError

_ARCH = re.compile(r"^(?P<major>[1-9][0-9]?)\.(?P<minor>[0-9])(?P<suffix>[af]?)(?P<ptx>\+PTX)?$")
ACCEPTED_FORMS = '"12.0", "12.0a", "12.0f", "8.9+PTX", several separated by spaces or semicolons'


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

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}{self.suffix}{'+PTX' if self.ptx else ''}"


def parse_arch_list(text: str, *, what: str = "torch_cuda_arch_list") -> tuple[Arch, ...]:
    """Parse a TORCH_CUDA_ARCH_LIST-style string; one clear ConfigError on a bad entry."""
    items = [item for item in re.split(r"[;\s]+", text.strip()) if item]
    if not items:
        raise ConfigError(f"{what} is empty; accepted forms: {ACCEPTED_FORMS}")
    archs = []
    for item in items:
        match = _ARCH.match(item)
        if match is None:
            raise ConfigError(
                f"{what}: {item!r} is not a CUDA architecture; accepted forms: {ACCEPTED_FORMS}"
            )
        archs.append(
            Arch(
                int(match["major"]),
                int(match["minor"]),
                match["suffix"],
                match["ptx"] is not None,
            )
        )
    if len(set(archs)) != len(archs):
        raise ConfigError(f"{what}: {text!r} names an architecture twice")
    return tuple(archs)


def format_arch_list(archs: tuple[Arch, ...], sep: str = ";") -> str:
    return sep.join(str(a) for a in archs)


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
