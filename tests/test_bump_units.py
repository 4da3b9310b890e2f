"""Pure logic of the bump: refs, headers, tag choice, version solving, the file, validation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import tomlkit
from packaging.requirements import Requirement
from packaging.version import Version

from vllm_forge import bump, cli
from vllm_forge.bump import command as bumpcmd
from vllm_forge.bump.cudatags import choose_tag, decide, newer_minors, parse_cuda_tag
from vllm_forge.bump.http import retry_after_s
from vllm_forge.bump.pyindex import Dist, Metadata, make_dist, parse_metadata, parse_project_html
from vllm_forge.bump.registry import api_base, parse_challenge, parse_link_next
from vllm_forge.bump.solve import Target, best_wheel, cuda_of_torch, exact_pin, solve
from vllm_forge.errors import ConfigError, IndexError_
from vllm_forge.pins import DOCKER_HUB, ImageRef

ROOT = Path(__file__).resolve().parents[1]
DIGEST = "sha256:" + "ab" * 32


# ---------------------------------------------------------------------------- refs and headers
def test_ref_on_docker_hub_keeps_name_as_written():
    ref = ImageRef.parse(f"nvidia/cuda:12.8.1-devel-ubuntu24.04@{DIGEST}", "[images].devel")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        DOCKER_HUB,
        "nvidia/cuda",
        "12.8.1-devel-ubuntu24.04",
        DIGEST,
    )
    assert ref.with_tag("12.8.2-devel-ubuntu24.04", DIGEST).raw == (
        f"nvidia/cuda:12.8.2-devel-ubuntu24.04@{DIGEST}"
    )


def test_single_name_gets_library_prefix():
    ref = ImageRef.parse("ubuntu:24.04", "k", need_digest=False)
    assert (ref.registry, ref.repository, ref.digest) == (DOCKER_HUB, "library/ubuntu", None)


@pytest.mark.parametrize(
    ("text", "host", "repository", "base"),
    [
        (
            f"registry.example/nvidia/cuda:12.8.1-base-ubuntu24.04@{DIGEST}",
            "registry.example",
            "nvidia/cuda",
            "https://registry.example",
        ),
        (
            f"127.0.0.1:5000/nvidia/cuda:12.8.1-devel-ubuntu24.04@{DIGEST}",
            "127.0.0.1:5000",
            "nvidia/cuda",
            "http://127.0.0.1:5000",
        ),
        (f"localhost:5000/x/y:1@{DIGEST}", "localhost:5000", "x/y", "http://localhost:5000"),
        (
            f"registry.example:8443/o/r:1.0@{DIGEST}",
            "registry.example:8443",
            "o/r",
            "https://registry.example:8443",
        ),
    ],
)
def test_ref_with_registry_host(text, host, repository, base):
    ref = ImageRef.parse(text, "[images].devel")
    assert (ref.registry, ref.repository) == (host, repository)
    assert api_base(ref.registry) == base
    assert not ref.local


def test_docker_hub_api_host_is_not_the_registry_name():
    assert api_base(DOCKER_HUB).startswith("https://") and api_base(DOCKER_HUB) != (
        f"https://{DOCKER_HUB}"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nvidia/cuda", "has no tag"),
        ("nvidia/cuda@" + DIGEST, "has no tag"),
        ("nvidia/cuda:12.8@sha256:short", "is not 'sha256:' followed by 64"),
        ("Nvidia/cuda:1@" + DIGEST, "is not a repository name"),
        ("nvidia/cuda:-bad@" + DIGEST, "is not a valid tag"),
    ],
)
def test_malformed_refs_are_one_line_config_errors(text, message):
    with pytest.raises(ConfigError) as info:
        ImageRef.parse(text, "[images].devel", need_digest=False)
    assert message in str(info.value) and str(info.value).startswith("[images].devel: ")
    assert "\n" not in str(info.value)


def test_link_header_next_is_made_absolute():
    header = '</v2/nvidia/cuda/tags/list?n=2&last=12.8.1>; rel="next"'
    assert parse_link_next(header, "https://r.example/v2/nvidia/cuda/tags/list?n=2") == (
        "https://r.example/v2/nvidia/cuda/tags/list?n=2&last=12.8.1"
    )
    assert parse_link_next("<https://o.example/p2>; rel=next", "https://r.example/x") == (
        "https://o.example/p2"
    )
    assert parse_link_next('</p0>; rel="prev"', "https://r.example/x") is None
    assert parse_link_next(None, "https://r.example/x") is None


def test_bearer_challenge_with_and_without_service():
    hub = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:nvidia/cuda:pull"'
    )
    assert hub == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:nvidia/cuda:pull",
    }
    nvcr = parse_challenge(
        'Bearer realm="https://other.example/proxy_auth",scope="repository:x:pull"'
    )
    assert nvcr is not None and "service" not in nvcr
    assert parse_challenge('Basic realm="x"') is None


def test_retry_after_reads_seconds_and_dates():
    assert retry_after_s({"Retry-After": "7"}) == 7
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0  # in the past
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None


# ---------------------------------------------------------------------------- tag choice
TAGS = [
    f"{version}{suffix}"
    for version in ("12.8.0", "12.8.1", "12.9.0", "12.9.1", "13.0.1")
    for suffix in ("-devel-ubuntu24.04", "-cudnn-devel-ubuntu24.04", "-base-ubuntu24.04")
] + ["12.8.1-runtime-ubuntu22.04", "latest", "12.8.1", "12.8.10-devel-ubuntu22.04"]


def test_tag_stays_on_suffix_and_minor_and_takes_highest_patch():
    assert choose_tag("12.8.0-devel-ubuntu24.04", TAGS) == "12.8.1-devel-ubuntu24.04"
    assert choose_tag("12.8.0-cudnn-devel-ubuntu24.04", TAGS) == "12.8.1-cudnn-devel-ubuntu24.04"


def test_patch_compares_as_number_not_text():
    tags = ["12.8.9-devel-ubuntu24.04", "12.8.10-devel-ubuntu24.04"]
    assert choose_tag("12.8.1-devel-ubuntu24.04", tags) == "12.8.10-devel-ubuntu24.04"


def test_minor_moves_only_when_allowed_and_major_never():
    assert (
        choose_tag("12.8.1-base-ubuntu24.04", TAGS, allow_minor=True) == "12.9.1-base-ubuntu24.04"
    )


def test_deleted_tag_without_siblings_gives_none():
    assert choose_tag("12.8.1-devel-ubuntu20.04", TAGS) is None


def test_non_version_tag_is_refused_with_one_line():
    with pytest.raises(ConfigError, match="by hand"):
        choose_tag("latest", TAGS)


def test_parse_cuda_tag_needs_a_patch():
    assert parse_cuda_tag("12.8-devel") is None
    assert parse_cuda_tag("12.8.1").suffix == ""


def test_same_tag_new_digest_is_an_update():
    decision = decide(
        current_tag="12.8.1-base-ubuntu24.04",
        current_digest="sha256:old",
        current_listed=True,
        chosen_tag="12.8.1-base-ubuntu24.04",
        chosen_digest="sha256:new",
    )
    assert decision.changed and "re-pushed" in decision.reason


def test_unchanged_pin_is_current():
    decision = decide(
        current_tag="t", current_digest="d", current_listed=True, chosen_tag="t", chosen_digest="d"
    )
    assert not decision.changed and decision.reason == "current"


def test_deleted_current_tag_is_reported():
    moved = decide(
        current_tag="12.8.0-x",
        current_digest="d",
        current_listed=False,
        chosen_tag="12.8.1-x",
        chosen_digest="e",
    )
    assert moved.changed and "deleted" in moved.reason
    stuck = decide(
        current_tag="12.8.0-x",
        current_digest="d",
        current_listed=False,
        chosen_tag=None,
        chosen_digest=None,
    )
    assert not stuck.changed and "no longer in the registry" in stuck.reason


# ---------------------------------------------------------------------------- index data
def test_html_page_gives_hashes_and_yanks():
    html = (
        '<a href="../../f/vllm-0.19.1-cp38-abi3-manylinux_2_31_x86_64.whl#sha256=aa" '
        'data-requires-python="&gt;=3.10">w</a>'
        '<a href="/f/vllm-0.19.1.tar.gz#sha256=bb" data-yanked="">s</a><a href="/f/README">r</a>'
    )
    wheel, sdist = parse_project_html(html, "http://i.example/simple/vllm/")
    assert wheel.url == "http://i.example/f/vllm-0.19.1-cp38-abi3-manylinux_2_31_x86_64.whl"
    assert (wheel.sha256, wheel.requires_python, wheel.is_wheel) == ("aa", ">=3.10", True)
    assert (sdist.sha256, sdist.yanked, sdist.is_wheel) == ("bb", True, False)


def test_metadata_requires_dist_parsed():
    meta = parse_metadata(
        b"Metadata-Version: 2.1\nName: vllm\nVersion: 0.19.1\n"
        b"Requires-Dist: torch==2.10.0\nRequires-Dist: zentorch; extra == 'zen'\n"
    )
    assert [r.name for r in meta.requires_dist] == ["torch", "zentorch"]


# ---------------------------------------------------------------------------- solving
class MemoryIndex:
    """Index data in memory: {filename: [Requires-Dist...]}; counts metadata reads."""

    def __init__(self, files: dict[str, list[str]], yanked: frozenset[str] = frozenset()):
        self.requires = files
        self.yanked = yanked
        self.reads: list[str] = []

    def files(self, project: str) -> list[Dist]:
        dists = [
            make_dist(name, f"mem://{name}", sha256="f" * 64, yanked=name in self.yanked)
            for name in self.requires
        ]
        prefix = project.replace("-", "_")
        return [d for d in dists if d and d.filename.startswith(f"{prefix}-")]

    def metadata(self, dist: Dist) -> Metadata:
        self.reads.append(dist.filename)
        reqs = tuple(Requirement(r) for r in self.requires[dist.filename])
        return Metadata(name="", version=str(dist.version), requires_dist=reqs)


CU128 = 'nvidia-cuda-runtime-cu12==12.8.90; platform_system == "Linux"'
CU130 = 'cuda-toolkit[cudart,cublas]==13.0.2; platform_system == "Linux"'
TORCH = "cp312-cp312-manylinux_2_28_x86_64"
ANY = "py3-none-any"


def _vllm(torch, vision, audio, fi, cubin=True):
    reqs = [f"torch=={torch}", f"torchvision=={vision}", f"torchaudio=={audio}"]
    reqs += [f'flashinfer-python=={fi}; platform_machine == "x86_64"']
    reqs += ['flashinfer-python==0.1.0; platform_machine == "aarch64"']
    return reqs + ([f"flashinfer-cubin=={fi}"] if cubin else [])


def _index() -> MemoryIndex:
    return MemoryIndex(
        {
            "vllm-0.20.0-cp38-abi3-manylinux_2_35_x86_64.whl": _vllm(
                "2.11.0", "0.26.0", "2.11.0", "0.6.8"
            ),
            "vllm-0.20.0.tar.gz": [],
            "vllm-0.19.2rc1-cp38-abi3-manylinux_2_31_x86_64.whl": _vllm(
                "2.10.0", "0.25.0", "2.10.0", "0.6.7"
            ),
            "vllm-0.19.3-cp38-abi3-manylinux_2_31_x86_64.whl": _vllm(
                "2.10.0", "0.25.0", "2.10.0", "0.6.7"
            ),
            "vllm-0.19.1-cp38-abi3-manylinux_2_31_x86_64.whl": _vllm(
                "2.10.0", "0.25.0", "2.10.0", "0.6.6"
            ),
            "vllm-0.19.1-cp38-abi3-manylinux_2_31_aarch64.whl": [],
            "vllm-0.19.1.tar.gz": [],
            "vllm-0.19.0-cp38-abi3-manylinux_2_31_x86_64.whl": _vllm(
                "2.10.0", "0.25.0", "2.10.0", "0.6.5"
            ),
            f"torch-2.11.0-{TORCH}.whl": [CU130],
            f"torch-2.10.0-{TORCH}.whl": [CU128],
            "torch-2.10.0-cp311-cp311-manylinux_2_28_x86_64.whl": [CU128],
            f"torchvision-0.25.0-{TORCH}.whl": ["torch==2.10.0"],
            f"torchvision-0.26.0-{TORCH}.whl": ["torch==2.11.0"],
            f"torchaudio-2.10.0-{TORCH}.whl": ["torch==2.10.0"],
            f"torchaudio-2.11.0-{TORCH}.whl": ["torch==2.11.0"],
            f"flashinfer_python-0.6.6-{ANY}.whl": ["torch"],
            f"flashinfer_cubin-0.6.6-{ANY}.whl": [],
            f"flashinfer_python-0.6.8-{ANY}.whl": ["torch"],
            f"flashinfer_cubin-0.6.8-{ANY}.whl": [],
        },
        yanked=frozenset({"vllm-0.19.3-cp38-abi3-manylinux_2_31_x86_64.whl"}),
    )


def test_solver_refuses_cuda13_torch_and_skips_prereleases_and_yanked():
    index = _index()
    found = solve(index, Target(python="3.12", cuda="12.8"), need_sdist=True)
    assert (found.vllm, found.torch, found.torchvision, found.torchaudio, found.flashinfer) == (
        "0.19.1",
        "2.10.0",
        "0.25.0",
        "2.10.0",
        "0.6.6",
    )
    assert found.torch_cuda_requirement == "nvidia-cuda-runtime-cu12==12.8.90"
    assert found.vllm_sdist_sha256 == "f" * 64
    assert found.skipped == (
        "vllm 0.20.0: torch 2.11.0 is a CUDA 13.0 build (requires cuda-toolkit==13.0.2)",
    )
    assert not any("0.19.0" in name or "rc1" in name or "0.19.3" in name for name in index.reads)


def test_solver_takes_the_cuda13_stack_for_a_cuda13_profile():
    assert solve(_index(), Target(python="3.12", cuda="13.0")).vllm == "0.20.0"


def test_solver_needs_the_torch_wheel_for_the_profile_python():
    with pytest.raises(IndexError_, match="Python 3.13"):
        solve(_index(), Target(python="3.13", cuda="12.8"))


def test_solver_needs_a_wheel_for_the_profile_glibc():
    old_glibc = Target(python="3.12", cuda="12.8", glibc=(2, 28))
    with pytest.raises(IndexError_):
        solve(_index(), old_glibc)


def test_solver_refuses_flashinfer_missing_from_index():
    index = _index()
    del index.requires[f"flashinfer_cubin-0.6.6-{ANY}.whl"]
    with pytest.raises(IndexError_):
        solve(index, Target(python="3.12", cuda="12.8"), stop_at="0.19.1")


def test_exact_pin_and_cuda_of_torch():
    reqs = [Requirement("torch==2.10.0"), Requirement("torchaudio>=2")]
    assert exact_pin(reqs, "torch") == "2.10.0"
    assert exact_pin(reqs, "torchaudio") is None
    assert cuda_of_torch([Requirement("nvidia-cuda-runtime-cu12==12.8.*")])[0] == "12.8"
    assert cuda_of_torch([Requirement("nvidia-cuda-runtime==13.0.48")])[0] == "13.0"
    assert cuda_of_torch([Requirement("numpy")]) is None


def test_best_wheel_prefers_higher_build_number():
    dists = [
        make_dist(f"torch-2.10.0-{TORCH}.whl", "u1"),
        make_dist(f"torch-2.10.0-3-{TORCH}.whl", "u2"),
    ]
    chosen = best_wheel(
        dists, Version("2.10.0"), Target(python="3.12", cuda="12.8").supported_tags()
    )
    assert chosen.url == "u2"


# ---------------------------------------------------------------------------- the file
PINS = """\
# top comment
[project]
default_profile = "p"

[torch]
version = "2.9.0"  # keep this comment

[vllm]
version = "0.18.0"

[profiles.p]
[profiles.q.vllm]
version = "0.17.0"
"""


def test_apply_keeps_comments_and_writes_where_the_profile_reads():
    doc = tomlkit.parse(PINS)
    assert bumpcmd.home(doc.unwrap(), "q", "vllm", "version") == ("profiles", "q", "vllm")
    assert bumpcmd.home(doc.unwrap(), "p", "vllm", "version") == ("vllm",)
    changes = [bumpcmd.Change(table=("torch",), key="version", old="2.9.0", new="2.10.0")]
    assert bumpcmd.apply(doc, changes) == PINS.replace('"2.9.0"', '"2.10.0"')


def test_crash_between_write_and_rename_leaves_file_byte_identical(tmp_path: Path, monkeypatch):
    target = tmp_path / "versions.toml"
    target.write_bytes(PINS.encode())

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        bumpcmd.write_atomic(target, PINS.replace("2.9.0", "2.10.0"))
    assert target.read_bytes() == PINS.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["versions.toml"]


def test_atomic_write_replaces_and_keeps_mode(tmp_path: Path):
    target = tmp_path / "versions.toml"
    target.write_text("a = 1\n")
    target.chmod(0o640)
    bumpcmd.write_atomic(target, "a = 2\n")
    assert target.read_text() == "a = 2\n"
    assert target.stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------- validation
@pytest.fixture
def project_pins(tmp_path: Path) -> Path:
    """A copy of the project's own versions.toml, to break one key at a time."""
    path = tmp_path / "versions.toml"
    shutil.copy(ROOT / "versions.toml", path)
    return path


def _set(path: Path, table: str, key: str, value: str) -> None:
    doc = tomlkit.parse(path.read_text())
    doc[table][key] = value
    path.write_text(tomlkit.dumps(doc))


def _bump(path: Path, *args: str) -> int:
    return cli.main(["bump", "--pins", str(path), *args])


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        ("python", "platform", "linux-x86_64", "[python].platform = 'linux-x86_64'; write e.g."),
        ("python", "version", "3", "[python].version = '3'; write e.g. '3.12'"),
        (
            "images",
            "devel",
            "nvidia/cuda:12.8.1-devel-ubuntu24.04@sha256:abc",
            "[images].devel: digest 'sha256:abc' is not 'sha256:' followed by 64",
        ),
        ("images", "runtime", "nvidia/cuda:latest", "[images].runtime: tag 'latest' is not a CUDA"),
        ("vllm", "source", "pypi", "[vllm].source = 'pypi'; accepted"),
    ],
)
def test_bump_refuses_what_render_refuses_with_exit_2_and_one_line(
    project_pins: Path, capsys, table, key, value, message
):
    _set(project_pins, table, key, value)
    before = project_pins.read_bytes()
    assert _bump(project_pins, "--check") == ConfigError.exit_code
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and captured.out == ""
    assert project_pins.read_bytes() == before


def test_unknown_profile_is_a_config_error_that_lists_the_known_ones(project_pins: Path, capsys):
    assert _bump(project_pins, "--profile", "nope", "--dry-run") == ConfigError.exit_code
    assert "known profiles: debian-pypi, rtx5090" in capsys.readouterr().err


def test_validation_lets_a_tag_without_digest_through_for_bump_to_pin():
    doc = tomlkit.parse((ROOT / "versions.toml").read_text()).unwrap()
    doc["images"]["devel"] = "nvidia/cuda:12.8.1-devel-ubuntu24.04"
    assert bumpcmd.validate(doc, None).profile == "rtx5090"
    doc["images"]["devel"] = "nvidia/cuda:12.8.1-devel-ubuntu24.04@sha256:abc"
    with pytest.raises(ConfigError, match="is not 'sha256:'"):
        bumpcmd.validate(doc, None)


def test_missing_pins_file_is_one_line(tmp_path: Path, capsys):
    assert _bump(tmp_path / "missing.toml") == ConfigError.exit_code
    err = capsys.readouterr().err
    assert "missing.toml: not found" in err and err.count("\n") == 1


def test_bump_options_leave_pins_and_profile_to_the_cli():
    import argparse

    parser = argparse.ArgumentParser()
    bump.add_arguments(parser)
    args = parser.parse_args(["--check", "--images-only", "--allow-minor"])
    assert (args.check, args.dry_run, args.images_only, args.packages_only) == (
        True,
        False,
        True,
        False,
    )
    for taken in ("--pins", "--profile", "--file"):
        with pytest.raises(SystemExit):
            parser.parse_args([taken, "x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--check", "--dry-run"])


# ---------------------------------------------------------------------------- issue 10
def test_a_tag_can_be_chosen_on_a_given_cuda_minor():
    assert choose_tag("12.8.1-devel-ubuntu24.04", TAGS, cuda="12.9") == "12.9.1-devel-ubuntu24.04"
    assert choose_tag("12.8.0-devel-ubuntu24.04", TAGS, cuda="12.8") == "12.8.1-devel-ubuntu24.04"
    assert choose_tag("12.8.0-devel-ubuntu24.04", TAGS, allow_minor=True, cuda="12.8") == (
        "12.8.1-devel-ubuntu24.04"
    )  # the CUDA the profile keeps wins over "any minor"
    assert newer_minors("12.8.1-devel-ubuntu24.04", TAGS) == {(12, 9)}


def _repo_doc() -> dict:
    return tomlkit.parse((ROOT / "versions.toml").read_text()).unwrap()


def test_a_revision_note_names_only_profiles_that_build_from_it():
    doc = _repo_doc()
    changes = [bumpcmd.Change(table=("flashinfer",), key="version", old="0.6.6", new="0.6.7")]
    after = bumpcmd.validate_all(bumpcmd.applied(doc, changes))
    (note,) = bumpcmd._hand_notes(doc, after, changes)
    assert note.startswith(f"[flashinfer].revision {doc['flashinfer']['revision']} is not moved")
    assert "and rtx5090 builds flashinfer from it" in note and "debian-pypi" not in note
    assert "refs/tags/v0.6.7" in note and "v0.6.6" not in note  # no tag guessed for the old one
    doc["flashinfer"]["jit_cache"] = "none"
    after = bumpcmd.validate_all(bumpcmd.applied(doc, changes))
    assert bumpcmd._hand_notes(doc, after, changes) == []


def test_bump_validates_every_profile_not_only_the_one_asked_for():
    doc = _repo_doc()
    doc["profiles"]["debian-pypi"]["python"]["platform"] = "x86_64"
    with pytest.raises(ConfigError, match=r"\[python\].platform = 'x86_64'"):
        bumpcmd.validate(doc, "rtx5090")


def test_a_plan_that_would_break_the_cuda_agreement_is_refused(monkeypatch):
    """The guard behind the rules: a planned file that any profile refuses is never written."""
    doc = _repo_doc()
    sneaky = [bumpcmd.Change(table=("cuda",), key="version", old="12.8", new="13.0")]
    monkeypatch.setattr(bumpcmd, "plan_packages", lambda *a, **k: (sneaky, _solution()))
    with pytest.raises(ConfigError, match="the bump would leave versions.toml inconsistent"):
        bumpcmd.make_plan(doc, None, images=False, index=object())  # type: ignore[arg-type]


def _solution():
    from vllm_forge.bump.solve import Solution

    return Solution(
        vllm="0.19.1",
        vllm_sdist_sha256="",
        torch="2.10.0",
        torchvision="0.25.0",
        torchaudio="2.10.0",
        flashinfer="0.6.6",
        torch_cuda_requirement="nvidia-cuda-runtime-cu12==12.8.90",
        torch_cuda="12.8",
    )
