"""The user's pip settings, read the way pip reads them, with the standard library only.

Used by the bump's index client, by `lock` (uv's index) and by the build secrets (the pip.conf a
build sees). pip's rules (pip/_internal/configuration.py and cli/parser.py):

- files, later overriding earlier for the same `section.key`: global (`$XDG_CONFIG_DIRS/pip/
  pip.conf`, default `/etc/xdg/pip/pip.conf`, then `/etc/pip.conf`), user (`~/.pip/pip.conf`,
  then `$XDG_CONFIG_HOME/pip/pip.conf`, default `~/.config/pip/pip.conf`; skipped when
  `PIP_CONFIG_FILE` names an existing file), site (`$VIRTUAL_ENV/pip.conf`, else this
  interpreter's prefix), then the file `PIP_CONFIG_FILE` names. `PIP_CONFIG_FILE=/dev/null`
  turns every file off;
- then sections: `[global]`, then the command's own (`[install]`, `[download]`, ...) over it,
  then the `PIP_*` environment variables (`PIP_INDEX_URL` is `index-url`) over both. So an
  `[install]` value in the global file beats a `[global]` value in the user file, as in pip;
- empty values count as unset; list options (`extra-index-url`, `trusted-host`) are
  whitespace-separated, one or several lines.
"""

from __future__ import annotations

import configparser
import locale
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError

ETC = Path("/etc")  # pip's fixed system directory, after the XDG ones
_IGNORED_ENV = {"version", "help", "config-file"}  # PIP_* variables that are not settings


def config_files(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The files pip reads, lowest precedence first (whether or not they exist)."""
    env = os.environ if environ is None else environ
    explicit = env.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:
        return []
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    xdg_dirs = [d for d in env.get("XDG_CONFIG_DIRS", "").split(os.pathsep) if d]
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs or [str(ETC / "xdg")]]
    files.append(ETC / "pip.conf")
    if not (explicit and Path(explicit).exists()):
        xdg_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
        files += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    files.append(Path(env.get("VIRTUAL_ENV") or sys.prefix) / "pip.conf")
    if explicit:
        files.append(Path(explicit))
    return files


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").removeprefix("--")


def _read(path: Path) -> dict[str, str]:
    """{"section.key": value} of one file; nothing if it does not exist or cannot be opened."""
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding=locale.getpreferredencoding(False))
    except (configparser.Error, UnicodeDecodeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"pip configuration {path} cannot be read ({first}); fix it, or set"
            " PIP_CONFIG_FILE=/dev/null to ignore every pip configuration file"
        ) from None
    return {
        f"{section}.{_normalize(key)}": value
        for section in parser.sections()
        for key, value in parser.items(section)
    }


def settings(
    environ: Mapping[str, str] | None = None, *, command: str = "install"
) -> dict[str, str]:
    """Every setting pip's `command` would see, as {key: raw value} ("index-url": "...")."""
    env = os.environ if environ is None else environ
    merged: dict[str, str] = {}
    for path in config_files(env):
        merged.update(_read(path))
    for name, value in env.items():
        if name.startswith("PIP_") and _normalize(name[4:]) not in _IGNORED_ENV:
            merged[f":env:.{_normalize(name[4:])}"] = value
    found: dict[str, str] = {}
    for section in ("global", command, ":env:"):
        prefix = f"{section}."
        for section_key, value in merged.items():
            if section_key.startswith(prefix) and value.strip():
                found[section_key.removeprefix(prefix)] = value.strip()
    return found


def index_url(environ: Mapping[str, str] | None = None) -> str:
    """The index pip would install from: the configured `index-url`, else pip's default."""
    configured = settings(environ).get("index-url", "").split()
    return configured[0] if configured else pip_default_index()


def pip_default_index() -> str:
    """pip's own default index, asked of pip itself when nothing is configured (no index host
    is written in this project). pip has no public API for it: its models module is the
    one place that knows; a Python without pip gets one line saying what to set."""
    try:
        from pip._internal.models.index import PyPI
    except ImportError:
        raise ConfigError(
            "no package index is configured, and pip is not importable to name its default: "
            "set PIP_INDEX_URL (or index-url in pip.conf)"
        ) from None
    return PyPI.simple_url
