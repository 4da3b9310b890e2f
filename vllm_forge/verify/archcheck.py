"""Architecture coverage without a GPU: which SASS (and PTX) a CUDA binary carries.

The CPU-side answer to "no kernel image is available for execution on the device": read each
shared object's fat binaries with `cuobjdump --list-elf --list-ptx` and compare the SASS targets
found with the ones the profile's arch list requires. cuobjdump comes from the package index
(`nvidia-cuda-cuobjdump`) and runs on the host, so it never has to be in the image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..cuda_arch import parse_arch_list, sass_targets
from ..errors import IndexError_, VerifyError

# Known to read vLLM's wheels (sm_70 ... sm_120a); any 13.x reads older binaries too.
CUOBJDUMP_REQUIREMENT = "nvidia-cuda-cuobjdump==13.2.51"

# "ELF file    2: _C.abi3.2.sm_90a.cubin" / "PTX file    1: kernel-probe.1.sm_120.ptx"
_LISTING = re.compile(
    r"^(?P<kind>ELF|PTX) file\s+\d+:\s+\S*?\.(?P<arch>sm_\d+[af]?)\.(?:cubin|ptx)\s*$"
)
_SM = re.compile(r"^sm_(?P<major>\d+)(?P<minor>\d)(?P<suffix>[af]?)$")
_NO_DEVICE_CODE = "does not contain device code"


@dataclass(frozen=True)
class CudaContents:
    """What one file's fat binaries hold."""

    sass: frozenset[str]  # "sm_90", "sm_120a", ...
    ptx: frozenset[str]  # "compute_120", ...

    @property
    def has_device_code(self) -> bool:
        return bool(self.sass or self.ptx)


NO_DEVICE_CODE = CudaContents(frozenset(), frozenset())


def parse_cuobjdump_listing(text: str) -> CudaContents:
    """Parse `cuobjdump --list-elf [--list-ptx]` output (stdout and stderr together).

    PTX is listed under the SASS name of its virtual arch (`...sm_120.ptx`); it is returned as
    `compute_120`. Lines of any other form (archive `member` headers, info notes) are skipped.
    """
    sass: set[str] = set()
    ptx: set[str] = set()
    for line in text.splitlines():
        match = _LISTING.match(line.strip())
        if match is None:
            continue
        if match["kind"] == "ELF":
            sass.add(match["arch"])
        else:
            ptx.add("compute_" + match["arch"].removeprefix("sm_"))
    return CudaContents(frozenset(sass), frozenset(ptx))


def _parse_target(target: str) -> tuple[int, int, str]:
    match = _SM.match(target.replace("compute_", "sm_", 1))
    if match is None:
        raise ValueError(f"not a CUDA target name: {target!r}")
    return int(match["major"]), int(match["minor"]), match["suffix"]


def capability_of(target: str) -> tuple[int, int]:
    """`sm_120a` -> (12, 0); `compute_90` -> (9, 0)."""
    major, minor, _ = _parse_target(target)
    return major, minor


def satisfies(found: str, required: str) -> bool:
    """Whether SASS `found` serves an arch list entry `required`.

    A plain `sm_XY` is served by `sm_XY`, `sm_XYa` or `sm_XYf`: each runs on a device of
    compute capability X.Y. An `a` or `f` entry asks for exactly that variant.
    """
    if found == required:
        return True
    if _parse_target(required)[2]:
        return False
    return capability_of(found) == capability_of(required)


@dataclass(frozen=True)
class FileCoverage:
    path: Path
    contents: CudaContents
    required: frozenset[str]

    @property
    def has_device_code(self) -> bool:
        return self.contents.has_device_code

    @property
    def missing(self) -> frozenset[str]:
        """Required SASS targets no SASS in the file serves: "no kernel image" on such a GPU."""
        if not self.has_device_code:
            return frozenset()
        return frozenset(
            r for r in self.required if not any(satisfies(f, r) for f in self.contents.sass)
        )

    @property
    def extra(self) -> frozenset[str]:
        """SASS for compute capabilities outside the list: size the image carries for nothing."""
        wanted = {capability_of(r) for r in self.required}
        return frozenset(f for f in self.contents.sass if capability_of(f) not in wanted)

    @property
    def ok(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "cuda_code": self.has_device_code,
            "sass": sorted_targets(self.contents.sass),
            "ptx": sorted_targets(self.contents.ptx),
            "missing": sorted_targets(self.missing),
            "extra": sorted_targets(self.extra),
            "ok": self.ok,
        }


@dataclass(frozen=True)
class CoverageReport:
    required: frozenset[str]
    files: tuple[FileCoverage, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def failing(self) -> tuple[FileCoverage, ...]:
        return tuple(f for f in self.files if not f.ok)

    def to_dict(self) -> dict[str, object]:
        return {
            "required": sorted_targets(self.required),
            "ok": self.ok,
            "files": [f.to_dict() for f in self.files],
        }

    def table(self) -> str:
        """A readable table: one row per file."""
        rows = [("file", "SASS", "PTX", "missing", "extra")]
        for f in self.files:
            if not f.has_device_code:
                rows.append((str(f.path), "no CUDA code", "", "", ""))
                continue
            rows.append(
                (
                    str(f.path),
                    " ".join(sorted_targets(f.contents.sass)) or "-",
                    " ".join(sorted_targets(f.contents.ptx)) or "-",
                    " ".join(sorted_targets(f.missing)) or "-",
                    " ".join(sorted_targets(f.extra)) or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        )

    def failure_message(self) -> str:
        """One line per failing file: what was expected, what was found, what to do."""
        want = " ".join(sorted_targets(self.required))
        return "\n".join(
            f"{f.path}: no SASS for {' '.join(sorted_targets(f.missing))} (found: "
            f"{' '.join(sorted_targets(f.contents.sass)) or 'none'}; required: {want}); "
            "a GPU of that arch fails with 'no kernel image is available': rebuild with it "
            "in the arch list"
            for f in self.failing
        )


def sorted_targets(targets: Iterable[str]) -> list[str]:
    """sm_75 < sm_90 < sm_90a < sm_120 (numeric, not string order)."""
    return sorted(targets, key=lambda t: (capability_of(t), t))


def required_targets(arch_list: str) -> frozenset[str]:
    """`"9.0 12.0a"` (TORCH_CUDA_ARCH_LIST grammar) -> {"sm_90", "sm_120a"}."""
    return sass_targets(parse_arch_list(arch_list))


def file_coverage(path: Path, contents: CudaContents, required: frozenset[str]) -> FileCoverage:
    return FileCoverage(Path(path), contents, frozenset(required))


def list_contents(path: Path, cuobjdump: Path) -> CudaContents:
    """Run cuobjdump on one file. A file without device code is NO_DEVICE_CODE, not an error."""
    proc = subprocess.run(
        [str(cuobjdump), "--list-elf", "--list-ptx", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = proc.stdout + proc.stderr
    if _NO_DEVICE_CODE in output:
        return NO_DEVICE_CODE
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        raise VerifyError(
            f"cuobjdump could not read {path} (exit {proc.returncode}): {detail or 'no message'}"
        )
    return parse_cuobjdump_listing(output)


def coverage(files: Iterable[Path], required: frozenset[str], cuobjdump: Path) -> CoverageReport:
    """Which of `required` (e.g. {"sm_120"}) each file lacks, and what it carries beyond them."""
    results = tuple(
        file_coverage(Path(p), list_contents(Path(p), cuobjdump), required) for p in files
    )
    return CoverageReport(frozenset(required), results)


def find_shared_objects(root: Path) -> list[Path]:
    """Every `*.so` / `*.so.N` file under `root`, sorted; links are skipped (read once)."""
    found = [
        p
        for p in Path(root).rglob("*.so*")
        if p.is_file() and not p.is_symlink() and re.search(r"\.so(\.\d+)*$", p.name)
    ]
    return sorted(found)


# --- cuobjdump itself -------------------------------------------------------------------------


# Words in pip's output that mean it never reached the index (as opposed to a missing package).
_UNREACHABLE_MARKERS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeout",
    "ProxyError",
    "Connection refused",
)


def _target_dir(cache_dir: Path, requirement: str) -> Path:
    return Path(cache_dir) / re.sub(r"[^A-Za-z0-9.]+", "-", requirement)


def cached_cuobjdump(cache_dir: Path, requirement: str = CUOBJDUMP_REQUIREMENT) -> Path | None:
    """The cuobjdump that ensure_cuobjdump installed under `cache_dir`, if any."""
    candidates = sorted(_target_dir(cache_dir, requirement).glob("nvidia/*/bin/cuobjdump"))
    usable = [c for c in candidates if os.access(c, os.X_OK)]
    return usable[-1] if usable else None


def pip_install_target(requirements: Sequence[str], target: Path) -> Path:
    """`pip install --target` into a fresh directory, renamed into place only when complete.

    A half-finished install never looks like a cached one. Raises IndexError_ when pip fails.
    """
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(partial),
        *requirements,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        what = " ".join(requirements)
        if any(marker in proc.stderr for marker in _UNREACHABLE_MARKERS):
            raise IndexError_(
                f"the package index is unreachable: pip could not install {what}; check the "
                f"network, pip's index settings (PIP_INDEX_URL) and proxy CA:\n{tail}"
            )
        raise IndexError_(f"pip could not install {what} (exit {proc.returncode}):\n{tail}")
    try:
        partial.rename(target)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(partial, ignore_errors=True)
    return target


def ensure_cuobjdump(
    cache_dir: Path, requirement: str = CUOBJDUMP_REQUIREMENT, *, use_path: bool = True
) -> Path:
    """A cuobjdump that runs here: on PATH (when `use_path`), cached, or pip-installed now."""
    if use_path and (on_path := shutil.which("cuobjdump")):
        return Path(on_path)
    found = cached_cuobjdump(cache_dir, requirement)
    if found is None:
        pip_install_target([requirement], _target_dir(cache_dir, requirement))
        found = cached_cuobjdump(cache_dir, requirement)
    if found is None:
        raise VerifyError(
            f"{requirement} installed under {cache_dir} but holds no bin/cuobjdump; "
            "the package's layout changed: pin a version that has it"
        )
    return found
