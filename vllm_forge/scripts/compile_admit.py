#!/usr/bin/env python3
"""compile_admit.py COMMAND...: run one compile once its expected peak memory fits.

A compiler launcher, in front of ccache and nvcc (CMake's CMAKE_CUDA_COMPILER_LAUNCHER, FlashInfer's
nvcc wrapper). Each compile's expected peak comes from the unit table (compile_memory.toml: the
first rule whose pattern matches the source file); compiles run together only while the sum of
their expected peaks stays within FORGE_MEM_BUDGET_MIB, so ninja can run a job per core and the
light units fill the cores while the heavy ones never pile up beyond memory. A compile expected
to need more than the whole budget runs alone. Every ninja job is a separate process: they share a
ledger (a JSON file under an flock in FORGE_ADMIT_DIR); a compile whose process died is dropped.

After each compile, one JSON line goes to FORGE_ADMIT_DIR/units.jsonl: the source, the expected
peak, the measured one (the largest child's max RSS), seconds compiling and seconds waiting.
`compile_admit.py --summary` prints what those lines add up to, one `vllm-forge-compile` line
each (the build summary shows them).

Environment: FORGE_MEM_BUDGET_MIB (unset or 0: no admission, every compile runs at once),
FORGE_ADMIT_TABLE (default: compile_memory.toml beside this script), FORGE_ADMIT_DIR (default
/tmp/forge-admit). Standard library only: it runs in the image, under its Python.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import resource
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

SOURCE_SUFFIXES = (".cu", ".cpp", ".cc", ".cxx", ".c")
POLL_S = (0.2, 2.0)  # first and longest wait between two looks at the ledger


def table_path() -> Path:
    return Path(
        os.environ.get("FORGE_ADMIT_TABLE") or Path(__file__).with_name("compile_memory.toml")
    )


def state_dir() -> Path:
    return Path(os.environ.get("FORGE_ADMIT_DIR") or "/tmp/forge-admit")


def source_of(argv: list[str]) -> str | None:
    """The file a compile command compiles: its first argument that names a source file."""
    for arg in argv[1:]:
        if arg.endswith(SOURCE_SUFFIXES) and not arg.startswith("-"):
            return arg
    return None


def expected_mib(source: str, table: dict) -> tuple[int, str]:
    """(expected peak in MiB, the rule's name) for a source path."""
    for rule in table.get("unit", []):
        if fnmatch.fnmatch(source, rule["pattern"]):
            return round(rule["gib"] * 1024), rule["name"]
    return round(table["default"]["gib"] * 1024), "default"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A compile that has waited this long goes first: nothing that came after it may pass it then
# (before, lighter ones may, and fill the cores while it waits for memory).
STARVING_S = 30.0


class Ledger:
    """The compiles running, {pid: expected MiB}, and those waiting, {pid: [since, MiB]}, in a
    JSON file under an exclusive flock; entries of processes that died are dropped."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "ledger.json"
        self.lock = directory / "ledger.lock"

    def update(self, change) -> bool:
        """Apply change(running, waiting) -> bool under the lock; write both back; return it."""
        with open(self.lock, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                state = json.loads(self.path.read_text()) if self.path.exists() else {}
            except ValueError:
                state = {}
            running = {p: m for p, m in state.get("running", {}).items() if _alive(int(p))}
            waiting = {p: w for p, w in state.get("waiting", {}).items() if _alive(int(p))}
            result = change(running, waiting)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"running": running, "waiting": waiting}))
            tmp.replace(self.path)
            return result


def admit(ledger: Ledger, need: int, budget: int) -> tuple[float, int]:
    """Wait until `need` MiB fit beside what runs, and no compile starving for longer waits
    ahead; enter the ledger. Returns (seconds waited, MiB in use when it entered)."""
    me = str(os.getpid())
    start = time.monotonic()
    since = time.time()  # wall clock: comparable between processes
    pause = POLL_S[0]
    seen = [0]

    def enter(running: dict, waiting: dict) -> bool:
        running.pop(me, None)  # a dead compile's entry under a reused PID is not ours to count
        waiting.setdefault(me, [since, need])
        used = sum(running.values())
        seen[0] = used
        now = time.time()
        starving = [p for p, (t, _) in waiting.items() if now - t > STARVING_S and t < since]
        if starving:
            return False
        if not running or used + need <= budget:
            del waiting[me]
            running[me] = need
            return True
        return False

    try:
        while not ledger.update(enter):
            time.sleep(pause)
            pause = min(pause * 1.5, POLL_S[1])
    except BaseException:
        ledger.update(lambda running, waiting: bool(waiting.pop(me, None)))
        raise
    return time.monotonic() - start, seen[0]


def run(argv: list[str]) -> int:
    budget = int(os.environ.get("FORGE_MEM_BUDGET_MIB") or 0)
    source = source_of(argv)
    if budget <= 0 or source is None:  # no admission asked, or not a compile (a version probe)
        os.execvp(argv[0], argv)  # this process becomes the compiler: signals, exit code and all
    table = tomllib.loads(table_path().read_text())
    need, rule = expected_mib(source, table)
    ledger = Ledger(state_dir())
    waited, in_use = admit(ledger, need, budget)
    if waited >= 1:
        print(
            f"compile-admit: {Path(source).name} ({rule}, {need / 1024:.1f} GiB) waited "
            f"{waited:.0f} s ({in_use / 1024:.1f} of {budget / 1024:.1f} GiB in use)",
            file=sys.stderr,
        )
    child = subprocess.Popen(argv)
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    start = time.monotonic()
    try:
        code = child.wait()
    finally:
        ledger.update(lambda running, _waiting: bool(running.pop(str(os.getpid()), None)))
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    record = {
        "source": source,
        "rule": rule,
        "expected_mib": need,
        "peak_mib": peak_mib,
        "seconds": round(time.monotonic() - start, 1),
        "waited": round(waited, 1),
        "exit": code,
    }
    with open(state_dir() / "units.jsonl", "a") as out:
        out.write(json.dumps(record) + "\n")
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


def summary(directory: Path) -> list[str]:
    """`vllm-forge-compile` lines: units, time, the heaviest unit, and units over their estimate."""
    path = directory / "units.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    if not records:
        return ["vllm-forge-compile units 0"]
    heaviest = max(records, key=lambda r: r["peak_mib"])
    over = [r for r in records if r["peak_mib"] > r["expected_mib"]]
    lines = [
        f"vllm-forge-compile units {len(records)}",
        f"vllm-forge-compile seconds {sum(r['seconds'] for r in records):.0f}",
        f"vllm-forge-compile waited {sum(r['waited'] for r in records):.0f}",
        f"vllm-forge-compile heaviest {heaviest['peak_mib']} {Path(heaviest['source']).name}",
        f"vllm-forge-compile over-count {len(over)}",
    ]
    for r in sorted(over, key=lambda r: r["peak_mib"] - r["expected_mib"], reverse=True)[:10]:
        lines.append(
            f"vllm-forge-compile over-estimate {r['peak_mib']} {r['expected_mib']} {r['rule']} "
            f"{Path(r['source']).name}"
        )
    return lines


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--summary"]:
        print("\n".join(summary(state_dir())))
        return 0
    if len(argv) < 2:
        print("usage: compile_admit.py COMMAND... | --summary", file=sys.stderr)
        return 2
    return run(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
