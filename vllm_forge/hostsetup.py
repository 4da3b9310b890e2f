"""`nox -s setup`: install the engines and tools from Debian's archive and start dockerd.

Only for a Debian/Ubuntu machine where we are root (CI, a fresh dev box); elsewhere it says
what to install by hand. It runs on a stock `python3` before anything else is installed: the
standard library only, here and in everything it imports.

Deadlines: `apt-get update` APT_UPDATE_S, `apt-get install` APT_INSTALL_S, dockerd's start 60 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .engines import detect_docker
from .errors import EngineError

APT_UPDATE_S = 300.0
APT_INSTALL_S = 1200.0

DEBIAN_PACKAGES = (
    "docker.io",
    "podman",
    "buildah",
    "mmdebstrap",
    "docker-registry",
    "uidmap",
    "ccache",
)


# Installed where the distribution has them: Ubuntu 24.04's docker.io (26 and later) builds with
# BuildKit only through the buildx plugin; Debian 12's docker.io 20.10 needs none and has none.
OPTIONAL_PACKAGES = ("docker-buildx",)
DOCKER_SOCKET = Path("/var/run/docker.sock")


def _log(message: str) -> None:
    print(message, flush=True)  # before apt-get's own output, not after it


def candidate(package: str) -> bool:
    """Whether apt can install `package` here (its lists name a candidate version)."""
    try:
        result = subprocess.run(
            ["apt-cache", "policy", package], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    for line in result.stdout.splitlines():
        if line.strip().startswith("Candidate:"):
            return line.split(":", 1)[1].strip() not in ("", "(none)")
    return False


def optional_packages() -> list[str]:
    return [p for p in missing_packages(OPTIONAL_PACKAGES) if candidate(p)]


def missing_packages(packages=DEBIAN_PACKAGES) -> list[str]:
    missing = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        )
        if "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def install(log=_log) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None or os.geteuid() != 0:
        raise EngineError(
            "setup installs Debian packages and needs root on Debian/Ubuntu; install by hand: "
            + " ".join(DEBIAN_PACKAGES)
        )
    missing = missing_packages()
    if not missing and not optional_packages():
        log("setup: Debian packages already installed")
        return
    _apt(["apt-get", "update", "-qq"], APT_UPDATE_S)
    missing += optional_packages()
    log(f"setup: apt-get install {' '.join(missing)}")
    _apt(["apt-get", "install", "-y", "-qq", *missing], APT_INSTALL_S)


def _apt(argv: list[str], deadline_s: float) -> None:
    """Run one apt-get command (its output goes to the terminal); one line if it fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = " ".join(argv[:2])
    try:
        result = subprocess.run(argv, env=env, timeout=deadline_s)
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"setup: `{command}` did not finish in {deadline_s:.0f} s (a stuck mirror or proxy?);"
            " check `apt-get update` by hand, then run setup again"
        ) from None
    except OSError as exc:
        raise EngineError(f"setup: cannot run {argv[0]} ({exc.strerror})") from None
    if result.returncode != 0:
        raise EngineError(
            f"setup: `{command}` failed with exit {result.returncode} (its output is above);"
            f" fix apt, or install by hand: apt-get install {' '.join(DEBIAN_PACKAGES)}"
        )


def _daemon_answers(socket_path: Path = DOCKER_SOCKET) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(socket_path))
        return True
    return False


def start_dockerd(log_dir: Path, log=_log, timeout: float = 60) -> None:
    engine, reasons = detect_docker()
    if engine is not None:
        log(f"setup: docker daemon {engine.version} is running")
        return
    if _daemon_answers():  # starting another dockerd would not help: the client is the problem
        raise EngineError(
            f"a docker daemon answers at {DOCKER_SOCKET}, but no docker client here can use it"
            " for BuildKit builds (another dockerd would not help): " + "; ".join(reasons)
        )
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
