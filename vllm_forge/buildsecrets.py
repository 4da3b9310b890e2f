"""Build secrets: the TLS trust bundle and pip's index settings reach the build as secret mounts.

Nothing here is ever written into the build context or an image layer. The index settings are
the user's own (environment, then `pip config`); with none, pip's default index applies inside
the build as well.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import pipconfig
from .errors import ConfigError

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


@contextmanager
def build_secrets(explicit_ca: str | None = None):
    """Yield {secret id: file} in a private temp dir that is removed afterwards."""
    settings = user_pip_settings()
    bundle = ca_bundle(explicit_ca, settings)
    with tempfile.TemporaryDirectory(prefix="vllm-forge-secrets-") as tmp:
        os.chmod(tmp, 0o700)
        conf = Path(tmp, "pip.conf")
        conf.write_text(pip_conf_text(settings))
        ca = Path(tmp, "ca.pem")
        ca.write_bytes(bundle.read_bytes())
        yield {"pip-ca": ca, "pip-conf": conf}
