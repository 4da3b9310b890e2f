"""What the pins say an image must hold, and pure comparisons against what was found.

Each function returns problems as sentences (expected, found, what to do); empty means fine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..pins import Pins
from ..prune import RECORD, Entry
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
    """Equal public versions: torch `2.10.0+cu128` is the pin `2.10.0`, and so is a vLLM built
    where VLLM_MAIN_CUDA_VERSION did not match nvcc (`0.19.1+cu128`). CUDA is checked apart."""
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


# --- pruning by architecture (vllm_forge/prune.toml) ------------------------------------------


def capability_text(capability: tuple[int, int]) -> str:
    return f"{capability[0]}.{capability[1]}"


def prune_record_problems(expected: list[str], record: dict[str, int]) -> list[str]:
    """The image's record of what its runtime stage pruned must name the entries the pins select."""
    if record.keys() == set(expected):
        return []
    found = ", ".join(sorted(record)) if record else f"no record ({RECORD})"
    return [
        f"pruned entries: expected {', '.join(sorted(expected)) or 'none'} for this arch list, "
        f"found {found}; the image was built from another template or arch list: {REBUILD}"
    ]


def prune_matched_nothing(record: dict[str, int]) -> list[str]:
    """Selected entries whose paths removed no bytes: the wheels moved under prune.toml."""
    return sorted(name for name, removed in record.items() if removed == 0)


def prune_probe_problems(
    pruned: Sequence[Entry], targets: Sequence[tuple[int, int]], found: dict
) -> list[str]:
    """What scripts.PRUNE_PROBE found, against what was pruned.

    For every GPU the arch list targets, no gate of a pruned entry may say "use it", FlashInfer
    may look up no cubin, and asking must not raise; for a GPU each entry does serve (its
    control), its gates must say "use it", else the probe has stopped telling GPUs apart.
    """
    if "setup" in found:
        return [
            "expected vLLM's CUDA platform to import in the image (with a stand-in libcuda), "
            f"found {found['setup']}; {REBUILD}"
        ]
    problems = [
        f"import {name}: expected it to import with the pruned files gone, found {result}"
        for name, result in sorted(found.get("imports", {}).items())
        if result != "ok"
    ]
    runs = found.get("runs", {})
    for capability in targets:
        cap = capability_text(capability)
        run = runs.get(cap, {})
        for entry in pruned:
            if not entry.probe:
                continue
            answer = run.get("probes", {}).get(entry.probe, {"error": "not asked"})
            if "error" in answer:
                problems.append(
                    f"{entry.name}: expected the upstream code to answer for a {cap} GPU, "
                    f"found {answer['error']}"
                )
            elif answer["used"]:
                said = ", ".join(g for g, v in answer["gates"].items() if v)
                problems.append(
                    f"{entry.name}: pruned, yet for a {cap} GPU {said} says it would be used; "
                    f"add an arch it serves to prune.toml's entry or to the arch list, and rebuild"
                )
        if run.get("cubin_lookups"):
            shown = ", ".join(run["cubin_lookups"][:3])
            problems.append(f"FlashInfer looked up cubins for a {cap} GPU: {shown}")
        as_found = run.get("as_found", {"error": "not asked"})
        if "error" in as_found:
            problems.append(
                f"expected vLLM's FlashAttention/FlashMLA availability checks to answer for a "
                f"{cap} GPU, found {as_found['error']}"
            )
    for entry in pruned:
        if not entry.probe or entry.control is None:
            continue
        cap = capability_text(entry.control)
        answer = runs.get(cap, {}).get("probes", {}).get(entry.probe, {"error": "not asked"})
        if "error" in answer:
            problems.append(f"{entry.name}: asking for a {cap} GPU failed: {answer['error']}")
        elif not answer["used"]:
            problems.append(
                f"{entry.name}: the probe says a {cap} GPU (one the entry serves) would not use it "
                "either, so it cannot tell GPUs apart: the upstream code changed; re-read "
                f"{entry.evidence[0].split(':')[0]} before trusting this pruning"
            )
    return problems


_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def layer_sizes(engine_name: str, stdout: str) -> list[tuple[int, str]]:
    """`image history` (engines.Engine.history_argv) -> [(bytes, instruction)], bottom first, the
    layers only. podman gives bytes; docker a rounded human size ("10.9GB")."""
    text = stdout.strip()
    rows = (
        [json.loads(line) for line in text.splitlines()]
        if engine_name == "docker"
        else json.loads(text or "[]")
    )
    out = []
    for row in reversed(rows):
        raw = row.get("Size", row.get("size", 0))
        if isinstance(raw, int | float):
            size = int(raw)
        else:
            match = re.fullmatch(r"([0-9.]+)\s*([kKMGT]?B)", str(raw).strip())
            size = int(float(match[1]) * _UNITS[match[2]]) if match else 0
        if size:
            created = str(row.get("CreatedBy") or row.get("createdBy") or "")
            out.append((size, " ".join(created.replace("/bin/sh -c", "").split())))
    return out
