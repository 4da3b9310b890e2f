"""Build secrets: the TLS trust bundle and pip's index settings reach the build as secret mounts.

Nothing here is ever written into the build context or an image layer. The index settings are
the user's own (environment, then `pip config`); with none, pip's default index applies inside
the build as well.

The files live in a private directory (mode 0700) on memory-backed storage where the host has it
(`$XDG_RUNTIME_DIR`, else `/dev/shm`), so not even a SIGKILL leaves them on a disk. The
directory's name carries the owning process's ID: `clean` removes those whose process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import pipconfig, redact
from .errors import ConfigError

PREFIX = "vllm-forge-secrets-"
_OWNED = re.compile(rf"^{PREFIX}(?P<pid>\d+)-")
MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")

SYSTEM_BUNDLES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),
    Path("/etc/pki/tls/certs/ca-bundle.crt"),
)


@dataclass(frozen=True, kw_only=True)
class PipSettings:
    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    cert: str = ""


def user_pip_settings(environ: dict[str, str] | None = None) -> PipSettings:
    """What of the user's pip configuration a build can use (remote indexes, trust)."""
    conf = pipconfig.settings(environ)

    def remote(values: str) -> tuple[str, ...]:
        # Local file:// indexes and find-links of the host are not visible inside a build.
        return tuple(v for v in values.split() if v.startswith(("http://", "https://")))

    index = remote(conf.get("index-url", ""))
    return PipSettings(
        index_url=index[0] if index else "",
        extra_index_urls=remote(conf.get("extra-index-url", "")),
        trusted_hosts=tuple(conf.get("trusted-host", "").split()),
        cert=conf.get("cert", ""),
    )


def ca_bundle(
    explicit: str | None, settings: PipSettings, environ: dict[str, str] | None = None
) -> Path:
    """The CA bundle the build trusts: --ca-bundle, pip's cert, the usual env vars, the system's."""
    env = os.environ if environ is None else environ
    candidates = [explicit, settings.cert, env.get("REQUESTS_CA_BUNDLE"), env.get("SSL_CERT_FILE")]
    for candidate in candidates:
        if candidate:
            path = Path(candidate)
            if not path.is_file():
                raise ConfigError(f"CA bundle {path} does not exist; pass --ca-bundle PATH")
            return path
    for path in SYSTEM_BUNDLES:
        if path.is_file():
            return path
    raise ConfigError("no CA bundle found; pass --ca-bundle PATH (a PEM file)")


def pip_conf_text(settings: PipSettings) -> str:
    lines = ["[global]", "cert = /run/secrets/pip-ca"]
    if settings.index_url:
        lines.append(f"index-url = {settings.index_url}")
    if settings.extra_index_urls:
        lines.append("extra-index-url = " + " ".join(settings.extra_index_urls))
    if settings.trusted_hosts:
        lines.append("trusted-host = " + " ".join(settings.trusted_hosts))
    return "\n".join(lines) + "\n"


def _filesystem_of(path: Path, mounts: str) -> str:
    """The type of the filesystem `path` lives on, from /proc/self/mounts' text."""
    best, kind = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def secrets_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where secrets dirs may be made, best first: memory-backed `$XDG_RUNTIME_DIR`, then
    `/dev/shm`, then the temp dir (no memory-backed one writable here)."""
    env = os.environ if environ is None else environ
    candidates = [Path(env["XDG_RUNTIME_DIR"])] if env.get("XDG_RUNTIME_DIR") else []
    candidates.append(Path("/dev/shm"))
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        mounts = ""
    roots = [
        path
        for path in candidates
        if path.is_dir()
        and os.access(path, os.W_OK | os.X_OK)
        and _filesystem_of(path.resolve(), mounts) in MEMORY_FILESYSTEMS
    ]
    return [*roots, Path(tempfile.gettempdir())]


def _private_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@contextmanager
def build_secrets(explicit_ca: str | None = None) -> Iterator[dict[str, Path]]:
    """Yield {secret id: file} in a private dir that is removed afterwards, on every path out
    (an error, Ctrl-C, SIGTERM, SIGHUP)."""
    settings = user_pip_settings()
    bundle = ca_bundle(explicit_ca, settings)
    conf_text = pip_conf_text(settings)
    redact.remember_urls(conf_text)
    tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=secrets_roots()[0]))
    try:
        os.chmod(tmp, 0o700)
        conf, ca = tmp / "pip.conf", tmp / "ca.pem"
        _private_file(conf, conf_text.encode())
        _private_file(ca, bundle.read_bytes())
        yield {"pip-ca": ca, "pip-conf": conf}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def owner_pid(directory: Path) -> int | None:
    """The ID of the process that made a secrets dir, from its name."""
    match = _OWNED.match(directory.name)
    return int(match["pid"]) if match else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def stale_secrets_dirs(roots: list[Path] | None = None) -> list[Path]:
    """Secrets dirs whose process is gone (a run killed outright): nothing else removes them."""
    found = []
    for root in dict.fromkeys(secrets_roots() if roots is None else roots):
        for path in sorted(root.glob(f"{PREFIX}*")) if root.is_dir() else []:
            pid = owner_pid(path)
            if pid is not None and path.is_dir() and not process_alive(pid):
                found.append(path)
    return found
