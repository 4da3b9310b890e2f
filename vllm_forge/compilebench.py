"""Measure real compiles: wall time and peak memory of each unit, and of the whole run.

`python3 -m vllm_forge.compilebench run COMMANDS.json --jobs N` runs a list of compile commands
(JSON: [{"source", "argv", "cwd", "module"?, "output"?}, ...]) N at a time, optionally each
through scripts/compile_admit.py with a memory budget, and writes a JSON report plus a table.

How memory is measured, per unit, two ways, both reported:
- `tree_peak_mib`: every POLL_S seconds the RSS of the unit's whole process tree (nvcc and what
  it runs: gcc, cudafe++, cicc, ptxas), summed from /proc/<pid>/statm. This is what the machine
  must hold at once for that unit; a spike shorter than the poll interval can be missed.
- `proc_peak_mib`: the unit's ru_maxrss from os.wait4, i.e. the largest single process of the
  tree, exact (the kernel's high-water mark) but never a sum of processes running together.
`peak_mib` = the larger of the two. nvcc runs its stages one after another (one nvcc thread),
so the two agree within a few per cent when the poll catches the peak; the whole run's peak
(`peak_total_mib`) is the polled sum over every running unit.

`vllm-cmake` configures vLLM's sdist the way the vllm-build stage does and writes its exact
compile commands (CMake's compile_commands.json) as that list; `cmake` converts such a file.
`run --sample stratified` takes a few units of each kind of compile_memory.toml, spread over the
kind; `extrapolate` turns reports into per-kind figures over the whole list (mean time x units)
and, with `--write`, refreshes the table's measured kinds. vllm_forge/measure/ holds the runs.

`ninja` turns build.ninja files (FlashInfer's cpp_ext writes one per module) into that command
list; `flashinfer-ninja` makes those files with FlashInfer's own code (run it under a Python that
can import FlashInfer; everything else here is standard library, so `run` works on a bare
machine with `PYTHONPATH=.`). Paths in a command list may hold `@{name}` placeholders that
`run --root name=DIR` fills in, so one list works where the trees sit elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import math
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .jobs import COMPILE_TABLE, UnitKind, kind_of, spread, unit_kinds

POLL_S = 0.2
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
ADMIT_SCRIPT = Path(__file__).parent / "scripts" / "compile_admit.py"
SOURCE_SUFFIXES = (".cu", ".cpp", ".cc", ".cxx", ".c")


# --- process-tree memory ----------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    """{ppid: [pid, ...]} for every process visible in /proc, read once."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        rest = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(rest[1]), []).append(int(entry.name))
    return children


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_bytes(pid: int, children: dict[int, list[int]] | None = None) -> int:
    """Resident memory of a process and all its descendants, summed."""
    children = _children_map() if children is None else children
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _rss_bytes(current)
        stack.extend(children.get(current, ()))
    return total


# --- the command list -------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    source: str
    argv: list[str]
    cwd: str = "."
    module: str = ""
    output: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> Command:
        return cls(
            source=data["source"],
            argv=list(data["argv"]),
            cwd=data.get("cwd", "."),
            module=data.get("module", ""),
            output=data.get("output", ""),
        )

    def substituted(self, roots: dict[str, str]) -> Command:
        def fill(text: str) -> str:
            for name, value in roots.items():
                text = text.replace("@{" + name + "}", value)
            return text

        return Command(
            source=fill(self.source),
            argv=[fill(a) for a in self.argv],
            cwd=fill(self.cwd),
            module=self.module,
            output=fill(self.output),
        )


def load_commands(path: Path) -> list[Command]:
    return [Command.from_dict(d) for d in json.loads(Path(path).read_text())]


def save_commands(commands: list[Command], path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps([asdict(c) for c in commands], indent=1) + "\n")


# --- ninja files ------------------------------------------------------------------------------

_VAR = re.compile(r"\$(\{[A-Za-z0-9_.-]+\}|[A-Za-z0-9_-]+|\$|:| |\n)")


def _ninja_lines(text: str) -> list[str]:
    """Logical lines: `$` + newline continues a line (with the next line's indent dropped)."""
    lines, current = [], ""
    for raw in text.splitlines():
        if current:
            raw = raw.lstrip()
        if raw.endswith("$") and not raw.endswith("$$"):
            current += raw[:-1]
            continue
        lines.append(current + raw)
        current = ""
    if current:
        lines.append(current)
    return lines


def _expand(value: str, scopes: list[dict[str, str]]) -> str:
    def one(match: re.Match) -> str:
        token = match.group(1)
        if token in ("$", ":", " "):
            return token
        name = token.strip("{}")
        for scope in scopes:
            if name in scope:
                return scope[name]
        return ""

    return _VAR.sub(one, value)


def parse_ninja(path: Path, module: str = "") -> list[Command]:
    """The compile commands of one ninja file: every `build` whose rule's command compiles.

    Handles what FlashInfer's (and CMake's) compile files use: top-level and rule variables,
    `$`-continued lines, `$in`/`$out`, build-level variables. Link steps are left out (a build
    whose inputs are objects, not sources).
    """
    path = Path(path)
    top: dict[str, str] = {}
    rules: dict[str, dict[str, str]] = {}
    commands: list[Command] = []
    lines = _ninja_lines(path.read_text())
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("rule "):
            rule: dict[str, str] = {}
            while i < len(lines) and lines[i].startswith((" ", "\t")):
                key, _, value = lines[i].strip().partition("=")
                rule[key.strip()] = value.strip()
                i += 1
            rules[line.split()[1]] = rule
        elif line.startswith("build "):
            local: dict[str, str] = {}
            while i < len(lines) and lines[i].startswith((" ", "\t")):
                key, _, value = lines[i].strip().partition("=")
                local[key.strip()] = _expand(value.strip(), [local, top])
                i += 1
            head, _, tail = line[len("build ") :].partition(": ")
            parts = tail.split()
            rule_name, inputs = parts[0], [p for p in parts[1:] if p not in ("|", "||")]
            inputs = [_expand(p, [top]) for p in inputs]
            sources = [p for p in inputs if p.endswith(SOURCE_SUFFIXES)]
            if rule_name not in rules or "command" not in rules[rule_name] or not sources:
                continue
            outs = [_expand(p, [top]) for p in head.split()]
            scope = {"in": " ".join(inputs), "out": " ".join(outs), **local}
            command = _expand(rules[rule_name]["command"], [scope, rules[rule_name], top])
            commands.append(
                Command(
                    source=sources[0],
                    argv=shlex.split(command),
                    cwd=str(path.parent),
                    module=module or path.parent.name,
                    output=outs[0],
                )
            )
        elif "=" in line and not line.startswith((" ", "\t")):
            key, _, value = line.partition("=")
            top[key.strip()] = _expand(value.strip(), [top])
    return commands


_CMAKE_TARGET = re.compile(r"CMakeFiles/([^/]+)\.dir/")


def parse_compile_commands(path: Path) -> list[Command]:
    """The compile commands CMake exported (CMAKE_EXPORT_COMPILE_COMMANDS=ON): one per unit, the
    exact command line ninja runs, less the launchers (ccache, the admission launcher), which a
    run adds itself. The module is the CMake target the object belongs to (_C, _vllm_fa2_C...)."""
    commands = []
    for entry in json.loads(Path(path).read_text()):
        argv = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
        output = entry.get("output", "")
        target = _CMAKE_TARGET.search(output)
        commands.append(
            Command(
                source=entry["file"],
                argv=list(argv),
                cwd=entry["directory"],
                module=target.group(1) if target else "",
                output=output,
            )
        )
    return commands


def rewrite(commands: list[Command], prefixes: list[tuple[str, str]]) -> list[Command]:
    """Replace path prefixes (longest first) in every field: local trees -> @{name} placeholders."""
    ordered = sorted(prefixes, key=lambda p: len(p[0]), reverse=True)

    def fix(text: str) -> str:
        for old, new in ordered:
            text = text.replace(old, new)
        return text

    return [
        Command(
            source=fix(c.source),
            argv=[fix(a) for a in c.argv],
            cwd=fix(c.cwd),
            module=c.module,
            output=fix(c.output),
        )
        for c in commands
    ]


# --- families and the sample ------------------------------------------------------------------

# FlashInfer's module name -> family: the name up to its first configuration part.
_FAMILY_CUT = re.compile(
    r"(_with_kv_cache|_dtype_|_s_(bf16|f32|i16)_|_head_dim|_(bf16|f16|e4m3|e5m2)(_|$)).*"
)


def module_family(module: str) -> str:
    return _FAMILY_CUT.sub("", module) or module


_KIND_TOKENS = re.compile(
    r"_(fp8|fp4|fp16|fp32|bf16|f16|uint4|uint8|e4m3|e5m2|half|_nv_bfloat16|majortrue|majorfalse)(?=_|$)"
)


def unit_kind(source: str) -> str:
    """The kind of a generated file within its module (e.g. paged_kernel_mask_1 -> paged_kernel)."""
    stem = Path(source).name.split(".")[0]
    stem = re.sub(r"_mask_\d+$", "", stem)
    stem = _KIND_TOKENS.sub("", stem)
    return re.sub(r"_+", "_", re.sub(r"(?<=[A-Za-z])\d+(?=_|$)|(?<=_)\d+(?=_|$)", "", stem))


def family(command: Command) -> str:
    return module_family(command.module) if command.module else Path(command.source).stem


def sample(commands: list[Command], rule: str = "first-module") -> list[Command]:
    """A representative subset, by a stated rule.

    `first-module`: for each module family, every distinct kind of unit (file stem, masks merged)
    of ONE module: the family's module whose name sorts last among those with the largest head
    dimension (FlashInfer's heaviest instantiation of a family is its largest head dim).
    `all`: everything.
    """
    if rule == "all":
        return list(commands)
    by_family: dict[str, list[Command]] = {}
    for c in commands:
        by_family.setdefault(family(c), []).append(c)
    chosen: list[Command] = []
    for fam in sorted(by_family):
        group = by_family[fam]

        def weight(module: str) -> tuple[int, str]:
            dims = [int(d) for d in re.findall(r"head_dim(?:_qk|_vo)?_(\d+)", module)]
            return (max(dims) if dims else 0, module)

        module = max({c.module for c in group}, key=weight)
        seen: set[str] = set()
        for c in group:
            if c.module != module or unit_kind(c.source) in seen:
                continue
            seen.add(unit_kind(c.source))
            chosen.append(c)
    return chosen


# --- the unit table's kinds: jobs.kind_of, the launcher's first-match rule ----------------------


def stratified(
    commands: list[Command],
    kinds: list[UnitKind],
    per_kind: int,
    only: dict[str, int] | None = None,
    phase: float = 0.5,
) -> list[Command]:
    """At most `per_kind` units of each kind of the table, spread over the kind: sorted by source,
    every k-th from `phase` into the first stride (k = ceil(units / per_kind); 0.5: its middle;
    another phase picks other units of the same kinds), so a kind's mean
    time and largest peak stand for its whole count. The result interleaves the kinds the way
    ninja meets them (each kind spread over the run), heavy ones not bunched at the start.
    `only`: {kind: units} instead, for the kinds named (0 leaves a kind out)."""
    by_kind: dict[str, list[Command]] = {}
    for c in commands:
        by_kind.setdefault(kind_of(c.source, kinds), []).append(c)
    picked = []
    for kind in sorted(by_kind):
        want = per_kind if only is None else only.get(kind, 0)
        if want <= 0:
            continue
        group = sorted(by_kind[kind], key=lambda c: c.source)
        stride = -(-len(group) // want)
        picked.append(group[min(stride - 1, int(stride * phase)) :: stride])
    return spread(picked)


# --- running ----------------------------------------------------------------------------------


@dataclass
class UnitResult:
    source: str
    module: str
    family: str
    exit: int
    wall_s: float
    cpu_s: float
    tree_peak_mib: float
    proc_peak_mib: float
    waited_s: float | None = None
    kind: str = ""
    finished: bool = True  # False: stopped at the run's deadline (its figures are lower bounds)

    @property
    def peak_mib(self) -> float:
        return max(self.tree_peak_mib, self.proc_peak_mib)


@dataclass
class RunReport:
    jobs: int
    budget_mib: int
    wall_s: float
    peak_total_mib: float
    machine: dict
    units: list[UnitResult] = field(default_factory=list)
    not_started: int = 0
    launcher: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        for unit, raw in zip(self.units, data["units"], strict=True):
            raw["peak_mib"] = round(unit.peak_mib, 1)
        return data


def machine_info(first_argv: list[str] | None = None) -> dict:
    info = {"cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        meminfo = Path("/proc/meminfo").read_text()
        info["mem_total_gib"] = round(int(meminfo.split()[1]) / 1024**2, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if first_argv and Path(first_argv[0]).name == "nvcc":
        try:
            out = subprocess.run(
                [first_argv[0], "--version"], capture_output=True, text=True, timeout=30
            ).stdout
            releases = [line for line in out.splitlines() if "release" in line]
            info["nvcc"] = releases[0].strip() if releases else out.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


class _Poller(threading.Thread):
    """Samples the RSS of each running unit's tree; keeps per-unit and whole-run peaks."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.running: dict[int, int] = {}  # pid -> unit index
        self.peaks: dict[int, int] = {}
        self.peak_total = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(POLL_S):
            self.sample()

    def sample(self) -> None:
        with self.lock:
            running = dict(self.running)
        if not running:
            return
        children = _children_map()
        total = 0
        for pid, index in running.items():
            rss = tree_rss_bytes(pid, children)
            total += rss
            with self.lock:
                if index in self.peaks:
                    self.peaks[index] = max(self.peaks[index], rss)
        self.peak_total = max(self.peak_total, total)


def run_commands(
    commands: list[Command],
    jobs: int,
    logs: Path,
    budget_mib: int = 0,
    admit_table: Path | None = None,
    admit_dir: Path | None = None,
    progress=print,
    launcher: list[str] | None = None,
    stop_after_s: float = 0,
    kill_after_s: float = 0,
    kinds: list[UnitKind] | None = None,
    on_result=None,
) -> RunReport:
    """Run the commands `jobs` at a time and measure them (see the module docstring).

    `launcher` goes between the admission launcher and the compiler (e.g. ["ccache"]), as in the
    image's build. `stop_after_s`: no unit starts after this; `kill_after_s`: units still running
    then are stopped and reported unfinished (their time and peak so far: lower bounds), so a run
    with a hard time limit still returns what it measured. `on_result(UnitResult)` sees each
    unit as it ends."""
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    prefix: list[str] = []
    if budget_mib:
        prefix = [sys.executable, str(ADMIT_SCRIPT)]
        admit_dir = admit_dir or logs / "admit"
        admit_dir.mkdir(parents=True, exist_ok=True)
        (admit_dir / "units.jsonl").unlink(missing_ok=True)
        env["FORGE_MEM_BUDGET_MIB"] = str(budget_mib)
        env["FORGE_ADMIT_DIR"] = str(admit_dir)
        # the project's table unless told otherwise (compile_admit.py looks beside itself,
        # which is where the build context puts it, not where it lives in the package)
        env["FORGE_ADMIT_TABLE"] = str(admit_table or COMPILE_TABLE)
    launcher = list(launcher or [])
    kinds = unit_kinds(admit_table or COMPILE_TABLE) if kinds is None else kinds
    poller = _Poller()
    poller.start()
    results: list[UnitResult | None] = [None] * len(commands)
    running: dict[int, tuple[int, subprocess.Popen, float, object]] = {}
    pending = list(range(len(commands)))
    start = time.monotonic()
    try:
        while pending or running:
            elapsed = time.monotonic() - start
            if stop_after_s and elapsed > stop_after_s and pending:
                progress(f"compilebench: {len(pending)} units not started (past {stop_after_s} s)")
                pending.clear()
                if not running:
                    break
            while pending and len(running) < jobs:
                index = pending.pop(0)
                command = commands[index]
                if command.output:  # nvcc writes its object and depfile but makes no folders
                    Path(command.cwd, command.output).parent.mkdir(parents=True, exist_ok=True)
                log = open(logs / f"{index:04d}-{Path(command.source).name}.log", "wb")  # noqa: SIM115 (closed when the unit ends)
                log.write((shlex.join(command.argv) + "\n\n").encode())
                log.flush()
                proc = subprocess.Popen(
                    prefix + launcher + command.argv,
                    cwd=command.cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
                with poller.lock:
                    poller.running[proc.pid] = index
                    poller.peaks[index] = 0
                running[proc.pid] = (index, proc, time.monotonic(), log)
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            finished = True
            if pid == 0:
                if kill_after_s and time.monotonic() - start > kill_after_s:
                    pid = next(iter(running))  # stop them one by one, each reported unfinished
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    _pid, status, usage = os.wait4(pid, 0)
                    finished = False
                    pending.clear()
                else:
                    time.sleep(POLL_S / 2)
                    continue
            if pid not in running:
                continue
            index, proc, began, log = running.pop(pid)
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            wall = time.monotonic() - began
            with poller.lock:
                poller.running.pop(pid, None)
                tree_peak = poller.peaks.pop(index, 0)
            log.close()
            command = commands[index]
            results[index] = UnitResult(
                source=command.source,
                module=command.module,
                family=family(command),
                exit=proc.returncode,
                wall_s=round(wall, 2),
                cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
                tree_peak_mib=round(tree_peak / 2**20, 1),
                proc_peak_mib=round(usage.ru_maxrss / 1024, 1),
                kind=kind_of(command.source, kinds),
                finished=finished,
            )
            done = sum(r is not None for r in results)
            unit = results[index]
            progress(
                f"[{done}/{len(commands)}] {unit.exit if finished else 'cut':>3} "
                f"{unit.wall_s:7.1f} s {unit.peak_mib / 1024:5.2f} GiB  "
                f"{Path(command.source).name} ({unit.kind})"
            )
            if on_result:
                on_result(unit)
    except BaseException:
        for _index, proc, _began, _log in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for _index, proc, _began, _log in running.values():
            proc.wait()
        raise
    finally:
        poller.stop.set()
        poller.join()
    wall = time.monotonic() - start
    if budget_mib and admit_dir:
        waited = {}
        path = admit_dir / "units.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                waited[record["source"]] = record["waited"]
        for result in results:
            if result is not None:
                result.waited_s = waited.get(result.source)
    return RunReport(
        jobs=jobs,
        budget_mib=budget_mib,
        wall_s=round(wall, 1),
        peak_total_mib=round(poller.peak_total / 2**20, 1),
        machine=machine_info(commands[0].argv if commands else None),
        units=[r for r in results if r is not None],
        not_started=sum(r is None for r in results),
        launcher=launcher,
    )


# --- tables -----------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def family_table(units: list[dict]) -> list[str]:
    """Markdown rows: per family, units, peak GiB and seconds as min / median / max."""
    by_family: dict[str, list[dict]] = {}
    for unit in units:
        by_family.setdefault(unit["family"], []).append(unit)
    rows = [
        "| family | units | peak RSS GiB min / median / max | seconds min / median / max |",
        "| --- | --- | --- | --- |",
    ]
    for fam in sorted(by_family, key=lambda f: -max(u["peak_mib"] for u in by_family[f])):
        group = by_family[fam]
        peaks = [u["peak_mib"] / 1024 for u in group]
        secs = [u["wall_s"] for u in group]
        rows.append(f"| {fam} | {len(group)} | {_spread(peaks)} | {_spread(secs)} |")
    return rows


def unit_table(units: list[dict]) -> list[str]:
    rows = ["| unit | family | exit | wall s | cpu s | peak GiB (tree / process) |",
            "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for u in sorted(units, key=lambda u: -u["peak_mib"]):
        rows.append(
            f"| {Path(u['source']).name} | {u['family']} | {u['exit']} | {u['wall_s']:.1f} | "
            f"{u['cpu_s']:.1f} | {u['tree_peak_mib'] / 1024:.2f} / {u['proc_peak_mib'] / 1024:.2f} |"
        )
    return rows


def merged(units: list[dict]) -> list[dict]:
    """One entry per source over several runs: the largest peak, the mean time of the runs that
    finished (a unit measured twice is one unit of the sample, not two)."""
    by_source: dict[str, list[dict]] = {}
    for u in units:
        by_source.setdefault(u["source"], []).append(u)
    out = []
    for group in by_source.values():
        done = [u for u in group if _finished(u)]
        pick = dict(done[0] if done else max(group, key=lambda u: u["wall_s"]))
        pick["peak_mib"] = max(u["peak_mib"] for u in group)
        if done:
            pick["wall_s"] = round(statistics.fmean(u["wall_s"] for u in done), 1)
        out.append(pick)
    return out


def _finished(unit: dict) -> bool:
    return unit.get("finished", True) and unit["exit"] == 0


def _by_kind(
    commands: list[Command], units: list[dict], kinds: list[UnitKind]
) -> list[tuple[str, int, list[dict]]]:
    """(kind, its units in the whole list, its measured units) per kind of the list, most units
    first; `units` already `merged`. Kinds are those of the table now, not as recorded."""
    counts: dict[str, int] = {}
    for c in commands:
        kind = kind_of(c.source, kinds)
        counts[kind] = counts.get(kind, 0) + 1
    groups: dict[str, list[dict]] = {}
    for u in units:
        groups.setdefault(kind_of(u["source"], kinds), []).append(u)
    return [(k, counts[k], groups.get(k, [])) for k in sorted(counts, key=lambda k: -counts[k])]


def kind_table(commands: list[Command], units: list[dict], kinds: list[UnitKind]) -> list[str]:
    """Per kind of the table: its units in the whole list, how many were measured, the largest
    peak and the mean time of those that finished, and the kind's compile work extrapolated as
    mean x units (CPU-seconds of one job each: nvcc runs one thread). Unfinished units count
    as lower bounds: "> N s"."""
    rows = [
        "| kind | units | measured | peak GiB max | seconds mean (max) | work, job-hours |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    total = 0.0
    units = merged(units)
    for kind, count, group in _by_kind(commands, units, kinds):
        done = [u["wall_s"] for u in group if _finished(u)]
        cut = [u["wall_s"] for u in group if not u.get("finished", True)]
        if not done:
            rows.append(
                f"| {kind} | {count} | 0 | - | "
                + (f"> {max(cut):.0f} |" if cut else "- |")
                + " - |"
            )
            continue
        mean = statistics.fmean(done)
        peak = max(u["peak_mib"] for u in group) / 1024
        work = mean * count / 3600
        total += work
        more = f", {len(cut)} cut at > {max(cut):.0f} s" if cut else ""
        rows.append(
            f"| {kind} | {count} | {len(done)}{more} | {peak:.2f} | "
            f"{mean:.0f} ({max(done):.0f}) | {work:.2f} |"
        )
    rows.append(f"| all | {len(commands)} | {len(units)} | | | {total:.2f} |")
    return rows


def kind_figures(
    commands: list[Command], units: list[dict], kinds: list[UnitKind]
) -> dict[str, dict]:
    """Per kind with at least one unit that finished: {units, measured, peak_gib, mean_s,
    min_s, max_s}. A unit cut at a deadline counts for the peak (a lower bound of it) only."""
    figures = {}
    for kind, count, group in _by_kind(commands, merged(units), kinds):
        done = [u["wall_s"] for u in group if _finished(u)]
        if done:
            figures[kind] = {
                "units": count,
                "measured": len(done),
                "peak_gib": max(u["peak_mib"] for u in group) / 1024,
                "mean_s": statistics.fmean(done),
                "min_s": min(done),
                "max_s": max(done),
            }
    return figures


def refresh_table(text: str, figures: dict[str, dict], where: str) -> str:
    """The unit table with each measured kind's gib (peak + 10 %, up to the next 0.5), seconds
    (the mean), count (the whole list's) and source rewritten in place; comments, order and
    the kinds not measured stay as they are. A kind's earlier measured gib that is higher
    stays (a smaller sample must not lower what another run saw), and its source says so."""
    blocks = re.split(r"(?m)^(?=\[\[unit\]\])", text)
    out = []
    for block in blocks:
        name = re.search(r'(?m)^name = "([^"]+)"', block)
        fig = figures.get(name.group(1)) if name and block.startswith("[[unit]]") else None
        if fig:
            gib = math.ceil(fig["peak_gib"] * 1.1 * 2) / 2
            source = (
                f"measured: {fig['measured']} of {fig['units']} ({where}): peak "
                f"{fig['peak_gib']:.1f} GiB, {fig['min_s']:.0f}-{fig['max_s']:.0f} s"
            )
            old_gib = re.search(r"(?m)^gib = ([0-9.]+)$", block)
            old_source = re.search(r'(?m)^source = "(measured:[^"]*)"$', block)
            if old_gib and old_source and float(old_gib.group(1)) > gib:
                gib = float(old_gib.group(1))
                source += f"; gib kept from before ({old_source.group(1)})"
            for key, value in (
                ("gib", f"{gib:.1f}"), ("seconds", f"{fig['mean_s']:.0f}"),
                ("count", str(fig["units"])), ("source", json.dumps(source)),
            ):  # fmt: skip
                block = re.sub(rf"(?m)^{key} = .*$", lambda _m, k=key, v=value: f"{k} = {v}", block)
        out.append(block)
    return "".join(out)


# --- vLLM's own configure ---------------------------------------------------------------------

# The template's CMAKE_ARGS, less the launchers (a run adds ccache and the admission itself).
FORGE_CMAKE_ARGS = ("-DFETCHCONTENT_FULLY_DISCONNECTED=ON", "-DCMAKE_POLICY_DEFAULT_CMP0170=NEW")


def vllm_cmake_argv(
    src: Path, build: Path, *, python: str, nvcc: str, jobs: int, nvcc_threads: int = 1
) -> list[str]:
    """The configure the vllm-build stage runs: what vLLM's setup.py (cmake_build_ext.configure)
    passes with ninja found and CMAKE_BUILD_TYPE=Release, then the template's CMAKE_ARGS, and the
    compile commands exported. VLLM_PYTHON_PATH is left out: it changes no compile line."""
    return [
        "cmake", str(src), "-G", "Ninja",
        "-DCMAKE_BUILD_TYPE=Release",
        "-DVLLM_TARGET_DEVICE=cuda",
        f"-DVLLM_PYTHON_EXECUTABLE={python}",
        f"-DFETCHCONTENT_BASE_DIR={build / 'deps'}",
        f"-DNVCC_THREADS={nvcc_threads}",
        "-DCMAKE_JOB_POOL_COMPILE:STRING=compile",
        f"-DCMAKE_JOB_POOLS:STRING=compile={jobs}",
        f"-DCMAKE_CUDA_COMPILER={nvcc}",
        *FORGE_CMAKE_ARGS,
        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
    ]  # fmt: skip


def configure_vllm(
    src: Path, build: Path, *, arch_list: str, sources: dict[str, str], nvcc: str, jobs: int
) -> Path:
    """Configure vLLM's source (an unpacked sdist) as the image does, with its git dependencies
    from `sources` ({VLLM_CUTLASS_SRC_DIR: dir, ...}, the source pins' variables); needs a
    Python with a CUDA torch and the build lock's CMake. Returns compile_commands.json."""
    build.mkdir(parents=True, exist_ok=True)
    cuda_bin = Path(nvcc).resolve().parent
    env = {
        **os.environ,
        **sources,
        "TORCH_CUDA_ARCH_LIST": arch_list,
        "VLLM_TARGET_DEVICE": "cuda",
        "CUDA_HOME": str(cuda_bin.parent),
        # torch's CMake finds the toolkit's libraries by the nvcc on PATH, as in the image
        "PATH": f"{cuda_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    argv = vllm_cmake_argv(src, build, python=sys.executable, nvcc=nvcc, jobs=jobs)
    log = build / "configure.log"
    with log.open("wb") as handle:
        code = subprocess.run(argv, cwd=build, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if code.returncode != 0:
        raise SystemExit(
            f"compilebench: vLLM's configure failed (exit {code.returncode}); see {log}"
        )
    return build / "compile_commands.json"


# --- FlashInfer's own ninja files -------------------------------------------------------------


def write_flashinfer_ninja(src: Path, build_dir: Path, cutlass: Path | None = None) -> list[Path]:
    """Write build.ninja for every module of FlashInfer's default AOT set, with its own code.

    Run under a Python that imports FlashInfer from `src` (torch, apache-tvm-ffi installed), with
    FLASHINFER_CUDA_ARCH_LIST and CUDA_HOME set as the real build sets them: the module set and
    the flags depend on nvcc's version (`CUDA_HOME/bin/nvcc --version`). Nothing is compiled.
    """
    sys.path.insert(0, str(src))
    from flashinfer import aot  # noqa: PLC0415  (FlashInfer's environment only)
    from flashinfer.jit import env as jit_env  # noqa: PLC0415

    cutlass = cutlass or src / "3rdparty" / "cutlass"
    jit_env.FLASHINFER_CSRC_DIR = src / "csrc"
    jit_env.FLASHINFER_INCLUDE_DIR = src / "include"
    jit_env.CUTLASS_INCLUDE_DIRS = [cutlass / "include", cutlass / "tools" / "util" / "include"]
    jit_env.SPDLOG_INCLUDE_DIR = src / "3rdparty" / "spdlog" / "include"
    jit_env.FLASHINFER_WORKSPACE_DIR = build_dir
    jit_env.FLASHINFER_JIT_DIR = build_dir / "cached_ops"
    jit_env.FLASHINFER_GEN_SRC_DIR = build_dir / "generated"
    jit_env.FLASHINFER_JIT_DIR.mkdir(parents=True, exist_ok=True)
    jit_env.FLASHINFER_GEN_SRC_DIR.mkdir(parents=True, exist_ok=True)
    cfg = aot.get_default_config()
    caps = aot.detect_sm_capabilities()
    specs = aot.gen_all_modules(
        cfg["f16_dtype"], cfg["f8_dtype"], cfg["fa2_head_dim"], cfg["fa3_head_dim"],
        cfg["use_sliding_window"], cfg["use_logits_soft_cap"], caps, cfg["add_comm"],
        cfg["add_gemma"], cfg["add_oai_oss"], cfg["add_moe"], cfg["add_act"], cfg["add_misc"],
        cfg["add_xqa"],
    )  # fmt: skip
    paths = []
    for spec in specs:
        spec.write_ninja()
        paths.append(spec.ninja_path)
    return paths


# --- command line -----------------------------------------------------------------------------


def _pairs(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep:
            raise SystemExit(f"compilebench: expected NAME=VALUE, got {value!r}")
        pairs.append((key, rest))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compilebench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="run a command list and measure each unit")
    p.add_argument("commands", type=Path)
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1)
    p.add_argument("--root", action="append", default=[], help="NAME=DIR fills @{NAME}")
    p.add_argument("--budget-gib", type=float, default=0, help="admit via compile_admit.py")
    p.add_argument("--admit-table", type=Path)
    p.add_argument("--only", action="append", default=[], help="fnmatch on the source path")
    p.add_argument("--sample", default="all", choices=["all", "first-module", "stratified"])
    p.add_argument(
        "--per-kind", default="4", help="stratified: units per table kind, or KIND=N,..."
    )
    p.add_argument("--phase", type=float, default=0.5, help="stratified: where in each stride")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--launcher", default="", help="between admission and compiler, e.g. ccache")
    p.add_argument("--stop-after", type=float, default=0, help="start no unit after S seconds")
    p.add_argument("--kill-after", type=float, default=0, help="stop running units at S seconds")
    p.add_argument("--out", type=Path, default=Path("build/compilebench"))
    p.add_argument("--name", default="run")

    p = sub.add_parser("cmake", help="CMake's compile_commands.json -> command list JSON")
    p.add_argument("compile_commands", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prefix", action="append", default=[], help="OLD=NEW path rewrite")

    p = sub.add_parser("vllm-cmake", help="configure vLLM as the image does -> command list")
    p.add_argument("src", type=Path, help="the unpacked vLLM sdist")
    p.add_argument("--build", type=Path, required=True)
    p.add_argument("--arch-list", default="12.0", help="TORCH_CUDA_ARCH_LIST")
    p.add_argument(
        "--source", action="append", default=[], help="ENV=DIR, e.g. VLLM_CUTLASS_SRC_DIR=..."
    )
    p.add_argument(
        "--nvcc", default=str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin/nvcc")
    )
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prefix", action="append", default=[], help="OLD=NEW path rewrite")

    p = sub.add_parser("extrapolate", help="per table kind: measured figures and whole-stage cost")
    p.add_argument("commands", type=Path, help="the stage's whole command list")
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("--table", type=Path, default=COMPILE_TABLE)
    p.add_argument(
        "--write", metavar="WHERE", help="refresh the table's measured kinds, WHERE: the machine"
    )

    p = sub.add_parser("ninja", help="build.ninja files -> command list JSON")
    p.add_argument("ninja", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prefix", action="append", default=[], help="OLD=NEW path rewrite")

    p = sub.add_parser("flashinfer-ninja", help="write FlashInfer's AOT ninja files (its env)")
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--build-dir", type=Path, required=True)
    p.add_argument("--cutlass", type=Path)

    p = sub.add_parser("table", help="print a report's tables again")
    p.add_argument("reports", nargs="+", type=Path)

    args = parser.parse_args(argv)
    if args.cmd == "flashinfer-ninja":
        paths = write_flashinfer_ninja(args.src.resolve(), args.build_dir.resolve(), args.cutlass)
        print(f"{len(paths)} ninja files under {args.build_dir}")
        return 0
    if args.cmd == "ninja":
        commands = [c for path in args.ninja for c in parse_ninja(path)]
        commands = rewrite(commands, _pairs(args.prefix))
        save_commands(commands, args.out)
        print(f"{len(commands)} compile commands from {len(args.ninja)} ninja files -> {args.out}")
        return 0
    if args.cmd == "cmake":
        commands = rewrite(parse_compile_commands(args.compile_commands), _pairs(args.prefix))
        save_commands(commands, args.out)
        print(f"{len(commands)} compile commands from {args.compile_commands} -> {args.out}")
        return 0
    if args.cmd == "vllm-cmake":
        exported = configure_vllm(
            args.src.resolve(), args.build.resolve(), arch_list=args.arch_list,
            sources=dict(_pairs(args.source)), nvcc=args.nvcc, jobs=args.jobs,
        )  # fmt: skip
        commands = rewrite(parse_compile_commands(exported), _pairs(args.prefix))
        save_commands(commands, args.out)
        print(f"{len(commands)} compile commands from vLLM's configure -> {args.out}")
        return 0
    if args.cmd == "extrapolate":
        kinds = unit_kinds(args.table)
        units = [u for path in args.reports for u in json.loads(path.read_text())["units"]]
        commands = load_commands(args.commands)
        print("\n".join(kind_table(commands, units, kinds)))
        if args.write:
            figures = kind_figures(commands, units, kinds)
            text = refresh_table(args.table.read_text(), figures, args.write)
            tmp = args.table.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(args.table)
            print(f"{args.table}: {len(figures)} kinds refreshed: {', '.join(sorted(figures))}")
        return 0
    if args.cmd == "table":
        for path in args.reports:
            data = json.loads(path.read_text())
            print(f"## {path}: jobs {data['jobs']}, wall {data['wall_s']} s, "
                  f"peak total {data['peak_total_mib'] / 1024:.2f} GiB")  # fmt: skip
            print("\n".join(family_table(data["units"])))
            print("\n".join(unit_table(data["units"])))
        return 0

    commands = [c.substituted(dict(_pairs(args.root))) for c in load_commands(args.commands)]
    kinds = unit_kinds(args.admit_table or COMPILE_TABLE)
    if args.sample == "stratified":
        if "=" in args.per_kind:
            wanted = {k: int(v) for k, v in _pairs(args.per_kind.split(","))}
            commands = stratified(commands, kinds, 0, wanted, args.phase)
        else:
            commands = stratified(commands, kinds, int(args.per_kind), phase=args.phase)
    else:
        commands = sample(commands, args.sample)
    if args.only:
        commands = [c for c in commands if any(fnmatch.fnmatch(c.source, o) for o in args.only)]
    if args.limit:
        commands = commands[: args.limit]
    if not commands:
        print("compilebench: no commands selected", file=sys.stderr)
        return 2
    out = args.out / args.name
    # A SIGTERM becomes SystemExit, so run_commands ends every unit's process group on its way out.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    print(f"compilebench: {len(commands)} units, {args.jobs} jobs, budget {args.budget_gib} GiB")
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "units.jsonl"  # one line per unit as it ends: what a killed run leaves
    partial.unlink(missing_ok=True)

    def keep(unit: UnitResult) -> None:
        with partial.open("a") as handle:
            handle.write(json.dumps({**asdict(unit), "peak_mib": round(unit.peak_mib, 1)}) + "\n")

    report = run_commands(
        commands,
        jobs=args.jobs,
        logs=out / "logs",
        budget_mib=round(args.budget_gib * 1024),
        admit_table=args.admit_table,
        progress=lambda line: print(line, flush=True),
        launcher=shlex.split(args.launcher),
        stop_after_s=args.stop_after,
        kill_after_s=args.kill_after,
        kinds=kinds,
        on_result=keep,
    )
    data = report.to_dict()
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwall {report.wall_s} s, peak total {report.peak_total_mib / 1024:.2f} GiB, "
          f"{report.machine}")  # fmt: skip
    print("\n".join(family_table(data["units"])))
    print("\n".join(unit_table(data["units"])))
    failed = [u for u in report.units if u.finished and u.exit != 0]
    if failed:
        print(f"compilebench: {len(failed)} of {len(report.units)} units failed; see {out}/logs")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
