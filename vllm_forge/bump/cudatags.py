"""Choosing the next `nvidia/cuda` tag: pure functions over a list of tags and digests.

Rule: the suffix stays exactly (`-cudnn-devel-ubuntu24.04` never becomes `-devel-ubuntu24.04`),
the CUDA major never moves, the minor moves only when allowed (and then [cuda].version and torch
move with it: see `command.make_plan`), and the highest patch wins.
A tag whose digest changed (NVIDIA re-pushes tags with fixes) is an update as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError

_CUDA_TAG = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?(?P<suffix>-.+)?$")


@dataclass(frozen=True, order=True)
class CudaTag:
    major: int
    minor: int
    patch: int
    suffix: str  # "-devel-ubuntu24.04", or "" for a bare version tag


def parse_cuda_tag(tag: str) -> CudaTag | None:
    """`12.8.1-devel-ubuntu24.04` → CudaTag(12, 8, 1, "-devel-ubuntu24.04"); None if not one."""
    match = _CUDA_TAG.match(tag)
    if not match or match.group("patch") is None:
        return None
    return CudaTag(
        int(match.group("major")),
        int(match.group("minor")),
        int(match.group("patch")),
        match.group("suffix") or "",
    )


def choose_tag(
    current: str, tags: Iterable[str], *, allow_minor: bool = False, cuda: str | None = None
) -> str | None:
    """The tag to pin next: same suffix, same major (and minor unless allowed), highest version;
    with `cuda` ("12.9"), that CUDA major.minor exactly, whatever the current tag's.

    None when no listed tag qualifies (e.g. the current tag was deleted and had no siblings).
    """
    pinned = parse_cuda_tag(current)
    if pinned is None:
        raise ConfigError(
            f"pinned tag {current!r} is not a CUDA version tag (like 12.8.1-devel-ubuntu24.04);"
            " move it by hand"
        )
    if cuda is not None:
        major, _, minor = cuda.partition(".")
        wanted: tuple[int, int] | None = (int(major), int(minor))
    else:
        wanted = None
    candidates = {
        parsed: tag
        for tag in tags
        if (parsed := parse_cuda_tag(tag)) is not None
        and parsed.suffix == pinned.suffix
        and (
            (parsed.major, parsed.minor) == wanted
            if wanted
            else parsed.major == pinned.major and (allow_minor or parsed.minor == pinned.minor)
        )
    }
    return candidates[max(candidates)] if candidates else None


@dataclass(frozen=True, kw_only=True)
class ImageDecision:
    """What to do with one pinned image."""

    tag: str  # the tag to pin (the current one when nothing better exists)
    digest: str  # its digest now ("" when unknown: nothing to pin)
    changed: bool
    reason: str  # one line for the changelog


def decide(
    *,
    current_tag: str,
    current_digest: str,
    current_listed: bool,
    chosen_tag: str | None,
    chosen_digest: str | None,
) -> ImageDecision:
    """Combine the tag choice with what the registry says about digests into one decision."""
    if chosen_tag is None or chosen_digest is None:
        note = "is no longer in the registry" if not current_listed else "has no digest now"
        return ImageDecision(
            tag=current_tag,
            digest=current_digest,
            changed=False,
            reason=f"tag {current_tag} {note} and no replacement with the same suffix exists;"
            " choose a new base image by hand",
        )
    if chosen_tag != current_tag:
        gone = "" if current_listed else f" (tag {current_tag} was deleted)"
        return ImageDecision(
            tag=chosen_tag,
            digest=chosen_digest,
            changed=True,
            reason=f"newer tag {chosen_tag}{gone}",
        )
    if chosen_digest != current_digest:
        return ImageDecision(
            tag=chosen_tag,
            digest=chosen_digest,
            changed=True,
            reason=f"tag {chosen_tag} was re-pushed with a new digest",
        )
    return ImageDecision(tag=current_tag, digest=current_digest, changed=False, reason="current")


def newer_minors(current: str, tags: Iterable[str]) -> set[tuple[int, int]]:
    """The CUDA (major, minor) pairs above the current tag's, same major and suffix, listed."""
    pinned = parse_cuda_tag(current)
    if pinned is None:
        return set()
    return {
        (parsed.major, parsed.minor)
        for tag in tags
        if (parsed := parse_cuda_tag(tag)) is not None
        and parsed.suffix == pinned.suffix
        and parsed.major == pinned.major
        and parsed.minor > pinned.minor
    }
