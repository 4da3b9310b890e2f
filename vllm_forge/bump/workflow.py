"""What the monthly bump workflow (.github/workflows/bump.yml) runs: `vllm-forge bump --for-pr DIR`.

One pass: plan; if nothing is outdated, say so; else write versions.toml and re-lock every stale
profile, exactly as `vllm-forge bump` does (a lock that cannot be made fails the run with its own
exit code, and no pull request is opened). Then it writes what the workflow needs, so that the
workflow itself stays a few lines with no logic to test:

- `DIR/outputs`: GitHub step outputs (`cat DIR/outputs >> "$GITHUB_OUTPUT"`): `outdated`
  (true/false), `paths` (every file the bump changed, versions.toml and the re-written locks,
  relative to the project root: the pull request's `add-paths`) and `body-path`;
- `DIR/body.md`: the pull request's text: the changelog and the notes a person must act on.

Exit 0 when nothing is outdated and after a complete bump; 9 when a pin needs a person and bump
could change nothing (a deleted tag without successor); any failure is the CLI's one line and
exit code (registry 6, index 7, bad pins 2, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import lock, pins, redact, sources
from ..errors import OutdatedError
from ..project import Project
from . import command
from .pyindex import SimpleIndex
from .registry import RegistryClient


def tracked_files(project: Project) -> list[Path]:
    """The files a bump may rewrite: the pins file, and every profile's lock, build lock and
    source pins."""
    names = pins.profile_names(pins.read_document(project.pins_file))
    locks = [project.lock_path(n) for name in names for n in (name, lock.build_lock_name(name))]
    source_pins = [project.lock_dir / sources.pins_file_name(name) for name in names]
    return [project.pins_file, *locks, *source_pins]


def _contents(paths: list[Path]) -> dict[Path, bytes | None]:
    return {path: path.read_bytes() if path.is_file() else None for path in paths}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def body(plan: command.Plan, paths: list[str]) -> str:
    lines = [
        "`nox -s bump` moved these pins (old → new, with digests) and re-locked the profiles:",
        "",
        "```",
        command.changelog(plan).rstrip("\n"),
        "```",
        "",
        "Files: " + ", ".join(f"`{p}`" for p in paths) + ".",
    ]
    if plan.notes:
        lines += ["", "A person must act on these before merging:", ""]
        lines += [f"- {note}" for note in plan.notes]
    lines += ["", "Build and verify before merging (`nox -s slim verify`)."]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, *, outdated: bool, paths: list[str], body_text: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    body_path = out_dir / "body.md"
    redact.write_text(body_path, body_text)
    marker = "EOF_VLLM_FORGE_PATHS"
    outputs = [f"outdated={'true' if outdated else 'false'}", f"paths<<{marker}", *paths, marker]
    outputs.append(f"body-path={body_path.resolve()}")
    (out_dir / "outputs").write_text("\n".join(outputs) + "\n")


def for_pr(
    project: Project,
    args: argparse.Namespace,
    out_dir: Path,
    *,
    registry: RegistryClient | None = None,
    index: SimpleIndex | None = None,
) -> int:
    """Bump for a pull request; see the module's docstring."""
    for stale in (out_dir / "outputs", out_dir / "body.md"):  # never leave a former run's
        stale.unlink(missing_ok=True)
    files = tracked_files(project)
    before = _contents(files)
    text, plan, new_text = command.prepare(project, args, registry=registry, index=index)
    sys.stdout.write(command.changelog(plan))
    outdated = bool(plan.changes) or plan.attention > 0
    if new_text != text:
        command.write_atomic(project.pins_file, new_text)
        print(f"wrote {project.pins_file}")
        command.relock(project)
    after = _contents(files)
    changed = [_relative(p, project.root) for p in files if after[p] != before[p]]
    write_outputs(out_dir, outdated=bool(changed), paths=changed, body_text=body(plan, changed))
    if outdated and not changed:  # e.g. a deleted tag with no successor: no PR can fix it
        raise OutdatedError(
            f"{plan.attention} pin(s) need a person and bump changed nothing: see the notes above"
        )
    verdict = f"{len(changed)} file(s) changed" if changed else "nothing to propose"
    print(f"bump --for-pr: {verdict}; outputs in {os.path.relpath(out_dir / 'outputs')}")
    return 0
