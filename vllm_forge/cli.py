"""The command line, the only one: `vllm-forge COMMAND [options]` (`python -m vllm_forge.cli`).

Every nox session calls one subcommand. `main` is the one place that turns the project's errors
into a single line and an exit code (see errors.py), and Ctrl-C into exit 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import (
    base,
    bench,
    build,
    bump,
    clean,
    engines,
    hostsetup,
    jobs,
    lock,
    pins,
    render,
    repro,
    sources,
)
from .cuda_arch import format_arch_list, nvcc_gencode_flags
from .errors import ConfigError, ForgeError, VerifyError
from .project import Project
from .serve import command as serve_command
from .verify import archcheck
from .verify import command as verify_command

TARGETS = {"build": "builder", "slim": "runtime", "probe": "probe"}


@dataclass(frozen=True, kw_only=True)
class Options:
    """Everything a build command needs, read once: versions.toml + profile + environment + flags."""

    project: Project
    pins: pins.Pins
    engine: str | None
    tag: str | None
    no_cache: bool
    ca_bundle: str | None
    secrets: dict[str, Path]
    jobs: jobs.JobPlan


# ---- the parser ------------------------------------------------------------------------------


def _pins_options() -> argparse.ArgumentParser:
    """--pins and --profile: every command that reads versions.toml takes them."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="profile in versions.toml (default: its default_profile)")
    common.add_argument("--pins", default="versions.toml", help="path of versions.toml")
    return common


def _build_options(pins_options: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """What the commands that render or build take on top: the locks, the engine, the knobs."""
    common = argparse.ArgumentParser(add_help=False, parents=[pins_options])
    common.add_argument(
        "--lock-dir",
        help="where the profiles' locks live (default: the package's in a checkout, "
        "else locks/ beside versions.toml)",
    )
    common.add_argument(
        "--engine", choices=engines.ENGINE_NAMES, help="default: docker, else podman"
    )
    common.add_argument("--max-jobs", help="MAX_JOBS (default: env MAX_JOBS, versions.toml, auto)")
    common.add_argument("--arch-list", help="override [build].torch_cuda_arch_list, e.g. '12.0'")
    common.add_argument("--tag", help="image tag (default: localhost/vllm-forge:PROFILE[-builder])")
    common.add_argument(
        "--no-cache", action="store_true", help="ignore the layer cache (ccache stays)"
    )
    common.add_argument("--ca-bundle", help="CA bundle for downloads in the build (a build secret)")
    common.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="ID=FILE",
        help="an extra build secret (e.g. hf-token=~/.hf-token); never stored in a layer",
    )
    return common


def parser() -> argparse.ArgumentParser:
    project = _pins_options()
    common = _build_options(project)
    top = argparse.ArgumentParser(
        prog="vllm-forge",
        description="Pinned, reproducible, small vLLM images for RTX 5090 (sm_120, CUDA 12.8).",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, parents: list) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=parents, help=help, description=help)

    add("render", "render the Dockerfile of a profile into build/PROFILE/context", [common])
    add("base", "make the profile's Debian base image here (mmdebstrap)", [common])
    add("build", "build the builder image (compiled wheels, the kernel probe)", [common])
    add("slim", "build the slim runtime image", [common])
    add("probe", "build the kernel-probe pre-flight image", [common])
    add("jobs", "show the resolved pins and the MAX_JOBS this machine gets", [common])
    lock_cmd = add("lock", "re-lock stale profiles (uv): all of them, or --profile's", [common])
    lock_cmd.add_argument("--upgrade", action="store_true", help="re-resolve even if current")
    repro_cmd = add(
        "repro", "build twice from empty caches, compare image IDs and layers", [common]
    )
    repro_cmd.add_argument("--target", default="runtime", help="stage to build (default: runtime)")
    repro_cmd.add_argument(
        "--cold-caches",
        action="store_true",
        help="also empty the project's cache mounts (apt, pip, ccache) before each build",
    )
    add("bench", "measure rebuild speed, ccache and sizes", [common])
    verify_command.add_arguments(add("verify", "check an image against versions.toml", [project]))
    serve_help = "run the slim image as a model server, pre-flighted and health-checked"
    serve_command.add_arguments(add("serve", serve_help, [project]))
    bump_cmd = add("bump", "move the pins forward, then re-lock", [project])
    bump_cmd.add_argument("--lock-dir", help="where the re-written locks go (as for `lock`)")
    bump.add_arguments(bump_cmd)
    arch_cmd = add("archcheck", "which CUDA SASS targets shared objects carry", [])
    arch_cmd.add_argument("paths", nargs="+", type=Path, help="files, or folders to search")
    arch_cmd.add_argument("--arch-list", required=True, help='e.g. "12.0" or "9.0 12.0a"')
    arch_cmd.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("build/.cache"),
        help="where cuobjdump is installed from the index (default: build/.cache)",
    )
    sources_cmd = add(
        "sources",
        "fetch vLLM's and FlashInfer's pinned git sources into the cache, verified by commit",
        [project],
    )
    sources_cmd.add_argument("--lock-dir", help="where the source pins live (as for `lock`)")
    sources_cmd.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        metavar="DIR",
        help="fill the cache from an --export folder, with no network",
    )
    sources_cmd.add_argument(
        "--export", type=Path, metavar="DIR", help="write what an offline site needs to DIR"
    )
    sources_cmd.add_argument(
        "--regenerate",
        action="store_true",
        help="re-read the pins from the vLLM source's CMake (needs GitHub and the index)",
    )
    sources_cmd.add_argument(
        "--vllm-source",
        type=Path,
        metavar="PATH",
        help="with --regenerate: a vLLM sdist or source tree (default: the pinned sdist)",
    )
    sources_cmd.add_argument("--ca-bundle", help="CA bundle git trusts (default: pip's cert)")
    clean_cmd = add("clean", "remove project images; bound build caches", [])
    clean_cmd.add_argument("--engine", choices=engines.ENGINE_NAMES, action="append")
    clean_cmd.add_argument("--keep-cache-gb", type=float, default=8.0)
    clean_cmd.add_argument("--keep-images", action="store_true")
    add("setup", "install engines from Debian and start dockerd (root)", [])
    return top


# ---- options --------------------------------------------------------------------------------


def project_of(args: argparse.Namespace) -> Project:
    return Project.at(args.pins, getattr(args, "lock_dir", None))


def options(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Options:
    env = os.environ if environ is None else environ
    project = project_of(args)
    overrides: dict = {}
    if args.arch_list is not None:
        overrides.setdefault("build", {})["torch_cuda_arch_list"] = args.arch_list
    resolved = pins.resolve(pins.read_document(project.pins_file), args.profile, overrides)
    requested = resolved.build.max_jobs
    if env.get("MAX_JOBS"):
        requested = pins.parse_max_jobs(env["MAX_JOBS"], "environment MAX_JOBS")
    if args.max_jobs:
        requested = pins.parse_max_jobs(args.max_jobs, "--max-jobs")
    plan = jobs.plan_here(
        nvcc_threads=resolved.build.nvcc_threads,
        gencode_targets=len(nvcc_gencode_flags(resolved.build.arch_list)),
        requested=requested,
    )
    return Options(
        project=project,
        pins=resolved,
        engine=args.engine,
        tag=check_tag(args.tag),
        no_cache=args.no_cache,
        ca_bundle=args.ca_bundle,
        secrets=parse_secrets(args.secret),
        jobs=plan,
    )


def check_tag(tag: str | None) -> str | None:
    """--tag is NAME[:TAG] by the same grammar as the pins' image references (no digest)."""
    if tag is None:
        return None
    named = tag if ":" in tag.rpartition("/")[2] else f"{tag}:latest"
    try:
        ref = pins.ImageRef.parse(named, "--tag", need_digest=False)
    except ConfigError:
        ref = None
    if ref is None or ref.digest or "@" in tag:
        raise ConfigError(
            f"--tag {tag!r} is not an image reference; write it as lowercase NAME[:TAG], "
            "e.g. localhost/vllm-forge:mine"
        )
    return tag


def parse_secrets(values: list[str]) -> dict[str, Path]:
    secrets = {}
    for value in values:
        sid, sep, path = value.partition("=")
        if not sep or not sid or not path:
            raise ConfigError(f"--secret {value!r}: write it as ID=FILE, e.g. hf-token=./token")
        if sid in ("pip-ca", "pip-conf"):
            raise ConfigError(f"--secret {sid}: that id is the build's own; use --ca-bundle")
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"--secret {sid}: {path} is not a file")
        secrets[sid] = Path(path).expanduser().resolve()
    return secrets


def summary(opts: Options) -> str:
    p = opts.pins
    return "\n".join(
        [
            f"profile          {p.profile}: {p.description}",
            f"pins             {opts.project.pins_file} (locks: {opts.project.lock_dir})",
            f"bases            devel {p.devel.raw}",
            f"                 runtime {p.runtime.raw}",
            f"python / cuda    {p.python_version} / {p.cuda_version}",
            f"torch            {p.torch.version} (vision {p.torch.torchvision}, audio {p.torch.torchaudio})",
            f"flashinfer       {p.flashinfer.version} {', '.join(p.flashinfer.packages)}; "
            f"jit-cache: {p.flashinfer.jit_cache}",
            f"vllm             {p.vllm.version} from {p.vllm.source_pin}",
            f"arch list        {format_arch_list(p.build.arch_list)}",
            f"MAX_JOBS         {opts.jobs.max_jobs} x NVCC_THREADS {opts.jobs.nvcc_threads} ({opts.jobs.reason})",
        ]
    )


def _announce(args: argparse.Namespace) -> Options:
    """Resolve the options, print the summary, and say what in them builds but misleads."""
    opts = options(args)
    print(summary(opts), flush=True)
    for warning in opts.pins.warnings:
        print(f"vllm-forge: warning: {warning}", file=sys.stderr, flush=True)
    return opts


# ---- the commands: each takes the parsed arguments and returns an exit code -----------------


def cmd_setup(args: argparse.Namespace) -> int:
    hostsetup.install()
    hostsetup.start_dockerd(Path("build/logs"))  # a host-wide step: no project to ask
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    for name in args.engine or engines.ENGINE_NAMES:
        try:
            engine = engines.detect(name)
        except ForgeError as exc:
            print(f"clean: {name}: skipped ({exc})")
            continue
        clean.clean(engine, keep_cache_gb=args.keep_cache_gb, keep_images=args.keep_images)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    opts = _announce(args)
    print("\n".join(jobs.report(opts.jobs)))
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    opts = _announce(args)
    lock.refresh(
        opts.project, profiles=[opts.pins.profile] if args.profile else None, upgrade=args.upgrade
    )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    opts = _announce(args)
    print(f"rendered {render.write_context(opts.pins, opts.project, need_sources=False)}")
    return 0


def cmd_base(args: argparse.Namespace) -> int:
    opts = _announce(args)
    if opts.pins.base is None:
        raise ConfigError(f"profile {opts.pins.profile} pulls its bases; `base` is for debian-pypi")
    engine = engines.detect(opts.engine)
    result = base.make_base(engine, opts.pins, opts.project.base_work)
    print(
        f"made {result.image} with {engine.name} in {result.seconds:.0f}s; tar sha256 {result.sha256}"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    opts = _announce(args)
    engine = engines.detect(opts.engine)
    bench.run_bench(engine, opts.pins, project=opts.project, jobs=opts.jobs)
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    opts = _announce(args)
    repro.run_repro(
        engines.detect(opts.engine),
        opts.pins,
        target=args.target,
        project=opts.project,
        jobs=opts.jobs,
        cold_caches=args.cold_caches,
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """build, slim and probe: one target each."""
    opts = _announce(args)
    target = TARGETS[args.command]
    build.build_image(
        engines.detect(opts.engine),
        opts.pins,
        target=target,
        tag=opts.tag or build.default_tag(opts.pins.profile, target),
        jobs=opts.jobs,
        project=opts.project,
        no_cache=opts.no_cache,
        ca_bundle=opts.ca_bundle,
        extra_secrets=opts.secrets,
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    return verify_command.run(None if args.list else project_of(args), args)


def cmd_serve(args: argparse.Namespace) -> int:
    return serve_command.run(project_of(args), args)


def cmd_bump(args: argparse.Namespace) -> int:
    return bump.run(project_of(args), args)


def cmd_sources(args: argparse.Namespace) -> int:
    project = project_of(args)
    return sources.run(
        pins.load(project.pins_file, args.profile),
        project,
        from_dir=args.from_dir,
        export_dir=args.export,
        regenerate_pins=args.regenerate,
        vllm_source=args.vllm_source,
        ca_bundle=args.ca_bundle,
    )


def cmd_archcheck(args: argparse.Namespace) -> int:
    required = archcheck.required_targets(args.arch_list)
    files: list[Path] = []
    for path in args.paths:
        if path.is_dir():
            files.extend(archcheck.find_shared_objects(path))
        elif path.exists():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    cuobjdump = archcheck.ensure_cuobjdump(args.cache_dir)
    report = archcheck.coverage(files, required, cuobjdump)
    print(report.table())
    if not report.ok:
        raise VerifyError(report.failure_message())
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "setup": cmd_setup,
    "clean": cmd_clean,
    "jobs": cmd_jobs,
    "lock": cmd_lock,
    "render": cmd_render,
    "base": cmd_base,
    "bench": cmd_bench,
    "repro": cmd_repro,
    "build": cmd_build,
    "slim": cmd_build,
    "probe": cmd_build,
    "verify": cmd_verify,
    "serve": cmd_serve,
    "bump": cmd_bump,
    "archcheck": cmd_archcheck,
    "sources": cmd_sources,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; its errors become one line on stderr and the error's exit code.

    Everything it prints passes the redaction rule (redact.py: URL credentials, token-like
    query values, secrets known from the environment and pip's configuration). SIGTERM and
    SIGHUP stop it as Ctrl-C does (errors.Stopped): a running build is stopped and its secrets
    removed, one line says what became of it, and the exit code is 128 + the signal (130
    SIGINT, 143 SIGTERM, 129 SIGHUP).
    """
    import traceback

    from . import redact
    from .errors import signal_name, stop_on_signals

    redact.remember_environment()
    redact.remember_pip_config()
    with redact.redacted_output(), stop_on_signals():
        args = parser().parse_args(argv)
        try:
            return COMMANDS[args.command](args)
        except ForgeError as exc:
            print(f"vllm-forge: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:  # Ctrl-C, or errors.Stopped (SIGTERM, SIGHUP)
            signum = getattr(exc, "signum", 2)
            detail = getattr(exc, "detail", "")
            print(
                f"vllm-forge: {args.command} interrupted by {signal_name(signum)}"
                + (f": {detail}" if detail else ""),
                file=sys.stderr,
            )
            return 128 + signum
        except Exception:  # a bug: its traceback, redacted like everything else
            traceback.print_exc()
            return 1


if __name__ == "__main__":
    raise SystemExit(main())
