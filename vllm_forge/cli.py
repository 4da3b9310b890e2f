"""Command line: `python -m vllm_forge.cli COMMAND [options]`. The nox sessions call this."""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from . import base, bench, build, clean, engines, hostsetup, jobs, lock, pins, render, repro
from .cuda_arch import format_arch_list, nvcc_gencode_flags
from .errors import ConfigError, ForgeError

TARGETS = {"build": "builder", "slim": "runtime", "probe": "probe"}


@dataclass(frozen=True, kw_only=True)
class Options:
    """Everything a command needs, read once: versions.toml + profile + environment + flags."""

    pins: pins.Pins
    root: Path
    engine: str | None
    tag: str | None
    no_cache: bool
    ca_bundle: str | None
    secrets: dict[str, Path]
    jobs: jobs.JobPlan

    @property
    def paths(self) -> build.Paths:
        return build.Paths(root=self.root)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="profile in versions.toml (default: its default_profile)")
    common.add_argument("--pins", default="versions.toml", help="path of versions.toml")
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
    top = argparse.ArgumentParser(prog="vllm-forge")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "render", parents=[common], help="render the Dockerfile of a profile into build/"
    )
    sub.add_parser("base", parents=[common], help="make the profile's Debian base image here")
    sub.add_parser(
        "build", parents=[common], help="build the builder image (compiled wheels, probe)"
    )
    sub.add_parser("slim", parents=[common], help="build the slim runtime image")
    sub.add_parser("probe", parents=[common], help="build the kernel-probe pre-flight image")
    sub.add_parser("jobs", parents=[common], help="show the MAX_JOBS this machine gets")
    lock_cmd = sub.add_parser("lock", parents=[common], help="re-lock stale profiles (uv)")
    lock_cmd.add_argument("--all", action="store_true", help="every profile, not just --profile")
    lock_cmd.add_argument("--upgrade", action="store_true", help="re-resolve even if current")
    repro_cmd = sub.add_parser("repro", parents=[common], help="build twice, compare the bytes")
    repro_cmd.add_argument("--target", default="runtime", help="stage to build (default: runtime)")
    repro_cmd.add_argument(
        "--cold-caches",
        action="store_true",
        help="also empty the project's cache mounts (apt, pip, ccache) before each build",
    )
    sub.add_parser("bench", parents=[common], help="measure rebuild speed, ccache and sizes")
    clean_cmd = sub.add_parser("clean", help="remove project images; bound build caches")
    clean_cmd.add_argument("--engine", choices=engines.ENGINE_NAMES, action="append")
    clean_cmd.add_argument("--keep-cache-gb", type=float, default=8.0)
    clean_cmd.add_argument("--keep-images", action="store_true")
    sub.add_parser("setup", help="install engines from Debian and start dockerd (root)")
    return top


def options(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Options:
    env = os.environ if environ is None else environ
    overrides: dict = {}
    if args.arch_list:
        overrides.setdefault("build", {})["torch_cuda_arch_list"] = args.arch_list
    doc = pins.read_document(Path(args.pins))
    resolved = pins.resolve(doc, args.profile, overrides)
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
        pins=resolved,
        root=Path(args.pins).resolve().parent,
        engine=args.engine,
        tag=check_tag(args.tag),
        no_cache=args.no_cache,
        ca_bundle=args.ca_bundle,
        secrets=parse_secrets(args.secret),
        jobs=plan,
    )


_TAG = re.compile(
    r"^[a-z0-9]+([._-]+[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)


def check_tag(tag: str | None) -> str | None:
    if tag is not None and not _TAG.match(tag):
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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except ForgeError as exc:
        print(f"vllm-forge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def run(args: argparse.Namespace) -> int:
    if args.command == "setup":
        hostsetup.install()
        hostsetup.start_dockerd(Path("build/logs"))
        return 0
    if args.command == "clean":
        for name in args.engine or engines.ENGINE_NAMES:
            try:
                engine = engines.detect(name)
            except ForgeError as exc:
                print(f"clean: {name}: skipped ({exc})")
                continue
            clean.clean(engine, keep_cache_gb=args.keep_cache_gb, keep_images=args.keep_images)
        return 0
    opts = options(args)
    print(summary(opts), flush=True)
    if args.command == "jobs":
        return 0
    if args.command == "lock":
        lock.refresh(
            Path(args.pins),
            opts.paths.build / "lock",
            profiles=None if args.all else [opts.pins.profile],
            upgrade=args.upgrade,
        )
        return 0
    if args.command == "render":
        dockerfile = render.write_context(opts.pins, opts.paths.context(opts.pins.profile))
        print(f"rendered {dockerfile}")
        return 0
    engine = engines.detect(opts.engine)
    if args.command == "base":
        if opts.pins.base is None:
            raise ConfigError(
                f"profile {opts.pins.profile} pulls its bases; `base` is for debian-pypi"
            )
        result = base.make_base(engine, opts.pins, opts.paths.base_work)
        print(
            f"made {result.image} with {engine.name} in {result.seconds:.0f}s; tar sha256 {result.sha256}"
        )
        return 0
    if args.command == "bench":
        bench.run_bench(engine, opts.pins, paths=opts.paths, jobs=opts.jobs)
        return 0
    if args.command == "repro":
        repro.run_repro(
            engine,
            opts.pins,
            target=args.target,
            paths=opts.paths,
            jobs=opts.jobs,
            cold_caches=args.cold_caches,
        )
        return 0
    target = TARGETS[args.command]
    build.build_image(
        engine,
        opts.pins,
        target=target,
        tag=opts.tag or build.default_tag(opts.pins.profile, target),
        jobs=opts.jobs,
        paths=opts.paths,
        no_cache=opts.no_cache,
        ca_bundle=opts.ca_bundle,
        extra_secrets=opts.secrets,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
