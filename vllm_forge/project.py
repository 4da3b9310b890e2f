"""The one place that knows where the project's files live.

A `Project` is made once per command from `--pins` (and `--lock-dir`) and handed down; no other
module computes a path from `__file__` or the current directory.

- the pins file, and its directory, the project root: `build/` goes there;
- the lock directory: beside the package in a checkout (the locks belong to the checkout's
  versions.toml), else `locks/` beside the pins file; the locks shipped in the package are read
  too, so an installed tool builds from a copy of the project's own versions.toml;
- the resources shipped with the package: the Dockerfile template, the probe's sources, the
  scripts the build context needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGED_LOCKS = PACKAGE_DIR / "locks"


def _templates_dir() -> Path:
    """Installed: package data (vllm_forge/templates); in a checkout: the top-level templates/."""
    for candidate in (PACKAGE_DIR / "templates", PACKAGE_DIR.parent / "templates"):
        if (candidate / "Dockerfile.j2").is_file():
            return candidate
    raise ConfigError(
        f"the Dockerfile template is missing from {PACKAGE_DIR}: reinstall vllm-forge"
    )


@dataclass(frozen=True, kw_only=True)
class Project:
    pins_file: Path
    lock_dir: Path

    @classmethod
    def at(cls, pins: str | Path = "versions.toml", lock_dir: str | Path | None = None) -> Project:
        """The project whose pins are `pins`; a ConfigError if that is not a readable file."""
        pins_file = Path(pins).expanduser().resolve()
        if pins_file.is_dir():
            raise ConfigError(f"--pins {pins}: is a directory; pass the versions.toml file in it")
        if not pins_file.is_file():
            raise ConfigError(
                f"--pins {pins}: not found; run from the project root or pass --pins PATH"
            )
        if lock_dir is not None:
            locks = Path(lock_dir).expanduser().resolve()
        elif pins_file.parent == PACKAGE_DIR.parent:
            locks = PACKAGED_LOCKS  # a checkout: its locks are the package's own
        else:
            locks = pins_file.parent / "locks"
        return cls(pins_file=pins_file, lock_dir=locks)

    @property
    def root(self) -> Path:
        return self.pins_file.parent

    # ---- generated output ------------------------------------------------------------------

    @property
    def build(self) -> Path:
        return self.root / "build"

    def context(self, profile: str) -> Path:
        return self.build / profile / "context"

    @property
    def logs(self) -> Path:
        return self.build / "logs"

    @property
    def reports(self) -> Path:
        return self.build / "reports"

    @property
    def base_work(self) -> Path:
        """mmdebstrap tarballs and their records."""
        return self.build / "base"

    @property
    def lock_work(self) -> Path:
        """uv's requirement files while locking."""
        return self.build / "lock"

    @property
    def cache(self) -> Path:
        """Host-side tools fetched from the index (cuobjdump, nvcc for the probe tests)."""
        return self.build / ".cache"

    # ---- locks ------------------------------------------------------------------------------

    def lock_path(self, profile: str) -> Path:
        """Where `lock` writes the profile's lock."""
        return self.lock_dir / f"{profile}.txt"

    def lock_candidates(self, profile: str) -> list[Path]:
        """Where a profile's lock is looked for: the lock dir, then the package's own locks."""
        paths = [self.lock_path(profile), PACKAGED_LOCKS / f"{profile}.txt"]
        return list(dict.fromkeys(paths))

    # ---- resources shipped with the package -------------------------------------------------

    @property
    def templates(self) -> Path:
        return _templates_dir()

    @property
    def probe_sources(self) -> Path:
        return PACKAGE_DIR / "probe"

    @property
    def context_scripts(self) -> Path:
        return PACKAGE_DIR / "scripts"
