"""`nox -s setup`: install the engines and tools from Debian's archive and start dockerd.

Only for a Debian/Ubuntu machine where we are root (CI, a fresh dev box); elsewhere it says
what to install by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from .engines import detect_docker
from .errors import EngineError

DEBIAN_PACKAGES = (
    "docker.io",
    "podman",
    "buildah",
    "mmdebstrap",
    "docker-registry",
    "uidmap",
    "ccache",
)


def missing_packages(packages=DEBIAN_PACKAGES) -> list[str]:
    missing = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        )
        if "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def install(log=print) -> None:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise EngineError(
            "setup installs Debian packages and needs root on Debian/Ubuntu; install by hand: "
            + " ".join(DEBIAN_PACKAGES)
        )
    missing = missing_packages()
    if not missing:
        log("setup: Debian packages already installed")
        return
    log(f"setup: apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def start_dockerd(log_dir: Path, log=print, timeout: float = 60) -> None:
    engine, _ = detect_docker()
    if engine is not None:
        log(f"setup: docker daemon {engine.version} is running")
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        raise EngineError("dockerd is not installed: apt-get install docker.io")
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "dockerd.log").open("ab") as out:
        subprocess.Popen([dockerd], stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine, _ = detect_docker()
        if engine is not None:
            log(f"setup: started dockerd {engine.version}")
            return
        time.sleep(1)
    raise EngineError(f"dockerd did not come up in {timeout:.0f}s; see {log_dir / 'dockerd.log'}")
