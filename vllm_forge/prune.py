"""Pruning by architecture: which files of the serving venv no GPU of the arch list will load.

The table is package data (`prune.toml`, one entry per prunable thing). This module is pure:
it reads the table, decides which entries a profile's arch list leaves dead (`select`), and turns
their patterns into plain `find` arguments for the template. The runtime stage prints one
`vllm-forge-prune NAME BYTES` line per pruned entry and keeps the same lines in the image
(`RECORD`); `parse_lines` reads them back for the build summary, the manifest and verify.

Which GPUs an architecture serves (`devices`), in TORCH_CUDA_ARCH_LIST terms:
- `12.0` (SASS sm_120): 12.0 and the newer minors of its major (12.x): SASS runs on later minors;
- `12.0f` (family): the same, 12.x;
- `12.0a` (arch-specific): 12.0 only;
- `+PTX` on a plain arch: also every newer GPU (the driver compiles the PTX); `a`/`f` PTX is
  tied to its GPU or family (as verify.expect.ptx_serves reads it).
This is wider than cuda_arch.covers (SASS on its own capability only) on purpose: pruning asks
whether any GPU of the list could load a file, and erring wide keeps files.
An entry is kept when one GPU is served by both the entry and the arch list, else pruned.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from .cuda_arch import Arch, parse_arch_list
from .errors import ConfigError

TABLE = "prune.toml"
# Where the runtime stage keeps its `vllm-forge-prune` lines in the image.
RECORD = "/usr/local/share/vllm-forge/pruned.txt"
LINE = re.compile(r"vllm-forge-prune (?P<name>[a-z0-9][a-z0-9.-]*) (?P<bytes>\d+)\s*$")
# What verify's in-image script (verify.scripts.PRUNE_PROBE) knows how to ask the upstream code.
PROBES = ("flashinfer-trtllm", "fa3", "flashmla", "fa4", "triton-ptxas")

_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
# A pattern goes into the Dockerfile inside double quotes: nothing the shell would expand.
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]/+-]+$")
_GLOB = re.compile(r"[*?\[]")
# Every GPU a CUDA architecture can name (the arch grammar: major 1-99, minor 0-9).
_UNIVERSE = tuple((major, minor) for major in range(1, 100) for minor in range(10))
_KEYS = {"name", "paths", "arches", "probe", "imports", "reason", "absent", "evidence"}


@dataclass(frozen=True, kw_only=True)
class Entry:
    name: str
    paths: tuple[str, ...]  # relative to site-packages, `find -path` patterns
    arches: tuple[Arch, ...]  # the GPUs it serves; () means none ever loads it
    probe: str  # one of PROBES, or "" when arches is ()
    imports: tuple[str, ...]
    reason: str
    absent: str
    evidence: tuple[str, ...]

    def serves(self, arch_list: Iterable[Arch]) -> bool:
        """Whether a GPU the arch list targets could load this entry's files."""
        return bool(devices(self.arches) & devices(arch_list))

    @property
    def control(self) -> tuple[int, int] | None:
        """A GPU the entry does serve: verify asks the upstream code about it too, so a probe
        that says "unused" for every GPU is caught."""
        return self.arches[0].capability if self.arches else None


def _covers(arch: Arch, gpu: tuple[int, int]) -> bool:
    if arch.ptx and not arch.suffix and gpu >= arch.capability:
        return True
    if arch.suffix == "a":
        return gpu == arch.capability
    return gpu[0] == arch.major and gpu[1] >= arch.minor


def devices(archs: Iterable[Arch]) -> frozenset[tuple[int, int]]:
    """The (major, minor) GPUs that code built for `archs` runs on."""
    archs = tuple(archs)
    return frozenset(gpu for gpu in _UNIVERSE if any(_covers(a, gpu) for a in archs))


def targets(arch_list: Iterable[Arch]) -> tuple[tuple[int, int], ...]:
    """One GPU per arch of the list, the one it names: what verify asks the upstream code about."""
    return tuple(dict.fromkeys(a.capability for a in arch_list))


def select(arch_list: Iterable[Arch], entries: Iterable[Entry] | None = None) -> tuple[Entry, ...]:
    """The entries no GPU of `arch_list` loads: the ones the runtime stage deletes."""
    arch_list = tuple(arch_list)
    return tuple(e for e in (packaged() if entries is None else entries) if not e.serves(arch_list))


def find_args(pattern: str) -> tuple[str, str]:
    """(where find starts, what -path matches), both relative to site-packages: find starts at
    the pattern's leading literal folders, so it does not walk all of site-packages."""
    parts = pattern.split("/")
    literal = []
    for part in parts:
        if _GLOB.search(part):
            break
        literal.append(part)
    return "/".join(literal), pattern


def template_values(
    arch_list: Iterable[Arch], entries: Iterable[Entry] | None = None
) -> list[dict]:
    """What the runtime stage needs, as plain values: [{name, finds: [[root, pattern], ...]}],
    paths relative to site-packages."""
    return [
        {"name": e.name, "finds": [list(find_args(p)) for p in e.paths]}
        for e in select(arch_list, entries)
    ]


def parse_lines(lines: Iterable[str]) -> dict[str, int]:
    """`vllm-forge-prune NAME BYTES` lines (build output, or the image's RECORD) -> {name: bytes}.
    Build output prefixes them (`#18 12.3 vllm-forge-prune ...`): found anywhere in a line."""
    found: dict[str, int] = {}
    for line in lines:
        start = line.find("vllm-forge-prune ")
        match = LINE.match(line[start:]) if start >= 0 else None
        if match:
            found[match["name"]] = int(match["bytes"])
    return found


def describe_pruned(pruned: dict[str, int]) -> str:
    """One line for the build summary: the total, then each entry's bytes, largest first."""
    total = sum(pruned.values())
    each = ", ".join(
        f"{n} {b / 1e6:.1f} MB" for n, b in sorted(pruned.items(), key=lambda i: -i[1])
    )
    return f"{total / 1e9:.2f} GB in {len(pruned)} entries ({each})"


# --- the table ---------------------------------------------------------------------------------


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or (key != "probe" and not value.strip()):
        raise ConfigError(f"{where}: `{key}` must be a non-empty string, found {value!r}")
    return value


def _strings(raw: dict, key: str, where: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of non-empty strings, found {value!r}")
    if not value and not empty_ok:
        raise ConfigError(f"{where}: `{key}` is empty")
    return tuple(value)


def _pattern(pattern: str, where: str) -> str:
    if not _PATTERN.match(pattern) or pattern.startswith("/") or ".." in pattern.split("/"):
        raise ConfigError(
            f"{where}: path {pattern!r} must be relative to site-packages, without `..`, and use "
            "only letters, digits, `_.-+/` and the globs `*?[]`"
        )
    if ".dist-info" in pattern or _GLOB.search(pattern.split("/")[0]):
        raise ConfigError(
            f"{where}: path {pattern!r} could match package metadata (*.dist-info): start with "
            "the package's folder, literally; `pip check` and vLLM's requirements must hold"
        )
    return pattern


def _entry(raw: object, index: int) -> Entry:
    where = f"{TABLE} entry {index + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table ([[entry]]), found {raw!r}")
    name = _text(raw, "name", where)
    where = f"{TABLE} entry {name!r}"
    if unknown := sorted(set(raw) - _KEYS):
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {sorted(_KEYS)}")
    if not _NAME.match(name):
        raise ConfigError(f"{where}: the name must be lower-case letters, digits, `.` and `-`")
    arch_text = " ".join(_strings(raw, "arches", where, empty_ok=True))
    arches = parse_arch_list(arch_text, what=f"{where} arches") if arch_text else ()
    probe = _text(raw, "probe", where)
    if arches and probe not in PROBES:
        raise ConfigError(
            f"{where}: probe {probe!r} is not one verify knows ({', '.join(PROBES)}): an entry "
            "that serves GPUs needs a probe that shows the upstream code skips it elsewhere"
        )
    if not arches and probe:
        raise ConfigError(f'{where}: arches = [] (no GPU loads it) takes probe = ""')
    return Entry(
        name=name,
        paths=tuple(_pattern(p, where) for p in _strings(raw, "paths", where)),
        arches=arches,
        probe=probe,
        imports=_strings(raw, "imports", where),
        reason=_text(raw, "reason", where),
        absent=_text(raw, "absent", where),
        evidence=_strings(raw, "evidence", where),
    )


def load_table(text: str) -> tuple[Entry, ...]:
    """The entries of a prune table's text; a ConfigError naming the entry and key otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{TABLE}: not valid TOML: {exc}") from None
    if set(data) - {"entry"}:
        raise ConfigError(f"{TABLE}: only [[entry]] tables belong here, found {sorted(data)}")
    entries = tuple(_entry(raw, i) for i, raw in enumerate(data.get("entry", [])))
    names = [e.name for e in entries]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{TABLE}: entry names must be unique, found {', '.join(dupes)} twice")
    return entries


@functools.cache
def packaged() -> tuple[Entry, ...]:
    """The table shipped in the package (package data, like the template)."""
    try:
        text = resources.files(__package__).joinpath(TABLE).read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{TABLE} is missing from the vllm_forge package: reinstall vllm-forge"
        ) from None
    return load_table(text)
