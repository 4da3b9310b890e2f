"""`vllm-forge bump`: plan, print the changelog, write versions.toml, re-lock.

Images: the same `nvidia/cuda` suffix and CUDA minor, highest patch, digest re-resolved (a
re-pushed tag is an update). Packages: the newest vLLM whose exact torch pin is a build for the
profile's CUDA on its Python, with the torchvision/torchaudio/FlashInfer versions vLLM pins.

One promise holds before and after: the CUDA of the bases' tags, `[cuda].version` and torch's
CUDA build agree. Pins (or a fresh lock) that contradict it are refused before anything is
asked of a registry; `--allow-minor` moves the bases to a newer CUDA minor only together with
`[cuda].version` and a torch built for it, and otherwise holds them, with a note; and the planned
file is validated, every profile of it, before it is written. The file is replaced atomically,
with comments and layout kept (tomlkit), and the locks follow: a failed re-lock is an error.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
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

from .. import lock, pins, pipconfig, sources
from ..errors import ConfigError, ForgeError, IndexError_, OutdatedError
from ..pins import ImageRef, Pins
from ..project import Project
from .cudatags import choose_tag, decide, newer_minors, parse_cuda_tag
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
def run(
    project: Project,
    args: argparse.Namespace,
    *,
    registry: RegistryClient | None = None,
    index: SimpleIndex | None = None,
) -> int:
    """Plan, print the changelog, then write the file and re-lock (or only report)."""
    if getattr(args, "for_pr", None):
        from .workflow import for_pr

        return for_pr(project, args, Path(args.for_pr), registry=registry, index=index)
    path = project.pins_file
    text, plan, new_text = prepare(project, args, registry=registry, index=index)
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


def prepare(
    project: Project,
    args: argparse.Namespace,
    *,
    registry: RegistryClient | None = None,
    index: SimpleIndex | None = None,
) -> tuple[str, Plan, str]:
    """(the file's text, the plan, the text it would become): everything checked, nothing written."""
    text, doc = load(project.pins_file)
    plain = doc.unwrap()
    check_locks(project, validate_all(plain))
    plan = make_plan(
        plain,
        args.profile,
        images=not args.packages_only,
        packages=not args.images_only,
        allow_minor=args.allow_minor,
        registry=registry,
        index=index,
    )
    return text, plan, apply(doc, plan.changes)


def relock(project: Project) -> None:
    """The locks follow the pins: re-resolve every profile whose lock went stale. A lock that
    cannot be made fails the bump (its own exit code): the pins are written, the build would
    refuse the stale lock, and a pull request of pins without locks fails the lock test."""
    try:
        lock.refresh(project)
        # vLLM's CMake pins of CUTLASS & co. move with vLLM: re-read them from the new sdist.
        sources.refresh(project, validate_all(load(project.pins_file)[1].unwrap()))
    except ForgeError as error:
        raise type(error)(
            f"{project.pins_file} is updated but the locks are not ({error.message});"
            " run `nox -s lock` before building"
        ) from None


# ---------------------------------------------------------------------------- the file
def load(path: Path) -> tuple[str, tomlkit.TOMLDocument]:
    """The text and its tomlkit document: the document knows where each key is written."""
    text = pins.read_text(path)
    try:
        return text, tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it and run again") from None


def _placeholders(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy where an image pinned by tag alone carries a placeholder digest (bump pins it)."""
    checked = copy.deepcopy(doc)
    for table, key, raw in image_sites(doc):
        if "@" not in raw:
            node: Any = checked
            for part in table:
                node = node[part]
            node[key] = f"{raw}@{_PLACEHOLDER_DIGEST}"
    return checked


def validate_all(doc: dict[str, Any]) -> dict[str, Pins]:
    """`pins.resolve` of every profile: what the renderer refuses, bump refuses, in any profile
    (a pin moved in a shared table moves it for them all).

    One difference: an image pinned by tag alone is what bump is for (it pins the digest), so
    such a tag stands in with a placeholder digest here; the Pins' image digests are not used.
    """
    return pins.resolve_all(_placeholders(doc))


def validate(doc: dict[str, Any], profile: str | None) -> Pins:
    """The pins of `profile` (the default one if None), every profile validated."""
    every = validate_all(doc)
    return pins.resolve(_placeholders(doc), profile) if profile not in every else every[profile]


def check_locks(project: Project, every: dict[str, Pins]) -> None:
    """A fresh lock whose torch is another CUDA's build contradicts the pins: refuse up front."""
    for name, resolved in every.items():
        for path in project.lock_candidates(name):
            text = path.read_text() if path.is_file() else ""
            if lock.lock_digest(text) == lock.inputs_digest(resolved):
                pins.check_lock_cuda(resolved, text, str(path))
                break


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


def applied(doc: dict[str, Any], changes: Sequence[Change]) -> dict[str, Any]:
    """A plain copy of `doc` with the changes made (for validating the plan before writing)."""
    result = copy.deepcopy(doc)
    for change in changes:
        node: Any = result
        for part in change.table:
            node = node[part]
        node[change.key] = change.new
    return result


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


@dataclass(frozen=True, kw_only=True)
class ImageSite:
    table: TablePath
    key: str
    ref: ImageRef
    profiles: tuple[str, ...]  # the profiles that take their image from here


def _sites(doc: dict[str, Any]) -> list[ImageSite]:
    """Every image pin, parsed and checked before the first request."""
    names = pins.profile_names(doc)
    sites = []
    for table, key, raw in image_sites(doc):
        ref = ImageRef.parse(raw, _key_name(table, key), need_digest=False)
        if parse_cuda_tag(ref.tag) is None:
            raise ConfigError(
                f"{_key_name(table, key)}: tag {ref.tag!r} is not a CUDA version tag (like"
                " 12.8.1-devel-ubuntu24.04); the bump cannot move it: move it by hand"
            )
        users = tuple(n for n in names if home(doc, n, "images", key) == table)
        sites.append(ImageSite(table=table, key=key, ref=ref, profiles=users))
    return sites


def plan_images(
    doc: dict[str, Any],
    client: RegistryClient,
    *,
    allow_minor: bool = False,
    cuda_of_site: dict[tuple[TablePath, str], str] | None = None,
    tag_lists: dict[tuple[str, str], list[str]] | None = None,
) -> tuple[list[Change], list[str]]:
    """The image changes: each site stays on the CUDA major.minor `cuda_of_site` gives it (its
    profiles' `[cuda].version` after the bump), else on its own tag's minor (`allow_minor`: any)."""
    tag_lists = {} if tag_lists is None else tag_lists
    changes: list[Change] = []
    notes: list[str] = []
    digests: dict[tuple[str, str, str], str | None] = {}
    for site in _sites(doc):
        ref = site.ref
        repo = (ref.registry, ref.repository)
        if repo not in tag_lists:
            tag_lists[repo] = client.list_tags(ref)
        tags = tag_lists[repo]
        cuda = (cuda_of_site or {}).get((site.table, site.key))
        chosen = choose_tag(ref.tag, tags, allow_minor=allow_minor, cuda=cuda)
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
                Change(table=site.table, key=site.key, old=ref.raw, new=new, reason=decision.reason)
            )
        elif decision.reason != "current":
            notes.append(f"{'.'.join((*site.table, site.key))}: {decision.reason}")
    return changes, notes


def _site_cuda(
    doc: dict[str, Any], every: dict[str, Pins], site: ImageSite, moving: TablePath, to: str
) -> str:
    """The CUDA major.minor a site must carry once `[cuda].version` at `moving` becomes `to`."""
    users = site.profiles or ()
    versions = {
        to if home(doc, name, "cuda", "version") == moving else every[name].cuda_version
        for name in users
    }
    if not versions:  # a table no profile reads: it stays on its own CUDA minor
        return site.ref.cuda or to
    return versions.pop() if len(versions) == 1 else to


def _newer_cuda(
    doc: dict[str, Any],
    every: dict[str, Pins],
    client: RegistryClient,
    moving: TablePath,
    tag_lists: dict[tuple[str, str], list[str]],
) -> str | None:
    """The newest CUDA minor (same major) that every base following `[cuda]` at `moving` has."""
    offered: set[tuple[int, int]] | None = None
    for site in _sites(doc):
        if not any(home(doc, n, "cuda", "version") == moving for n in site.profiles):
            continue
        repo = (site.ref.registry, site.ref.repository)
        if repo not in tag_lists:
            tag_lists[repo] = client.list_tags(site.ref)
        minors = newer_minors(site.ref.tag, tag_lists[repo])
        offered = minors if offered is None else offered & minors
    if not offered:
        return None
    major, minor = max(offered)
    return f"{major}.{minor}"


# ---------------------------------------------------------------------------- packages
def _solve(resolved: Pins, index: SimpleIndex, cuda: str) -> Solution:
    target = dataclasses.replace(Target.of(resolved), cuda=cuda)
    return solve(
        index,
        target,
        flashinfer_packages=list(resolved.flashinfer.packages),
        need_sdist=resolved.vllm.source == "sdist",
        stop_at=resolved.vllm.version if cuda == resolved.cuda_version else None,
    )


def plan_packages(
    doc: dict[str, Any], resolved: Pins, index: SimpleIndex, solution: Solution | None = None
) -> tuple[list[Change], Solution]:
    """The package changes for `resolved`'s profile (the solution, if already found)."""
    solution = solution or _solve(resolved, index, resolved.cuda_version)
    cuda = solution.torch_cuda
    wanted = [
        ("vllm", "version", resolved.vllm.version, solution.vllm, f"newest vLLM for CUDA {cuda}"),
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
    return changes, solution


def _hand_notes(
    doc: dict[str, Any], after: dict[str, Pins], changes: Sequence[Change]
) -> list[str]:
    """Git revisions cannot be resolved offline: say which ones a person must move, only where a
    profile builds from that revision (FlashInfer's jit-cache from source, vLLM from git)."""
    notes: list[str] = []
    for change in changes:
        table = change.table[-1]
        if change.key != "version" or table not in ("flashinfer", "vllm"):
            continue
        users = [
            name
            for name, resolved in after.items()
            if home(doc, name, table, "version") == change.table
            and (
                resolved.builds_flashinfer
                if table == "flashinfer"
                else resolved.vllm.source == "git"
            )
        ]
        revisions = {
            (after[n].flashinfer if table == "flashinfer" else after[n].vllm).revision: n
            for n in users
        }
        for revision, name in revisions.items():
            pinned = after[name].flashinfer if table == "flashinfer" else after[name].vllm
            tag = f"v{change.new}"
            who = ", ".join(users)
            notes.append(
                f"[{table}].revision {revision} is not moved by bump (it cannot read git tags),"
                f" and {who} build{'s' if len(users) == 1 else ''} {table} from it: set it to the"
                f" commit of tag {tag}: git ls-remote {pinned.git_url} refs/tags/{tag}"
            )
    return notes


def _choice(resolved: Pins, cuda: str, index_url: str, solution: Solution) -> list[str]:
    target = Target.of(resolved)
    return [
        f"profile {resolved.profile}: Python {target.python}, CUDA {cuda},"
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
    every = validate_all(doc)
    resolved = validate(doc, profile)
    moving = home(doc, resolved.profile, "cuda", "version")
    cuda = resolved.cuda_version
    changes: list[Change] = []
    notes: list[str] = []
    info: list[str] = []
    attention = 0
    solution: Solution | None = None
    index_url = resolved.torch.index_url or pipconfig.index_url()
    client = registry or RegistryClient()
    the_index = index or SimpleIndex(index_url)
    tag_lists: dict[tuple[str, str], list[str]] = {}
    if images and allow_minor:
        newer = _newer_cuda(doc, every, client, moving, tag_lists)
        if newer is not None and not packages:
            notes.append(
                f"CUDA {newer} bases exist; held at CUDA {cuda}: [cuda].version and torch move"
                " with them, so run `bump --allow-minor` without --images-only"
            )
            attention += 1
        elif newer is not None:
            try:
                solution = _solve(resolved, the_index, newer)
            except IndexError_ as why:
                notes.append(f"CUDA {newer} bases exist; held at CUDA {cuda}: {why.message}")
                attention += 1
            else:
                changes.append(
                    Change(
                        table=moving,
                        key="version",
                        old=cuda,
                        new=newer,
                        reason=f"the bases and torch {solution.torch} move to CUDA {newer}",
                    )
                )
                cuda = newer
    if images:
        cuda_of_site = {
            (site.table, site.key): _site_cuda(doc, every, site, moving, cuda)
            for site in _sites(doc)
        }
        image_changes, image_notes = plan_images(
            doc, client, cuda_of_site=cuda_of_site, tag_lists=tag_lists
        )
        changes += image_changes
        notes += image_notes
        attention += len(image_notes)
    if packages:
        package_changes, solution = plan_packages(doc, resolved, the_index, solution)
        changes += package_changes
        info += [*_choice(resolved, cuda, index_url, solution), *_refusals(solution)]
    try:
        after = validate_all(applied(doc, changes))
    except ConfigError as error:  # a guard: the rules above should never get here
        raise ConfigError(
            f"the bump would leave versions.toml inconsistent ({error.message}); nothing written"
        ) from None
    notes += _hand_notes(doc, after, changes)
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
