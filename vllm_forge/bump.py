"""`nox -s bump`: move the pins of versions.toml to the newest ones that keep the profile's promise.

Images: the same `nvidia/cuda` suffix and CUDA minor, highest patch, digest re-resolved (a
re-pushed tag is an update). Packages: the newest vLLM whose exact torch pin is a build for the
profile's CUDA on its Python, with the torchvision/torchaudio/FlashInfer versions vLLM pins.
Everything is decided before anything is written; the file is replaced atomically, with
comments and layout kept (tomlkit). `--dry-run` prints the diff, `--check` only reports.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import tomlkit
from tomlkit.exceptions import TOMLKitError

from . import lock
from .cudatags import choose_tag, decide
from .errors import ConfigError, ForgeError, OutdatedError
from .pyindex import SimpleIndex, index_url_from_pip
from .registry import RegistryClient, parse_ref
from .solve import Solution, Target, solve

LOCAL_PREFIX = "localhost/"
TablePath = tuple[str, ...]


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


@dataclass(frozen=True, kw_only=True)
class Options:
    file: Path
    profile: str | None
    dry_run: bool
    check: bool
    allow_minor: bool
    images: bool
    packages: bool


# ---------------------------------------------------------------------------- options
def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="nox -s bump --", description="Update the pins of versions.toml."
    )
    parser.add_argument("--profile", help="profile whose Python/CUDA decide (default: the file's)")
    parser.add_argument("--file", type=Path, default=Path("versions.toml"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    mode.add_argument("--check", action="store_true", help="exit 9 if outdated, write nothing")
    parser.add_argument("--allow-minor", action="store_true", help="let images move CUDA minor")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--images-only", action="store_true")
    only.add_argument("--packages-only", action="store_true")
    args = parser.parse_args(list(argv))
    return Options(
        file=args.file,
        profile=args.profile,
        dry_run=args.dry_run,
        check=args.check,
        allow_minor=args.allow_minor,
        images=not args.packages_only,
        packages=not args.images_only,
    )


# ---------------------------------------------------------------------------- the file
def load(path: Path) -> tuple[str, tomlkit.TOMLDocument]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; pass --file PATH") from None
    try:
        return text, tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it and run again") from None


def profile_name(doc: dict[str, Any], requested: str | None) -> str:
    name = requested or doc.get("project", {}).get("default_profile", "")
    if name not in doc.get("profiles", {}):
        known = ", ".join(doc.get("profiles", {})) or "none"
        raise ConfigError(f"profile {name!r} is not in the file (known: {known})")
    return name


def home(doc: dict[str, Any], profile: str, table: str, key: str) -> TablePath:
    """Where `profile` takes `table.key` from: its own table if it overrides the key."""
    if key in doc["profiles"][profile].get(table, {}):
        return ("profiles", profile, table)
    return (table,)


def value(doc: dict[str, Any], path: TablePath, key: str, default: Any = "") -> Any:
    node: Any = doc
    for part in path:
        node = node.get(part, {})
    return node.get(key, default)


def effective(doc: dict[str, Any], profile: str, table: str, key: str, default: Any = "") -> Any:
    return value(doc, home(doc, profile, table, key), key, default)


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
def image_sites(doc: dict[str, Any]) -> list[tuple[TablePath, str, str]]:
    """Every pinned image ref the bump owns: top-level [images] and profiles' non-local ones."""
    sites = [(("images",), key, ref) for key, ref in doc.get("images", {}).items()]
    for name, profile in doc.get("profiles", {}).items():
        for key, ref in profile.get("images", {}).items():
            sites.append((("profiles", name, "images"), key, ref))
    return [(t, k, r) for t, k, r in sites if isinstance(r, str) and not r.startswith(LOCAL_PREFIX)]


def plan_images(
    doc: dict[str, Any], client: RegistryClient, *, allow_minor: bool
) -> tuple[list[Change], list[str]]:
    changes: list[Change] = []
    notes: list[str] = []
    tag_lists: dict[tuple[str, str], list[str]] = {}
    digests: dict[tuple[str, str, str], str | None] = {}
    for table, key, text in image_sites(doc):
        ref = parse_ref(text)
        repo = (ref.host, ref.repository)
        if repo not in tag_lists:
            tag_lists[repo] = client.list_tags(ref)
        tags = tag_lists[repo]
        chosen = choose_tag(ref.tag, tags, allow_minor=allow_minor)
        if chosen is not None and (*repo, chosen) not in digests:
            digests[(*repo, chosen)] = client.digest(ref, chosen)
        decision = decide(
            current_tag=ref.tag,
            current_digest=ref.digest,
            current_listed=ref.tag in tags,
            chosen_tag=chosen,
            chosen_digest=digests.get((*repo, chosen)) if chosen else None,
        )
        where = ".".join((*table, key))
        if decision.changed:
            new = str(ref.with_tag(decision.tag, decision.digest))
            changes.append(Change(table=table, key=key, old=text, new=new, reason=decision.reason))
        elif decision.reason != "current":
            notes.append(f"{where}: {decision.reason}")
    return changes, notes


# ---------------------------------------------------------------------------- packages
def plan_packages(
    doc: dict[str, Any], profile: str, index: SimpleIndex
) -> tuple[list[Change], list[str], Solution]:
    platform = str(effective(doc, profile, "python", "platform", "x86_64-manylinux_2_39"))
    machine, _, glibc = platform.partition("-manylinux_")
    major, _, minor = glibc.partition("_")
    target = Target(
        python=str(effective(doc, profile, "python", "version")),
        cuda=str(effective(doc, profile, "cuda", "version")),
        machine=machine,
        glibc=(int(major), int(minor)),
    )
    need_sdist = effective(doc, profile, "vllm", "source") == "sdist"
    current_vllm = str(effective(doc, profile, "vllm", "version")) or None
    solution = solve(
        index,
        target,
        flashinfer_packages=list(effective(doc, profile, "flashinfer", "packages", [])),
        need_sdist=need_sdist,
        stop_at=current_vllm,
    )
    wanted = [
        ("vllm", "version", solution.vllm, f"newest vLLM for CUDA {target.cuda}"),
        ("torch", "version", solution.torch, solution.torch_cuda_requirement),
        ("torch", "torchvision", solution.torchvision, "pinned by vLLM"),
        ("torch", "torchaudio", solution.torchaudio, "pinned by vLLM"),
        ("flashinfer", "version", solution.flashinfer, "pinned by vLLM"),
    ]
    if need_sdist or "sdist_sha256" in doc.get("vllm", {}):
        wanted.append(("vllm", "sdist_sha256", solution.vllm_sdist_sha256 or None, "from index"))
    changes = []
    for table, key, new, reason in wanted:
        path = home(doc, profile, table, key)
        old = str(value(doc, path, key))
        if new is not None and new != old:
            changes.append(Change(table=path, key=key, old=old, new=new, reason=reason))
    return changes, _hand_notes(doc, profile, changes), solution


def _hand_notes(doc: dict[str, Any], profile: str, changes: Sequence[Change]) -> list[str]:
    """Git revisions cannot be resolved offline: say which ones a person must move."""
    moved = {(c.table[-1], c.key): c for c in changes}
    notes = []
    for table, tag_prefix in (("flashinfer", "v"), ("vllm", "v")):
        change = moved.get((table, "version"))
        revision = effective(doc, profile, table, "revision")
        if change and revision:
            url = effective(doc, profile, table, "git_url")
            notes.append(
                f"{table}.revision is still {revision} (v{change.old}); set it by hand to the"
                f" commit of tag {tag_prefix}{change.new}: git ls-remote {url}"
                f" refs/tags/{tag_prefix}{change.new}"
            )
    return notes


def _choice(doc: dict[str, Any], profile: str, index_url: str, solution: Solution) -> list[str]:
    python = effective(doc, profile, "python", "version")
    cuda = effective(doc, profile, "cuda", "version")
    return [
        f"profile {profile}: Python {python}, CUDA {cuda}, linux x86_64; index {index_url}",
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


# ---------------------------------------------------------------------------- main
def make_plan(
    doc: dict[str, Any],
    options: Options,
    *,
    registry: RegistryClient | None = None,
    index: SimpleIndex | None = None,
) -> Plan:
    profile = profile_name(doc, options.profile)
    changes: list[Change] = []
    notes: list[str] = []
    attention = 0
    info: list[str] = []
    if options.images:
        image_changes, image_notes = plan_images(
            doc, registry or RegistryClient(), allow_minor=options.allow_minor
        )
        changes += image_changes
        notes += image_notes
        attention += len(image_notes)
    if options.packages:
        index_url = effective(doc, profile, "torch", "index_url") or index_url_from_pip()
        package_changes, hand_notes, solution = plan_packages(
            doc, profile, index or SimpleIndex(index_url, requests.Session())
        )
        changes += package_changes
        notes += hand_notes
        info += [*_choice(doc, profile, index_url, solution), *_refusals(solution)]
    return Plan(changes=tuple(changes), notes=tuple(notes), info=tuple(info), attention=attention)


def run(options: Options, **clients: Any) -> int:
    text, doc = load(options.file)
    plan = make_plan(doc.unwrap(), options, **clients)
    new_text = apply(doc, plan.changes)
    sys.stdout.write(changelog(plan))
    if options.check:
        outdated = len(plan.changes) + plan.attention
        if outdated:
            raise OutdatedError(
                f"{outdated} pin(s) of {options.file} need attention: run `nox -s bump`"
            )
        return 0
    if options.dry_run:
        sys.stdout.write(unified_diff(text, new_text, options.file))
        return 0
    if new_text != text:
        write_atomic(options.file, new_text)
        print(f"wrote {options.file}")
        relock(options.file)
    return 0


def relock(path: Path) -> None:
    """The locks follow the pins: re-resolve every profile whose lock went stale.

    Only for the project's own versions.toml: the locks in the package belong to it.
    """
    if path.resolve() != lock.LOCK_DIR.parents[1] / "versions.toml":
        print(f"bump: {path} is not the project's versions.toml; locks left alone")
        return
    try:
        lock.refresh(path, path.resolve().parent / "build" / "lock")
    except ForgeError as error:
        print(
            f"bump: {path} is updated but the locks are not ({error.message}); "
            "run `nox -s lock` before building",
            file=sys.stderr,
        )


def main(argv: list[str]) -> int:
    try:
        return run(parse_args(argv))
    except ForgeError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
