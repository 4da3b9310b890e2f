"""Build steps as data, a dumb run loop that logs every step, and the end-of-build summary."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import sources
from .base import ensure_bases
from .buildsecrets import build_secrets
from .clean import remove_dead_runs_secrets
from .engines import BuildRequest, Engine
from .errors import BuildError, ForgeError, Stopped, signal_name
from .jobs import JobPlan
from .manifest import build_manifest, pruned_by_build
from .pins import Pins
from .project import Project
from .prune import describe_pruned
from .redact import redact, remember_file, write_text
from .render import source_pins_for, write_context

COMPILE_LINE = re.compile(r"vllm-forge-compile (?P<what>\S+) (?P<key>[\w-]+) (?P<rest>.*)$")
CCACHE_LINE = re.compile(r"vllm-forge-ccache (?P<what>\S+) (?P<key>\w+)\s+(?P<value>\d+)")


def default_tag(profile: str, target: str) -> str:
    return (
        f"localhost/vllm-forge:{profile}"
        if target == "runtime"
        else f"localhost/vllm-forge:{profile}-{target}"
    )


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


@dataclass(frozen=True, kw_only=True)
class CcacheStats:
    hits: int
    misses: int
    files: int
    size_kib: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    def describe(self) -> str:
        rate = "n/a" if self.hit_rate is None else f"{self.hit_rate:.0%}"
        return (
            f"{self.hits} hits, {self.misses} misses (hit rate {rate}), "
            f"{self.files} files, {self.size_kib / 1024:.1f} MiB"
        )


def parse_ccache(lines: list[str]) -> dict[str, CcacheStats]:
    """The `vllm-forge-ccache <what> <key> <value>` lines each compile step prints."""
    raw: dict[str, dict[str, int]] = {}
    for line in lines:
        match = CCACHE_LINE.search(line)
        if match:
            raw.setdefault(match["what"], {})[match["key"]] = int(match["value"])
    return {
        what: CcacheStats(
            hits=v.get("direct_cache_hit", 0) + v.get("preprocessed_cache_hit", 0),
            misses=v.get("cache_miss", 0),
            files=v.get("files_in_cache", 0),
            size_kib=v.get("cache_size_kibibyte", 0),
        )
        for what, v in raw.items()
    }


def parse_compiles(lines: list[str]) -> dict[str, str]:
    """{stage: one line} from the `vllm-forge-compile <stage> <key> ...` lines the compile steps
    print (scripts/compile_admit.py --summary): units, waiting, the heaviest unit, and the units
    that needed more than compile_memory.toml expects (the table to correct)."""
    found: dict[str, dict[str, list[str]]] = {}
    for line in lines:
        if match := COMPILE_LINE.search(line.rstrip()):
            found.setdefault(match["what"], {}).setdefault(match["key"], []).append(match["rest"])
    described = {}
    for what, keys in found.items():
        units = int(keys.get("units", ["0"])[0])
        if not units:
            continue
        waited = int(keys.get("waited", ["0"])[0])
        text = f"{units} units, {waited // 60} job-minutes waiting for memory"
        if heaviest := keys.get("heaviest"):
            mib, name = heaviest[0].split(" ", 1)
            text += f", heaviest {int(mib) / 1024:.1f} GiB ({name})"
        if over := keys.get("over-estimate"):
            count = int(keys.get("over-count", [str(len(over))])[0])
            peak, expected, rule, name = over[0].split(" ", 3)
            text += (
                f"; {count} above compile_memory.toml, most {int(peak) / 1024:.1f} > "
                f"{int(expected) / 1024:.1f} GiB ({rule}: {name})"
            )
        described[what] = text
    return described


@dataclass(frozen=True, kw_only=True)
class BuildSummary:
    image: str
    image_id: str
    size_bytes: int
    seconds: float
    engine: str
    profile: str
    target: str
    max_jobs: int
    ccache: dict[str, CcacheStats] = field(default_factory=dict)
    pruned: dict[str, int] = field(default_factory=dict)  # prune.toml entry -> bytes removed
    compiles: dict[str, str] = field(default_factory=dict)  # stage -> what its compiles did
    log: str = ""
    replay: str = ""
    report: str = ""

    def describe(self) -> str:
        lines = [
            f"image     {self.image} ({self.image_id[:19]})",
            f"size      {self.size_bytes / 1e9:.2f} GB",
            f"duration  {self.seconds:.0f} s",
            f"engine    {self.engine}; MAX_JOBS={self.max_jobs}",
        ]
        for what, stats in sorted(self.ccache.items()):
            lines.append(f"ccache    {what}: {stats.describe()}")
        if not self.ccache:
            lines.append("ccache    no compile ran (every compile step came from the layer cache)")
        for what, text in sorted(self.compiles.items()):
            lines.append(f"compiles  {what}: {text}")
        if self.pruned:
            lines.append(f"pruned    {describe_pruned(self.pruned)}")
        lines.append(f"log       {self.log}")
        return "\n".join(lines)


def replay_script(engine: Engine, argv: list[str], secrets: dict[str, Path], cwd: Path) -> str:
    """A shell script that replays `argv` by hand; the temporary secret files become variables."""
    words = []
    for word in argv:
        for sid, path in secrets.items():
            var = "FORGE_" + sid.upper().replace("-", "_")
            if word == f"id={sid},src={path}":
                word = f'id={sid},src="${var}"'
                break
        words.append(word if '"$' in word else shlex.quote(word))
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(engine.env.items()))
    return "\n".join(
        [
            "#!/bin/sh",
            "# The exact build command vllm-forge ran. Its secret files were temporary: set",
            "# FORGE_PIP_CA (a CA bundle) and FORGE_PIP_CONF (a pip.conf) to replay it.",
            "set -e",
            'FORGE_PIP_CA="${FORGE_PIP_CA:-/etc/ssl/certs/ca-certificates.crt}"',
            'FORGE_PIP_CONF="${FORGE_PIP_CONF:-$(mktemp)}"',
            '[ -s "$FORGE_PIP_CONF" ] || printf \'[global]\\ncert = /run/secrets/pip-ca\\n\' > "$FORGE_PIP_CONF"',
            f"cd {shlex.quote(str(cwd))}",
            (f"{env} " if env else "") + " \\\n  ".join(words),
            "",
        ]
    )


def vcs_ref(root: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def stream(
    engine: Engine, argv: list[str], log_path: Path, echo, *, secrets_dir: Path
) -> tuple[int, list[str]]:
    """Run `argv`, copying its output (redacted) to the terminal and the log; return (rc,
    ccache and prune lines). On any way out before the end (Ctrl-C, SIGTERM, SIGHUP, an error),
    the build is stopped in order first (`Engine.stop_build`)."""
    kept: list[str] = []
    with log_path.open("w", buffering=1) as log:  # line-buffered: `tail -f` follows the build
        proc = engine.start_build(argv)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = redact(line)
                log.write(line)
                echo(line.rstrip("\n"))
                if any(f"vllm-forge-{kind}" in line for kind in ("ccache", "prune", "compile")):
                    kept.append(line)
            return proc.wait(), kept
        except BaseException as stop:
            why = signal_name(stop.signum) if isinstance(stop, Stopped) else type(stop).__name__
            try:
                log.write(redact(engine.stop_build(proc, secrets_dir=secrets_dir)))
            finally:
                log.write(f"vllm-forge: build stopped ({why})\n")
            raise


def image_id_or_none(engine: Engine, ref: str) -> str | None:
    return engine.image_id(ref) if engine.image_exists(ref) else None


def tag_outcome(engine: Engine, tag: str, before: str | None) -> str:
    """Whether a stopped build moved `tag`, said in a few words."""
    try:
        after = image_id_or_none(engine, tag)
    except ForgeError:
        return f"whether {tag} moved is unknown ({engine.name} did not answer)"
    if after == before:
        return f"{tag} not moved (" + (f"still {before[:19]})" if before else "it does not exist)")
    if after is None:
        return f"{tag} no longer exists"
    return f"{tag} was tagged {after[:19]} before the build stopped"


def build_image(
    engine: Engine,
    pins: Pins,
    *,
    target: str,
    tag: str,
    jobs: JobPlan,
    project: Project,
    no_cache: bool = False,
    ca_bundle: str | None = None,
    extra_build_args: dict[str, str] | None = None,
    extra_secrets: dict[str, Path] | None = None,
    echo=print,
) -> BuildSummary:
    # What a run killed outright (SIGKILL) left: its secrets dir (memory-backed) and podman's
    # working containers, which keep copies of the secret files on disk. Gone before we start.
    remove_dead_runs_secrets(engine, log=echo)
    ensure_bases(engine, pins, project.base_work, log=echo)
    # vLLM's and FlashInfer's git sources, verified in the host's cache (fetched once).
    if (source_pins := source_pins_for(pins, project)) is not None:
        sources.fill(source_pins, project, ca_bundle=ca_bundle, log=echo)
    context = project.context(pins.profile)
    dockerfile = write_context(pins, project)
    project.logs.mkdir(parents=True, exist_ok=True)
    project.reports.mkdir(parents=True, exist_ok=True)
    name = slug(f"{pins.profile}-{target}-{engine.name}")
    log_path = project.logs / f"{name}.log"
    script_path = project.logs / f"{name}.sh"
    report = project.reports / f"{slug(tag)}.json"
    build_args = {
        "MAX_JOBS": str(jobs.max_jobs),
        "FORGE_MEM_BUDGET_MIB": str(jobs.memory_budget_mib),
        "NVCC_THREADS": str(jobs.nvcc_threads),
        "VCS_REF": vcs_ref(project.root),
        **(extra_build_args or {}),
    }
    echo(f"vllm-forge: {pins.profile} -> {target} as {tag} with {engine.name} ({engine.mode})")
    echo(f"vllm-forge: MAX_JOBS={jobs.max_jobs} NVCC_THREADS={jobs.nvcc_threads} ({jobs.reason})")
    for path in (extra_secrets or {}).values():
        remember_file(path)
    before = image_id_or_none(engine, tag)
    secrets_dir: Path | None = None
    start = time.monotonic()
    try:
        with build_secrets(ca_bundle) as own_secrets:
            secrets_dir = own_secrets["pip-conf"].parent
            secrets = {**own_secrets, **(extra_secrets or {})}
            request = BuildRequest(
                context=context,
                dockerfile=dockerfile,
                tag=tag,
                target=target,
                build_args=build_args,
                secrets=secrets,
                no_cache=no_cache,
                timestamp=pins.source_date_epoch,
            )
            argv = engine.build_argv(request)
            write_text(script_path, replay_script(engine, argv, secrets, project.root))
            script_path.chmod(0o755)
            rc, ccache_lines = stream(engine, argv, log_path, echo, secrets_dir=secrets_dir)
        seconds = time.monotonic() - start
        if rc != 0:
            raise BuildError(
                f"{engine.name} build of target {target!r} failed (exit {rc}); log: {log_path}; "
                f"replay: {script_path}"
            )
        summary = BuildSummary(
            image=tag,
            image_id=engine.image_id(tag),
            size_bytes=engine.image_size(tag),
            seconds=seconds,
            engine=f"{engine.name} {engine.version} ({engine.mode})",
            profile=pins.profile,
            target=target,
            max_jobs=jobs.max_jobs,
            ccache=parse_ccache(ccache_lines),
            compiles=parse_compiles(ccache_lines),
            pruned=pruned_by_build(engine, tag, target, ccache_lines),
            log=str(log_path),
            replay=str(script_path),
            report=str(report),
        )
        record = build_manifest(
            engine=engine,
            pins=pins,
            pins_file=project.pins_file,
            context=context,
            target=target,
            tag=tag,
            build_args=build_args,
            base_dir=project.base_work,
        )
    except KeyboardInterrupt as stop:
        # Ctrl-C, or SIGTERM/SIGHUP (errors.Stopped): the closing line says what became of it.
        left = secrets_dir is not None and secrets_dir.exists()
        stop.detail = (  # type: ignore[attr-defined]
            f"{engine.name} build stopped, "
            + (f"its secrets dir {secrets_dir} NOT removed" if left else "its secrets removed")
            + f"; {tag_outcome(engine, tag, before)}"
        )
        raise
    record["build"] = asdict(summary)
    write_text(report, json.dumps(record, indent=2, default=str) + "\n")
    echo("vllm-forge: build summary\n" + summary.describe())
    sys.stdout.flush()
    return summary
