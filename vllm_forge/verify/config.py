"""Everything one verify run needs, read once into a frozen object (the checks read only this)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..engines import Engine
from ..pins import Pins

DEFAULT_HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True, kw_only=True)
class VerifyConfig:
    pins: Pins
    image: str
    engine: Engine
    cache_dir: Path  # where cuobjdump is installed on the host (the project's build/.cache)
    force_gpu: bool = False
    needles: tuple[Path, ...] = ()
    host_bundle: Path | None = None  # whose custom CAs must not be in any layer
    model_dir: Path | None = None
    model: str | None = None


def host_ca_bundle(environ: dict[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    for candidate in (env.get("PIP_CERT"), env.get("SSL_CERT_FILE"), str(DEFAULT_HOST_BUNDLE)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def gpu_visible() -> str | None:
    """Why a GPU looks present here (None when it does not)."""
    if Path("/dev/nvidia0").exists():
        return "/dev/nvidia0 exists"
    if shutil.which("nvidia-smi"):
        return "nvidia-smi is installed"
    return None


def public_bundles() -> list[Path]:
    """The host distribution's shipped root certificates (Debian/Ubuntu: mozilla/*.crt)."""
    root = Path("/usr/share/ca-certificates")
    return sorted(root.rglob("*.crt")) if root.is_dir() else []
