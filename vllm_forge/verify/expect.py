"""What the pins say an image must hold, and pure comparisons against what was found.

Each function returns problems as sentences (expected, found, what to do); empty means fine.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..pins import Pins
from .archcheck import capability_of

REBUILD = "rebuild the image from versions.toml (`nox -s slim`)"

# Libraries vLLM ships that it only loads on other GPUs: their kernels are arch-specific by
# design, so a missing sm_120 there is not a "no kernel image" on an RTX 5090.
NOT_FOR_EVERY_ARCH: dict[str, str] = {
    "_vllm_fa3_C": "FlashAttention 3 is Hopper-only (sm_90a); vLLM uses FA2 on other GPUs",
    "_flashmla_C": "FlashMLA kernels exist for sm_90a/sm_100a only; vLLM checks before use",
    "_flashmla_extension_C": "FlashMLA kernels exist for sm_90a/sm_100a only",
}


def expected_versions(pins: Pins) -> dict[str, str]:
    versions = {
        "vllm": pins.vllm.version,
        "torch": pins.torch.version,
        "torchvision": pins.torch.torchvision,
        "torchaudio": pins.torch.torchaudio,
    }
    versions.update(
        {canonicalize_name(p): pins.flashinfer.version for p in pins.flashinfer.packages}
    )
    return versions


def parse_metadata_headers(text: str) -> dict[str, str]:
    """`Name:`/`Version:` lines of many METADATA files, in order -> {canonical name: version}."""
    found: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Name":
            name = canonicalize_name(value.strip())
        elif key == "Version" and name is not None:
            found[name] = value.strip()
            name = None
    return found


def parse_torch_cuda(version_py: str) -> str | None:
    """`cuda: Optional[str] = '12.8'` in torch/version.py -> "12.8" (None for a CPU build)."""
    match = re.search(r"^cuda\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", version_py, re.MULTILINE)
    return match.group(1) if match else None


def same_version(found: str, pinned: str) -> bool:
    """Equal public versions: torch `2.10.0+cu128` is the pin `2.10.0` (CUDA is checked apart)."""
    try:
        return Version(found).public == Version(pinned).public
    except InvalidVersion:
        return found == pinned


def version_problems(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    problems = []
    for name, want in expected.items():
        have = found.get(name)
        if have is None:
            problems.append(f"{name}: expected {want}, found not installed; {REBUILD}")
        elif not same_version(have, want):
            problems.append(f"{name}: expected {want}, found {have}; {REBUILD}")
    return problems


def flashinfer_agreement(found: dict[str, str]) -> list[str]:
    """Every installed FlashInfer package at one version (kernels and Python must match)."""
    fi = {n: v for n, v in found.items() if n.startswith("flashinfer")}
    if len({Version(v).public for v in fi.values()}) <= 1:
        return []
    listing = ", ".join(f"{n}=={v}" for n, v in sorted(fi.items()))
    return [f"FlashInfer packages disagree: expected one version, found {listing}; {REBUILD}"]


def cuda_problems(torch_cuda: str | None, pinned: str) -> list[str]:
    if torch_cuda == pinned:
        return []
    found = "a CPU-only torch" if torch_cuda is None else f"CUDA {torch_cuda}"
    return [
        f"torch.version.cuda: expected {pinned}, found {found}; install torch from an index "
        f"with CUDA {pinned} builds ([torch].index_url) and rebuild"
    ]


def label_problems(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    problems = []
    for key, want in sorted(expected.items()):
        have = found.get(key)
        if have != want:
            shown = "no such label" if have is None else repr(have)
            problems.append(f"label {key}: expected {want!r}, found {shown}")
    revision = found.get("org.opencontainers.image.revision", "")
    if not revision or revision == "unknown":
        problems.append(
            "label org.opencontainers.image.revision: expected the source commit, found "
            f"{revision or 'no such label'!r}; build from a git checkout (VCS_REF)"
        )
    if problems:
        problems.append(f"the image was not built from these pins: {REBUILD}")
    return problems


def arch_exemption(path: str) -> str | None:
    """Why a library need not carry the profile's arches, or None when it must."""
    stem = PurePosixPath(path).name.split(".")[0]
    return NOT_FOR_EVERY_ARCH.get(stem)


def gpu_arch_problems(capabilities: list[tuple[int, int]], arch_list: list[str]) -> list[str]:
    """torch.cuda.get_arch_list() must name every visible GPU's sm_XY (or a matching sm_XYa)."""
    problems = []
    for major, minor in capabilities:
        sm = f"sm_{major}{minor}"
        if not any(a == sm or a.startswith(sm) and a[len(sm) :] in ("a", "f") for a in arch_list):
            problems.append(
                f"torch has no kernels for this GPU: expected {sm} in torch.cuda.get_arch_list(), "
                f"found {arch_list}; use a torch build for CUDA 12.8 (it carries sm_120)"
            )
    return problems


def ptx_serves(ptx: frozenset[str], missing: frozenset[str]) -> bool:
    """Whether PTX in the file can be JIT-compiled by the driver for every missing SASS target.

    Plain PTX (compute_80) is forward compatible with any later GPU; arch-specific PTX
    (compute_90a) is not. vLLM's FlashAttention 2 ships sm_80 SASS + compute_80 PTX this way.
    """
    plain = [capability_of(p) for p in ptx if not p.endswith(("a", "f"))]
    return bool(plain) and all(any(c <= capability_of(m) for c in plain) for m in missing)


# The flags word of a .pyc header (PEP 552): bit 0 hash-based, bit 1 check the source's hash.
PYC_MODES = {0: "timestamp", 1: "unchecked-hash", 3: "checked-hash"}
HASH_BASED = (1, 3)


def parse_pyc_flags(stdout: str) -> tuple[dict[int, int], dict[int, list[str]]]:
    """(flags -> count, flags -> example paths) from the last line scripts.PYC_FLAGS prints."""
    found = json.loads(stdout.strip().splitlines()[-1])
    return (
        {int(k): v for k, v in found["counts"].items()},
        {int(k): v for k, v in found["examples"].items()},
    )


def bytecode_problems(counts: dict[int, int], examples: dict[int, list[str]]) -> list[str]:
    """Timestamp-based .pyc files carry the source's mtime, i.e. the clock of the build that
    wrote them (an import at build time writes them so): two builds cannot match."""
    problems = []
    for flags, count in sorted(counts.items()):
        if flags not in HASH_BASED:
            mode = PYC_MODES.get(flags, f"unknown header flags {flags}")
            shown = ", ".join(examples.get(flags, [])[:3])
            problems.append(f"{count} {mode} .pyc file(s), e.g. {shown}")
    return problems
