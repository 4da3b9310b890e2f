"""`vllm-forge bump`: move the pins of versions.toml to the newest ones that keep the profile's promise.

This package's `__init__` is light on purpose: the CLI builds its parser from `add_arguments`
on a stock python3 (`vllm-forge setup` runs before anything is installed), so the options here
need the standard library only; the command itself (`command`) imports tomlkit, requests and
packaging when it runs.

The modules: `command` (plan, write, re-lock), `registry` (the OCI registry client), `cudatags`
(which tag next), `pyindex` (the simple-index client), `solve` (which vLLM/torch/FlashInfer),
`http` (their one policy: retries, deadlines, size caps, redirects), `workflow` (what the monthly
GitHub workflow runs).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..project import Project


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """bump's own options; --pins and --profile come from the CLI's common options."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    mode.add_argument("--check", action="store_true", help="exit 9 if outdated, write nothing")
    mode.add_argument(
        "--for-pr",
        metavar="DIR",
        help="what the monthly workflow runs: bump and re-lock if outdated, then write DIR/outputs"
        " (GitHub step outputs: outdated, paths, body-path) and DIR/body.md; exit 0 either way",
    )
    parser.add_argument(
        "--allow-minor",
        action="store_true",
        help="let the bases move to a newer CUDA minor, with [cuda].version and torch",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--images-only", action="store_true", help="only the base images")
    only.add_argument("--packages-only", action="store_true", help="only vLLM, torch, FlashInfer")


def run(project: Project, args: argparse.Namespace, **clients: object) -> int:
    """The command (`command.run`), imported only when bump runs."""
    try:
        from . import command
    except ImportError as exc:
        raise ConfigError(
            f"bump needs {exc.name or 'its dependencies'}, which this Python lacks: install vllm-forge (pip install .)"
            " or run it through nox (`nox -s bump`)"
        ) from None
    return command.run(project, args, **clients)  # type: ignore[arg-type]
