"""A Debian base image made here: mmdebstrap -> tarball -> imported into the engine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .engines import Engine
from .errors import BaseImageError
from .pins import BaseSpec, ImageRef, Pins


@dataclass(frozen=True, kw_only=True)
class BaseResult:
    image: str
    tarball: Path
    sha256: str
    seconds: float


def mmdebstrap_argv(spec: BaseSpec, out: Path, mirror: str | None = None) -> list[str]:
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        "--include=ca-certificates",
        "--quiet",
        spec.suite,
        str(out),
    ]
    if mirror:
        argv.append(mirror)
    return argv


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def bootstrap(spec: BaseSpec, tarball: Path, *, epoch: int, log=print) -> str:
    """mmdebstrap the suite into `tarball` with a fixed epoch; return the tar's sha256.

    Same suite, package set, epoch and mirror -> the same tarball, byte for byte.
    """
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError(
            "mmdebstrap is not installed: apt-get install mmdebstrap (or `nox -s setup`)"
        )
    tarball.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    argv = mmdebstrap_argv(spec, tarball, spec.mirror or None)
    log(f"$ SOURCE_DATE_EPOCH={epoch} {' '.join(argv)}")
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BaseImageError(f"mmdebstrap {spec.suite} failed: {tail}")
    return sha256_file(tarball)


def make_base(engine: Engine, pins: Pins, work_dir: Path, *, log=print) -> BaseResult:
    """Bootstrap the profile's Debian base and import it into `engine`; record its hash."""
    spec = pins.base
    if spec is None:
        raise BaseImageError(f"profile {pins.profile} pulls its bases; it makes none here")
    tarball = work_dir / f"debian-{spec.suite}.tar"
    start = time.monotonic()
    digest = bootstrap(spec, tarball, epoch=pins.source_date_epoch, log=log)
    engine.import_tar(tarball, spec.image)
    record = {
        "image": spec.image,
        "image_id": engine.image_id(spec.image),
        "engine": engine.name,
        "suite": spec.suite,
        "tar_sha256": digest,
        "source_date_epoch": pins.source_date_epoch,
        "mirror": spec.mirror or "mmdebstrap's default",
    }
    (work_dir / f"debian-{spec.suite}.json").write_text(json.dumps(record, indent=2) + "\n")
    tarball.unlink()
    return BaseResult(
        image=spec.image, tarball=tarball, sha256=digest, seconds=time.monotonic() - start
    )


def ensure_bases(engine: Engine, pins: Pins, work_dir: Path, *, log=print) -> None:
    """Make sure both base images are there: made here (localhost/) or pulled by digest.

    A pull that fails names the image, says why, and points at the profile that builds from
    reachable sources.
    """
    made = False
    for ref in (pins.devel, pins.runtime):
        if engine.image_exists(ref.raw if ref.local else ref.pull_ref):
            continue
        if ref.local:
            if not made:
                log(f"{ref.raw} is not in {engine.name}: making it with mmdebstrap")
                made_result = make_base(engine, pins, work_dir, log=log)
                log(
                    f"made {made_result.image} in {made_result.seconds:.0f}s (tar sha256 {made_result.sha256})"
                )
                made = True
            continue
        _pull(engine, ref)


def _pull(engine: Engine, ref: ImageRef) -> None:
    result = engine.pull(ref.raw)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BaseImageError(
            f"cannot pull base image {ref.raw}: {reason[:300]}. This machine cannot reach that "
            "registry; build the profile that needs only Debian and the package index instead: "
            "--profile debian-pypi"
        )
