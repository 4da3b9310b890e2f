"""`python -m vllm_forge.verify`: verify an image against versions.toml (`nox -s verify`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import engines, pins
from ..build import Paths, default_tag, slug
from ..errors import ConfigError, ForgeError, VerifyError
from . import report as reports
from .config import VerifyConfig, host_ca_bundle
from .runner import check_ids, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vllm_forge.verify",
        description="Check an image against versions.toml: pins, SASS coverage, slim hygiene, "
        "metadata, size, and (where a GPU is visible) the kernel probe, torch and vLLM.",
    )
    p.add_argument("--profile", help="profile in versions.toml (default: its default_profile)")
    p.add_argument("--pins", default="versions.toml", help="path of versions.toml")
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
    return p


def config(args: argparse.Namespace) -> VerifyConfig:
    resolved = pins.load(Path(args.pins), args.profile)
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
        cache_dir=Paths(root=Path.cwd()).build / ".cache",
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        print("\n".join(check_ids()))
        return 0
    try:
        cfg = config(args)
        print(
            f"vllm-forge verify: {cfg.image} with {cfg.engine.name} {cfg.engine.version}, "
            f"profile {cfg.pins.profile}",
            flush=True,
        )
        result = run(cfg, args.check)
        directory = args.report_dir or Paths(root=Path.cwd()).reports
        name = slug(f"{cfg.pins.profile}-{cfg.engine.name}-{cfg.image.rpartition('/')[2]}")
        as_json, as_text = reports.write(result, directory, name)
        print("\n" + reports.table(result))
        if text := reports.details(result):
            print("\n" + text)
        print(f"\nreport: {as_json}\n        {as_text}")
        if not result.ok:
            raise VerifyError(f"{cfg.image} failed {result.counts()['fail']} check(s); see above")
        return 0
    except ForgeError as exc:
        print(f"vllm-forge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
