"""`vllm-forge bump`: move the pins of versions.toml to the newest ones that keep the profile's promise.

Images: the same `nvidia/cuda` suffix and CUDA minor, highest patch, digest re-resolved (a
re-pushed tag is an update). Packages: the newest vLLM whose exact torch pin is a build for the
profile's CUDA on its Python, with the torchvision/torchaudio/FlashInfer versions vLLM pins.
The file is validated as the renderer validates it (`pins.resolve`) and everything is decided
before anything is written; the file is replaced atomically, with comments and layout kept
(tomlkit), and the locks follow. `--dry-run` prints the diff, `--check` only reports.

The modules: `registry` (the OCI registry client), `cudatags` (which tag next), `pyindex` (the
simple-index client), `solve` (which vLLM/torch/FlashInfer), `http` (their one retry policy).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from .. import lock, pins, pipconfig
from ..errors import ConfigError, ForgeError, OutdatedError
from ..pins import ImageRef, Pins
from ..project import Project
from .cudatags import choose_tag, decide, parse_cuda_tag
from .pyindex import SimpleIndex
from .registry import RegistryClient
from .solve import Solution, Target, solve

TablePath = tuple[str, ...]
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True, kw_only=True)
class Change:
    """One pin to rewrite: where it lives, old and new value, and why (for the changelog)."""

    table: TablePath
    key: str
    old: str
    new: str
    reason: str = ""

    @property
    def where(self) -> str:
        return ".".join((*self.table, self.key))


@dataclass(frozen=True, kw_only=True)
class Plan:
    changes: tuple[Change, ...]
    notes: tuple[str, ...]  # things a person must look at (deleted tags, hand-kept revisions)
    info: tuple[str, ...] = ()  # what was consulted and chosen, and what was refused
    attention: int = 0  # how many notes mean "outdated" for --check


# ---------------------------------------------------------------------------- the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """bump's own options; --pins and --profile come from the CLI's common options."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    mode.add_argument("--check", action="store_true", help="exit 9 if outdated, write nothing")
    parser.add_argument("--allow-minor", action="store_true", help="let images move CUDA minor")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--images-only", action="store_true", help="only the base images")
    only.add_argument("--packages-only", action="store_true", help="only vLLM, torch, FlashInfer")


def run(
    project: Project,
    args: argparse.Namespace,
    *,
    registry: RegistryClient | None = None,
    index: SimpleIndex | None = None,
) -> int:
    """Plan, print the changelog, then write the file and re-lock (or only report)."""
    path = project.pins_file
    text, doc = load(path)
    plan = make_plan(
        doc.unwrap(),
        args.profile,
        images=not args.packages_only,
        packages=not args.images_only,
        allow_minor=args.allow_minor,
        registry=registry,
        index=index,
    )
    new_text = apply(doc, plan.changes)
    sys.stdout.write(changelog(plan))
    if args.check:
        outdated = len(plan.changes) + plan.attention
        if outdated:
            raise OutdatedError(f"{outdated} pin(s) of {path} need attention: run `nox -s bump`")
        return 0
    if args.dry_run:
        sys.stdout.write(unified_diff(text, new_text, path))
        return 0
    if new_text != text:
        write_atomic(path, new_text)
        print(f"wrote {path}")
        relock(project)
    return 0


def relock(project: Project) -> None:
    """The locks follow the pins: re-resolve every profile whose lock went stale."""
    try:
        lock.refresh(project)
    except ForgeError as error:
        print(
            f"bump: {project.pins_file} is updated but the locks are not ({error.message}); "
            "run `nox -s lock` before building",
            file=sys.stderr,
        )


# ---------------------------------------------------------------------------- the file
def load(path: Path) -> tuple[str, tomlkit.TOMLDocument]:
    """The text and its tomlkit document: the document knows where each key is written."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; pass --pins PATH") from None
    try:
        return text, tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it and run again") from None


def validate(doc: dict[str, Any], profile: str | None) -> Pins:
    """`pins.resolve`: every check the renderer makes, so bump refuses what render refuses.

    One difference: an image pinned by tag alone is what bump is for (it pins the digest), so
    such a tag stands in with a placeholder digest here; the Pins' image digests are not used.
    """
    checked = copy.deepcopy(doc)
    for table, key, raw in image_sites(doc):
        if "@" not in raw:
            node: Any = checked
            for part in table:
                node = node[part]
            node[key] = f"{raw}@{_PLACEHOLDER_DIGEST}"
    return pins.resolve(checked, profile)


def home(doc: dict[str, Any], profile: str, table: str, key: str) -> TablePath:
    """Where `profile` takes `table.key` from: its own table if it overrides the key."""
    if key in doc.get("profiles", {}).get(profile, {}).get(table, {}):
        return ("profiles", profile, table)
    return (table,)


def apply(doc: tomlkit.TOMLDocument, changes: Sequence[Change]) -> str:
    for change in changes:
        node: Any = doc
        for part in change.table:
            node = node[part]
        node[change.key] = change.new
    return tomlkit.dumps(doc)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a crash leaves either the old or the new file."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- images
def _key_name(table: TablePath, key: str) -> str:
    return f"[{'.'.join(table)}].{key}"


def image_sites(doc: dict[str, Any]) -> list[tuple[TablePath, str, str]]:
    """Every image pin the bump owns: top-level [images] and the profiles' own, not localhost/."""
    tables = [(("images",), doc.get("images"))]
    profiles = doc.get("profiles")
    if isinstance(profiles, dict):
        tables += [
            (("profiles", name, "images"), profile.get("images"))
            for name, profile in profiles.items()
            if isinstance(profile, dict)
        ]
    return [
        (path, key, ref)
        for path, table in tables
        if isinstance(table, dict)
        for key, ref in table.items()
        if isinstance(ref, str) and not ref.startswith("localhost/")
    ]


def plan_images(
    doc: dict[str, Any], client: RegistryClient, *, allow_minor: bool
) -> tuple[list[Change], list[str]]:
    sites = []
    for table, key, raw in image_sites(doc):  # every pin is checked before the first request
        ref = ImageRef.parse(raw, _key_name(table, key), need_digest=False)
        if parse_cuda_tag(ref.tag) is None:
            raise ConfigError(
                f"{_key_name(table, key)}: tag {ref.tag!r} is not a CUDA version tag (like"
                " 12.8.1-devel-ubuntu24.04); the bump cannot move it: move it by hand"
            )
        sites.append((table, key, ref))
    changes: list[Change] = []
    notes: list[str] = []
    tag_lists: dict[tuple[str, str], list[str]] = {}
    digests: dict[tuple[str, str, str], str | None] = {}
    for table, key, ref in sites:
        repo = (ref.registry, ref.repository)
        if repo not in tag_lists:
            tag_lists[repo] = client.list_tags(ref)
        tags = tag_lists[repo]
        chosen = choose_tag(ref.tag, tags, allow_minor=allow_minor)
        if chosen is not None and (*repo, chosen) not in digests:
            digests[(*repo, chosen)] = client.digest(ref, chosen)
        decision = decide(
            current_tag=ref.tag,
            current_digest=ref.digest or "",
            current_listed=ref.tag in tags,
            chosen_tag=chosen,
            chosen_digest=digests.get((*repo, chosen)) if chosen else None,
        )
        if decision.changed:
            new = ref.with_tag(decision.tag, decision.digest).raw
            changes.append(
                Change(table=table, key=key, old=ref.raw, new=new, reason=decision.reason)
            )
        elif decision.reason != "current":
            notes.append(f"{'.'.join((*table, key))}: {decision.reason}")
    return changes, notes


# ---------------------------------------------------------------------------- packages
def plan_packages(
    doc: dict[str, Any], resolved: Pins, index: SimpleIndex
) -> tuple[list[Change], list[str], Solution]:
    target = Target.of(resolved)
    need_sdist = resolved.vllm.source == "sdist"
    solution = solve(
        index,
        target,
        flashinfer_packages=list(resolved.flashinfer.packages),
        need_sdist=need_sdist,
        stop_at=resolved.vllm.version,
    )
    wanted = [
        ("vllm", "version", resolved.vllm.version, solution.vllm, f"newest vLLM for CUDA {target.cuda}"),
        ("torch", "version", resolved.torch.version, solution.torch, solution.torch_cuda_requirement),
        ("torch", "torchvision", resolved.torch.torchvision, solution.torchvision, "pinned by vLLM"),
        ("torch", "torchaudio", resolved.torch.torchaudio, solution.torchaudio, "pinned by vLLM"),
        ("flashinfer", "version", resolved.flashinfer.version, solution.flashinfer, "pinned by vLLM"),
        ("vllm", "sdist_sha256", resolved.vllm.sdist_sha256, solution.vllm_sdist_sha256 or None, "from index"),
    ]  # fmt: skip
    changes = [
        Change(table=home(doc, resolved.profile, table, key), key=key, old=old, new=new, reason=why)
        for table, key, old, new, why in wanted
        if new is not None and new != old
    ]
    return changes, _hand_notes(resolved, changes), solution


def _hand_notes(resolved: Pins, changes: Sequence[Change]) -> list[str]:
    """Git revisions cannot be resolved offline: say which ones a person must move."""
    moved = {(c.table[-1], c.key): c for c in changes}
    notes = []
    for table, pinned in (("flashinfer", resolved.flashinfer), ("vllm", resolved.vllm)):
        change = moved.get((table, "version"))
        if change and pinned.revision:
            tag = f"v{change.new}"
            notes.append(
                f"{table}.revision is still {pinned.revision} (v{change.old}); set it by hand to"
                f" the commit of tag {tag}: git ls-remote {pinned.git_url} refs/tags/{tag}"
            )
    return notes


def _choice(resolved: Pins, index_url: str, solution: Solution) -> list[str]:
    target = Target.of(resolved)
    return [
        f"profile {resolved.profile}: Python {target.python}, CUDA {target.cuda},"
        f" {resolved.python_platform}; index {index_url}",
        f"chosen: vllm {solution.vllm}, torch {solution.torch} ({solution.torch_cuda_requirement}),"
        f" torchvision {solution.torchvision}, torchaudio {solution.torchaudio},"
        f" flashinfer {solution.flashinfer}",
    ]


def _refusals(solution: Solution) -> list[str]:
    """Newer vLLM releases that were refused, grouped by reason."""
    by_reason: dict[str, list[str]] = {}
    for line in solution.skipped:
        version, _, reason = line.removeprefix("vllm ").partition(": ")
        by_reason.setdefault(reason, []).append(version)
    return [
        f"refused vllm {', '.join(reversed(versions))}: {reason}"
        for reason, versions in by_reason.items()
    ]


# ---------------------------------------------------------------------------- the plan
def make_plan(
    doc: dict[str, Any],
    profile: str | None,
    *,
    images: bool = True,
    packages: bool = True,
    allow_minor: bool = False,
    registry: RegistryClient | None = None,
    index: SimpleIndex | None = None,
) -> Plan:
    """Everything bump would change in `doc` (a plain dict), decided before anything is written."""
    resolved = validate(doc, profile)
    changes: list[Change] = []
    notes: list[str] = []
    attention = 0
    info: list[str] = []
    if images:
        image_changes, image_notes = plan_images(
            doc, registry or RegistryClient(), allow_minor=allow_minor
        )
        changes += image_changes
        notes += image_notes
        attention += len(image_notes)
    if packages:
        index_url = resolved.torch.index_url or pipconfig.index_url()
        package_changes, hand_notes, solution = plan_packages(
            doc, resolved, index or SimpleIndex(index_url)
        )
        changes += package_changes
        notes += hand_notes
        info += [*_choice(resolved, index_url, solution), *_refusals(solution)]
    return Plan(changes=tuple(changes), notes=tuple(notes), info=tuple(info), attention=attention)


# ---------------------------------------------------------------------------- output
def changelog(plan: Plan) -> str:
    if not plan.changes:
        lines = ["all pins are current"]
    else:
        width = max(len(c.where) for c in plan.changes)
        lines = [
            f"{c.where:<{width}}  {c.old} → {c.new}" + (f"  ({c.reason})" if c.reason else "")
            for c in plan.changes
        ]
    return "\n".join([*plan.info, *lines, *(f"note: {n}" for n in plan.notes)]) + "\n"


def unified_diff(old: str, new: str, path: Path) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{path.name}",
            tofile=f"b/{path.name}",
        )
    )
