"""`vllm-forge verify`: check an image against versions.toml (`nox -s verify`).

Its options and its run; the CLI's one wrapper turns its errors into a line and an exit code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import engines, pins
from ..build import default_tag, slug
from ..errors import ConfigError, VerifyError
from ..project import Project
from . import report as reports
from .config import VerifyConfig, host_ca_bundle


def _runner():
    """The checks run under pytest-testinfra, an extra: the rest of the tool works without it."""
    try:
        from . import runner
    except ImportError as exc:
        raise ConfigError(
            f"verify needs pytest and pytest-testinfra ({exc.name} is not installed): "
            "pip install 'vllm-forge[verify]' (`nox -s verify` installs them)"
        ) from None
    return runner


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", help="image to verify (default: localhost/vllm-forge:PROFILE)")
    p.add_argument("--engine", choices=engines.ENGINE_NAMES, help="default: docker, else podman")
    p.add_argument("--gpu", action="store_true", help="run the GPU checks even if none is seen")
    p.add_argument(
        "--secret-needle",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a file whose content must be in no layer (repeatable)",
    )
    p.add_argument("--model-dir", type=Path, help="local model cache, mounted read-only")
    p.add_argument("--model", help="model under --model-dir for a short vLLM generation")
    p.add_argument(
        "--check", action="append", default=[], metavar="NAME", help="run only these checks"
    )
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--report-dir", type=Path, help="default: build/reports")


def config(project: Project, args: argparse.Namespace) -> VerifyConfig:
    resolved = pins.load(project.pins_file, args.profile)
    if (args.model_dir is None) != (args.model is None):
        raise ConfigError("--model-dir and --model go together: the directory and a model in it")
    if args.model_dir is not None and not args.model_dir.is_dir():
        raise ConfigError(f"--model-dir {args.model_dir}: no such directory")
    for needle in args.secret_needle:
        if not needle.is_file():
            raise ConfigError(f"--secret-needle {needle}: no such file")
        if len(needle.read_bytes().strip()) < 8:
            raise ConfigError(f"--secret-needle {needle}: needs at least 8 bytes to search for")
    engine = engines.detect(args.engine)
    image = args.image or default_tag(resolved.profile, "runtime")
    if not engine.image_exists(image):
        raise ConfigError(
            f"image {image} is not in {engine.name}; build it with `nox -s slim -- --profile "
            f"{resolved.profile} --engine {engine.name}` or pass --image"
        )
    return VerifyConfig(
        pins=resolved,
        image=image,
        engine=engine,
        force_gpu=args.gpu,
        needles=tuple(p.resolve() for p in args.secret_needle),
        host_bundle=host_ca_bundle(),
        model_dir=args.model_dir.resolve() if args.model_dir else None,
        model=args.model,
        cache_dir=project.cache,
    )


def run(project: Project | None, args: argparse.Namespace) -> int:
    """Verify; with --list, only name the checks (no project needed)."""
    runner = _runner()
    if args.list or project is None:
        print("\n".join(runner.check_ids()))
        return 0
    cfg = config(project, args)
    print(
        f"vllm-forge verify: {cfg.image} with {cfg.engine.name} {cfg.engine.version}, "
        f"profile {cfg.pins.profile}",
        flush=True,
    )
    result = runner.run(cfg, args.check)
    directory = args.report_dir or project.reports
    name = slug(f"{cfg.pins.profile}-{cfg.engine.name}-{cfg.image.rpartition('/')[2]}")
    as_json, as_text = reports.write(result, directory, name)
    print("\n" + reports.table(result))
    if text := reports.details(result):
        print("\n" + text)
    print(f"\nreport: {as_json}\n        {as_text}")
    if not result.ok:
        raise VerifyError(f"{cfg.image} failed {result.counts()['fail']} check(s); see above")
    return 0
