"""`nox -s repro`: build a profile twice from empty layer caches and compare the bytes.

Same image ID: reproducible. Otherwise the differing layers are named (with the instruction
that made them) and the files in them that differ are listed. Engines that cannot stamp
SOURCE_DATE_EPOCH (docker's classic BuildKit on Engine 20.10) are reported as such rather than
claimed reproducible.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .build import BuildSummary, build_image, slug
from .clean import empty_cache_mounts
from .engines import Engine
from .errors import BuildError
from .jobs import JobPlan
from .manifest import diff as manifest_diff
from .manifest import layers
from .pins import Pins
from .project import Project


@dataclass(frozen=True, kw_only=True)
class LayerDiff:
    index: int
    a: str
    b: str
    created_by: str
    files: list[str] = field(default_factory=list)
    # Every file present in both builds with the same content, mode and owner: only times differ.
    times_only: bool = False


@dataclass(frozen=True, kw_only=True)
class ReproResult:
    engine: str
    target: str
    promise: str
    ids: tuple[str, str]
    seconds: tuple[float, float]
    reproducible: bool
    layer_count: int
    layer_diffs: list[LayerDiff]
    caches: str = "kept"  # what the builds' cache mounts (apt, pip, ccache) held at the start
    # Inputs of the build manifests that differ between A and B (a commit in between moves
    # the revision label): then the comparison says nothing about the engine.
    inputs_changed: list[str] = field(default_factory=list)

    @property
    def contents_same(self) -> bool:
        """Every file has the same bytes, mode and owner in both builds (whatever the IDs say)."""
        return all(d.times_only for d in self.layer_diffs)

    def describe(self) -> str:
        lines = [
            f"engine       {self.engine}",
            f"promise      {self.promise}",
            f"caches       empty layer caches; cache mounts (apt, pip, ccache) {self.caches}",
            f"build A      {self.ids[0]}  ({self.seconds[0]:.0f} s)",
            f"build B      {self.ids[1]}  ({self.seconds[1]:.0f} s)",
            f"result       {'REPRODUCIBLE: same image ID' if self.reproducible else 'DIFFERENT'}"
            f" ({self.layer_count} layers, {len(self.layer_diffs)} differ)",
        ]
        if self.inputs_changed:
            lines.append(
                "inputs       CHANGED between the builds: "
                + ", ".join(self.inputs_changed)
                + " (not a test of the engine: keep the tree still and run again)"
            )
        if not self.reproducible and not self.layer_diffs:
            lines.append("contents     every layer is the same; only the image config differs")
        elif not self.reproducible and self.contents_same:
            lines.append(
                "contents     the same: every file has the same bytes, mode and owner in both "
                "builds; only file timestamps differ"
            )
        for d in self.layer_diffs:
            lines.append(
                f"layer {d.index:2d}     {d.a[:19]} != {d.b[:19]}  made by: {d.created_by[:90]}"
            )
            if d.times_only:
                lines.append(f"             {len(d.files)} entries, each differing only in mtime")
                continue
            lines += [f"             {f}" for f in d.files[:20]]
            if len(d.files) > 20:
                lines.append(f"             ... and {len(d.files) - 20} more")
        return "\n".join(lines)


def promise(engine: Engine) -> str:
    if (how := engine.timestamp_option) is not None:
        return (
            f"{engine.name} {engine.version} fixes timestamps ({how}): same inputs must give the "
            "same image ID"
        )
    return (
        f"{engine.name} {engine.version} ({engine.mode}) cannot stamp SOURCE_DATE_EPOCH on file "
        "times or the image config: image IDs differ between builds. What it can give is the "
        "same files (bytes, mode, owner; compared below), and the build manifest names every input"
    )


def changed_inputs(manifest_a: Path, manifest_b: Path) -> list[str]:
    """The build inputs (versions.toml, Dockerfile, context, lock, bases, build args ...) that
    differ between the manifests of two builds."""
    a, b = (json.loads(Path(m).read_text()).get("inputs", {}) for m in (manifest_a, manifest_b))
    return manifest_diff(a, b, "inputs.")


def cache_mounts(engine: Engine, cold: bool) -> str:
    if cold:
        return "emptied before each build"
    if engine.no_cache_builds_get_fresh_cache_mounts:
        return "empty: docker 20.10's BuildKit gives --no-cache builds fresh ones"
    return "kept from earlier builds (--cold-caches empties them)"


def history(engine: Engine, ref: str) -> list[str]:
    """`created_by` of each layer-making history entry, bottom first."""
    return [entry.created_by for entry in engine.history(ref) if not entry.empty]


def tar_listing(tar: tarfile.TarFile) -> dict[str, tuple]:
    """name -> (type, mode, uid, gid, mtime, size, content sha256 or link target)."""
    listing = {}
    for member in tar:
        if member.isfile():
            handle = tar.extractfile(member)
            content = hashlib.sha256(handle.read() if handle else b"").hexdigest()
        else:
            content = member.linkname
        listing[member.name] = (
            member.type, member.mode, member.uid, member.gid, member.mtime, member.size, content,
        )  # fmt: skip
    return listing


def listing_diff(a: dict[str, tuple], b: dict[str, tuple]) -> list[str]:
    """What differs, file by file: differences in anything but mtime first, then mtime alone."""
    fields = ("type", "mode", "uid", "gid", "mtime", "size", "content")
    out, times = [], []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            out.append(f"{name}: only in build {'A' if name in a else 'B'}")
        elif a[name] != b[name]:
            what = [f for f, x, y in zip(fields, a[name], b[name], strict=True) if x != y]
            (times if what == ["mtime"] else out).append(f"{name}: {', '.join(what)} differ")
    return out + times


def times_only(a: dict[str, tuple], b: dict[str, tuple]) -> bool:
    """Same files with the same type, mode, owner, size and content; mtimes aside."""
    if set(a) != set(b):
        return False
    return all(a[n][:4] + a[n][5:] == b[n][:4] + b[n][5:] for n in a)


def saved_layers(archive: Path) -> dict[str, dict[str, tuple]]:
    """diff ID -> listing, for every layer of a `docker save` / `podman save` archive."""
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        config = json.load(outer.extractfile(manifest["Config"]))
        result = {}
        for diff_id, member in zip(config["rootfs"]["diff_ids"], manifest["Layers"], strict=True):
            with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                result[diff_id] = tar_listing(layer)
        return result


def compare(engine: Engine, tag_a: str, tag_b: str, work: Path) -> tuple[int, list[LayerDiff]]:
    layers_a, layers_b = layers(engine, tag_a), layers(engine, tag_b)
    differing = [
        i for i in range(max(len(layers_a), len(layers_b)))
        if i >= len(layers_a) or i >= len(layers_b) or layers_a[i] != layers_b[i]
    ]  # fmt: skip
    if not differing:
        return len(layers_a), []
    work.mkdir(parents=True, exist_ok=True)
    archives = []
    for name, tag in (("a", tag_a), ("b", tag_b)):
        archive = work / f"{name}.tar"
        engine.save(tag, archive)
        archives.append(saved_layers(archive))
        archive.unlink()
    made_by = history(engine, tag_a)
    diffs = []
    for i in differing:
        a = layers_a[i] if i < len(layers_a) else ""
        b = layers_b[i] if i < len(layers_b) else ""
        listing_a, listing_b = archives[0].get(a, {}), archives[1].get(b, {})
        diffs.append(
            LayerDiff(
                index=i,
                a=a,
                b=b,
                created_by=made_by[i] if i < len(made_by) else "?",
                files=listing_diff(listing_a, listing_b),
                times_only=bool(a and b) and times_only(listing_a, listing_b),
            )
        )
    return len(layers_a), diffs


def run_repro(
    engine: Engine,
    pins: Pins,
    *,
    target: str,
    project: Project,
    jobs: JobPlan,
    cold_caches: bool = False,
    echo=print,
) -> ReproResult:
    tags = [f"localhost/vllm-forge-repro:{pins.profile}-{target}-{x}" for x in ("a", "b")]
    summaries: list[BuildSummary] = []
    try:
        for tag in tags:
            if cold_caches:
                empty_cache_mounts(engine, log=echo)
            start = time.monotonic()
            summaries.append(
                build_image(
                    engine,
                    pins,
                    target=target,
                    tag=tag,
                    jobs=jobs,
                    project=project,
                    no_cache=True,
                    echo=echo,
                )
            )
            echo(f"repro: {tag} built in {time.monotonic() - start:.0f} s")
        count, diffs = compare(engine, tags[0], tags[1], project.build / "repro")
    finally:
        for tag in tags:
            engine.remove_image(tag)
    ids = (summaries[0].image_id, summaries[1].image_id)
    result = ReproResult(
        engine=f"{engine.name} {engine.version} ({engine.mode})",
        target=target,
        promise=promise(engine),
        ids=ids,
        seconds=(summaries[0].seconds, summaries[1].seconds),
        reproducible=ids[0] == ids[1] and not diffs,
        layer_count=count,
        layer_diffs=diffs,
        caches=cache_mounts(engine, cold_caches),
        inputs_changed=changed_inputs(summaries[0].report, summaries[1].report),
    )
    project.reports.mkdir(parents=True, exist_ok=True)
    report = project.reports / f"repro-{slug(pins.profile)}-{target}-{engine.name}.json"
    report.write_text(
        json.dumps(asdict(result) | {"contents_same": result.contents_same}, indent=2) + "\n"
    )
    echo("repro: report " + str(report) + "\n" + result.describe())
    if result.inputs_changed:
        raise BuildError(
            f"the inputs changed between the two builds ({', '.join(result.inputs_changed)}): "
            "nothing was proven either way; keep the tree still (no commit, no edit) and run "
            "`nox -s repro` again"
        )
    if engine.fixes_timestamps and not result.reproducible:
        raise BuildError(
            f"{engine.name} built {pins.profile}/{target} twice from the same inputs to different "
            f"images; see {report}"
        )
    return result
