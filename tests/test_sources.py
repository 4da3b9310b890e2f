"""vLLM's build-time git sources (vllm_forge.sources): the CMake reader, the pins file, git's tree
hash, and the cache filled from real git repositories (made here, served by file:// URLs),
exported, wiped and filled again from the export with no network and no git at all.

The drift test reads the real pinned vLLM sdist (from build/.cache, else the package index)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from vllm_forge import cli, pins, sources
from vllm_forge.errors import ConfigError, ForgeError, IndexError_
from vllm_forge.project import PACKAGED_LOCKS, Project

ROOT = Path(__file__).resolve().parents[1]
CHECKED_IN = PACKAGED_LOCKS / "sources-rtx5090.toml"
NOWHERE = "https://nonexistent.invalid/never.git"

# ---- the CMake reader, on the forms vLLM 0.19.1 uses --------------------------------------------

CUTLASS_CMAKE = """\
  # Set CUTLASS_REVISION. Used for FetchContent. Also fixes some bogus messages when building.
  set(CUTLASS_REVISION "v4.2.1")

  # Use the specified CUTLASS source directory for compilation if VLLM_CUTLASS_SRC_DIR is provided
  if (DEFINED ENV{VLLM_CUTLASS_SRC_DIR})
    set(VLLM_CUTLASS_SRC_DIR $ENV{VLLM_CUTLASS_SRC_DIR})
  endif()

  if(VLLM_CUTLASS_SRC_DIR)
    message(STATUS "The VLLM_CUTLASS_SRC_DIR is set, using ${VLLM_CUTLASS_SRC_DIR} for compilation")
    FetchContent_Declare(cutlass SOURCE_DIR ${VLLM_CUTLASS_SRC_DIR})
  else()
    FetchContent_Declare(
        cutlass
        GIT_REPOSITORY https://github.com/nvidia/cutlass.git
        # Please keep this in sync with CUTLASS_REVISION line above.
        GIT_TAG ${CUTLASS_REVISION}
        GIT_PROGRESS TRUE

        # Important: If GIT_SHALLOW is enabled then GIT_TAG works only with branch names and tags.
        GIT_SHALLOW TRUE
    )
  endif()
  FetchContent_MakeAvailable(cutlass)
"""

FLASH_ATTN_CMAKE = """\
if (DEFINED ENV{VLLM_FLASH_ATTN_SRC_DIR})
  set(VLLM_FLASH_ATTN_SRC_DIR $ENV{VLLM_FLASH_ATTN_SRC_DIR})
endif()

if(VLLM_FLASH_ATTN_SRC_DIR)
  FetchContent_Declare(
          vllm-flash-attn SOURCE_DIR
          ${VLLM_FLASH_ATTN_SRC_DIR}
          BINARY_DIR ${CMAKE_BINARY_DIR}/vllm-flash-attn
  )
else()
  FetchContent_Declare(
          vllm-flash-attn
          GIT_REPOSITORY https://github.com/vllm-project/flash-attention.git
          GIT_TAG 29210221863736a08f71a866459e368ad1ac4a95
          GIT_PROGRESS TRUE
          # Don't share the vllm-flash-attn build between build types
          BINARY_DIR ${CMAKE_BINARY_DIR}/vllm-flash-attn
  )
endif()
"""

# vLLM's file has a trailing space after SOURCE_DIR: kept, the reader must not mind it.
FLASH_ATTN_CMAKE = FLASH_ATTN_CMAKE.replace("SOURCE_DIR\n", "SOURCE_DIR \n", 1)

TRITON_CMAKE = """\
set(DEFAULT_TRITON_KERNELS_TAG "v3.6.0")

if (DEFINED ENV{TRITON_KERNELS_SRC_DIR})
  message(STATUS "[triton_kernels] Fetch from $ENV{TRITON_KERNELS_SRC_DIR}")
  FetchContent_Declare(
          triton_kernels
          SOURCE_DIR $ENV{TRITON_KERNELS_SRC_DIR}
  )

else()
  set(TRITON_GIT "https://github.com/triton-lang/triton.git")
  message (STATUS "[triton_kernels] Fetch from ${TRITON_GIT}:${DEFAULT_TRITON_KERNELS_TAG}")
  FetchContent_Declare(
          triton_kernels
          # TODO (varun) : Fetch just the triton_kernels directory from Triton
          GIT_REPOSITORY https://github.com/triton-lang/triton.git
          GIT_TAG ${DEFAULT_TRITON_KERNELS_TAG}
          GIT_PROGRESS TRUE
          SOURCE_SUBDIR python/triton_kernels/triton_kernels
  )
endif()
"""


def test_cmake_reader_expands_the_cutlass_revision_and_finds_its_override_variable():
    (cutlass,) = sources.declared_sources({"CMakeLists.txt": CUTLASS_CMAKE})
    assert cutlass.name == "cutlass"
    assert cutlass.git_url == "https://github.com/nvidia/cutlass.git"
    assert cutlass.git_tag == "v4.2.1"
    assert cutlass.env == "VLLM_CUTLASS_SRC_DIR"
    assert cutlass.env_is_cmake_variable  # set(X $ENV{X}): -DX works too
    assert cutlass.git_submodules is None  # FetchContent's default: every submodule
    assert cutlass.declared_at == "CMakeLists.txt:13"


def test_cmake_reader_takes_a_source_dir_on_the_next_line_and_a_commit_tag():
    (fa,) = sources.declared_sources(
        {"cmake/external_projects/vllm_flash_attn.cmake": FLASH_ATTN_CMAKE}
    )
    assert (fa.name, fa.env, fa.git_tag) == (
        "vllm-flash-attn",
        "VLLM_FLASH_ATTN_SRC_DIR",
        "29210221863736a08f71a866459e368ad1ac4a95",
    )


def test_cmake_reader_knows_an_environment_only_override_and_its_subdirectory():
    (tk,) = sources.declared_sources({"cmake/external_projects/triton_kernels.cmake": TRITON_CMAKE})
    assert tk.env == "TRITON_KERNELS_SRC_DIR"
    assert not tk.env_is_cmake_variable  # only `DEFINED ENV{...}`: a -D would be ignored
    assert tk.git_tag == "v3.6.0"
    assert tk.subdir == "python/triton_kernels/triton_kernels"


def test_cmake_reader_ignores_commented_out_declarations_and_reads_git_submodules():
    text = """\
# FetchContent_Declare(old GIT_REPOSITORY https://example.invalid/old.git GIT_TAG v1)
#[[ FetchContent_Declare(older GIT_REPOSITORY https://example.invalid/b.git) ]]
FetchContent_Declare(x GIT_REPOSITORY "https://example.invalid/x.git" GIT_TAG "v2"
  GIT_SUBMODULES "third_party/a" third_party/b)
FetchContent_Declare(y GIT_REPOSITORY https://example.invalid/y.git GIT_TAG v3 GIT_SUBMODULES "")
"""
    found = {d.name: d for d in sources.declared_sources({"CMakeLists.txt": text})}
    assert set(found) == {"x", "y"}
    assert found["x"].git_submodules == ("third_party/a", "third_party/b")
    assert found["y"].git_submodules == ()
    assert found["x"].env == ""  # no SOURCE_DIR twin: the network, whatever is cached
    assert sources.network_declarations({"CMakeLists.txt": text}) == [
        "CMakeLists.txt:3 x https://example.invalid/x.git",
        "CMakeLists.txt:5 y https://example.invalid/y.git",
    ]


def test_cmake_reader_leaves_out_the_cpu_only_file():
    cpu = "FetchContent_Declare(oneDNN GIT_REPOSITORY https://example.invalid/d.git GIT_TAG v3.10)"
    files = {"CMakeLists.txt": CUTLASS_CMAKE, "cmake/cpu_extension.cmake": cpu}
    assert [d.name for d in sources.declared_sources(files)] == ["cutlass"]


# ---- the pins file ---------------------------------------------------------------------------


def test_checked_in_pins_read_back_to_the_same_bytes_and_match_versions_toml():
    text = CHECKED_IN.read_text()
    pinned = sources.parse_pins(text, str(CHECKED_IN))
    assert sources.format_pins(pinned) == text
    resolved = pins.load(ROOT / "versions.toml", "rtx5090")
    assert (pinned.vllm, pinned.flashinfer) == sources.expected_identity(resolved)
    fa = pinned.source("vllm-flash-attn")
    assert {s.path: s.fetch for s in fa.submodules} == {
        "csrc/cutlass": True,
        "csrc/composable_kernel": False,
    }


def test_a_short_commit_is_refused_naming_the_source_and_the_accepted_form():
    bad = CHECKED_IN.read_text().replace(
        'commit = "f3fde58372d33e9a5650ba7b80fc48b3b49d40c8"\ndeclared_at = "CMakeLists',
        'commit = "f3fde58"\ndeclared_at = "CMakeLists',
    )
    with pytest.raises(ConfigError, match=r"'cutlass'.*'f3fde58'.*40 lowercase hex"):
        sources.parse_pins(bad, "pins")


def test_pins_made_for_another_vllm_are_refused_as_stale(tmp_path):
    project = Project.at(ROOT / "versions.toml", tmp_path)
    resolved = pins.load(project.pins_file, "rtx5090")
    other = dataclasses.replace(
        resolved, vllm=dataclasses.replace(resolved.vllm, sdist_sha256="0" * 64)
    )
    with pytest.raises(ConfigError, match="--regenerate"):
        sources.load_for(other, project)


def test_an_unresolved_tag_is_refused_before_anything_is_fetched(tmp_path):
    pinned = sources.read_pins(CHECKED_IN)
    tagged = next(s for s in pinned.sources if s.tag)  # as --regenerate leaves one it could not
    only = dataclasses.replace(pinned, sources=(dataclasses.replace(tagged, commit=""),))
    project = Project.at(ROOT / "versions.toml", tmp_path)
    with pytest.raises(ConfigError, match="not resolved to a commit"):
        sources.fill(only, project, log=lambda _: None)


# ---- git's tree hash, in pure Python --------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd),
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path, files: dict[str, str], links: dict[str, tuple[str, str]] = {}) -> str:  # noqa: B006
    """A repository at `path` with `files` ("x*" names: executable; "@target" content: a
    symlink) and submodules `links` ({path: (url, commit)}); returns the new commit."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        git("init", "-q", cwd=path)
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("@"):
            target.unlink(missing_ok=True)
            target.symlink_to(content[1:])
        else:
            target.write_text(content)
            target.chmod(0o755 if name.endswith("x") else 0o644)
    git("add", "-A", cwd=path)
    if links:
        modules = "".join(
            f'[submodule "{p}"]\n\tpath = {p}\n\turl = {url}\n' for p, (url, _) in links.items()
        )
        (path / ".gitmodules").write_text(modules)
        git("add", ".gitmodules", cwd=path)
        for p, (_, commit) in links.items():
            git("update-index", "--add", "--cacheinfo", f"160000,{commit},{p}", cwd=path)
    git("commit", "-q", "-m", "c", cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


def test_tree_hash_matches_git_for_modes_links_sort_order_and_submodules(tmp_path):
    repo = tmp_path / "r"
    sub = "1" * 40
    files = {
        "a.b": "dot",
        "a-b": "dash",
        "a/inner.txt": "in a dir: sorts as 'a/'",
        "ab": "plain",
        "run.shx": "#!/bin/sh\n",
        "link": "@a/inner.txt",
        "deep/er/file": "x\n",
    }
    make_repo(repo, files, {"third_party/dep": ("https://example.invalid/dep.git", sub)})
    expected = git("rev-parse", "HEAD^{tree}", cwd=repo)
    (tmp_path / "copy").mkdir()
    git("--work-tree", str(tmp_path / "copy"), "checkout", "HEAD", "--", ".", cwd=repo)
    (tmp_path / "copy" / "third_party" / "dep").mkdir(parents=True, exist_ok=True)
    (tmp_path / "copy" / "empty-dir").mkdir()  # git stores no empty folder: nor does the hash
    assert sources.tree_id(tmp_path / "copy", {"third_party/dep": sub}) == expected
    (tmp_path / "copy" / "run.shx").chmod(0o644)
    assert sources.tree_id(tmp_path / "copy", {"third_party/dep": sub}) != expected


def test_a_submodule_sorts_like_a_file_among_siblings_named_like_it(tmp_path):
    """git orders a submodule entry by its bare name ("a" < "a-c" < "a.b"), a folder as "a/"."""
    repo = tmp_path / "r"
    sub = "2" * 40
    make_repo(repo, {"a-c": "dash", "a.b": "dot"}, {"a": ("https://example.invalid/a.git", sub)})
    expected = git("rev-parse", "HEAD^{tree}", cwd=repo)
    copy = tmp_path / "copy"
    copy.mkdir()
    git("--work-tree", str(copy), "checkout", "HEAD", "--", ".", cwd=repo)
    (copy / "a").mkdir(exist_ok=True)
    assert sources.tree_id(copy, {"a": sub}) == expected


# ---- the cache, end to end, on local repositories -------------------------------------------------


@pytest.fixture
def upstream(tmp_path):
    """Repositories standing in for GitHub: `kernels` (tagged v1.0, annotated, with a submodule
    `cutlass`), `tk` (pinned by commit, used through a subdirectory), `fi` (FlashInfer), and a
    vLLM source tree whose CMake declares the first two."""
    base = tmp_path / "upstream"
    cut = make_repo(base / "cutlass", {"include/cutlass.h": "// v1\n"})
    make_repo(base / "cutlass", {"include/cutlass.h": "// v2\n"})  # the submodule pins v1
    cut_url = (base / "cutlass").as_uri()
    kernels = make_repo(
        base / "kernels",
        {"CMakeLists.txt": "project(k)\n", "gen.pyx": "print(1)\n", "alias": "@CMakeLists.txt"},
        {"csrc/cutlass": (cut_url, cut)},
    )
    git("tag", "-a", "v1.0", "-m", "v1.0", cwd=base / "kernels")
    make_repo(base / "kernels", {"later.txt": "after the tag\n"})
    tk = make_repo(base / "tk", {"python/tk/tk/__init__.py": "", "README": "tk\n"})
    fi = make_repo(base / "fi", {"setup.py": "# fi\n"}, {"3rdparty/cutlass": (cut_url, cut)})
    vllm = tmp_path / "vllm-src"
    (vllm / "cmake" / "external_projects").mkdir(parents=True)
    (vllm / "CMakeLists.txt").write_text(
        CUTLASS_CMAKE.replace("cutlass", "kernels")
        .replace("CUTLASS", "KERNELS")
        .replace("https://github.com/nvidia/kernels.git", (base / "kernels").as_uri())
        .replace("v4.2.1", "v1.0")
    )
    (vllm / "cmake" / "external_projects" / "tk.cmake").write_text(
        TRITON_CMAKE.replace("triton_kernels", "tk")
        .replace("TRITON_KERNELS", "TK")
        .replace("https://github.com/triton-lang/triton.git", (base / "tk").as_uri())
        .replace("v3.6.0", tk)
        .replace("python/tk/tk", "python/tk/tk")
    )
    return {"base": base, "vllm": vllm, "cut": cut, "kernels": kernels, "tk": tk, "fi": fi}


@pytest.fixture
def project(tmp_path, upstream):
    """A project whose versions.toml pins the local FlashInfer, with an empty lock dir."""
    text = (ROOT / "versions.toml").read_text()
    text = text.replace(
        'git_url = "https://github.com/flashinfer-ai/flashinfer.git"',
        f'git_url = "{(upstream["base"] / "fi").as_uri()}"',
    ).replace("70b142b75b46aa56e7f675a8e6ec1a977352c91f", upstream["fi"])
    root = tmp_path / "proj"
    root.mkdir()
    (root / "versions.toml").write_text(text)
    return Project.at(root / "versions.toml", root / "locks")


def regenerated(project: Project, upstream: dict) -> sources.SourcePins:
    resolved = pins.load(project.pins_file, "rtx5090")
    fresh = sources.regenerate(resolved, upstream["vllm"], project.cache / "work")
    project.lock_dir.mkdir(parents=True, exist_ok=True)
    (project.lock_dir / "sources-rtx5090.toml").write_text(sources.format_pins(fresh))
    return fresh


def test_regenerate_resolves_the_annotated_tag_and_reads_submodule_commits(project, upstream):
    fresh = regenerated(project, upstream)
    kernels, tk, fi = (fresh.source(n) for n in ("kernels", "tk", "flashinfer"))
    assert (kernels.tag, kernels.commit) == ("v1.0", upstream["kernels"])  # the peeled commit
    assert kernels.env == "VLLM_KERNELS_SRC_DIR"
    assert [(s.path, s.commit, s.fetch) for s in kernels.submodules] == [
        ("csrc/cutlass", upstream["cut"], True)
    ]
    assert (tk.tag, tk.commit, tk.subdir) == ("", upstream["tk"], "python/tk/tk")
    assert fi.used_by == "flashinfer-jit-cache" and fi.commit == upstream["fi"]
    assert [s.commit for s in fi.submodules] == [upstream["cut"]]
    # what the pins say about the CMake is what the CMake says
    assert sources.drift(fresh, sources.cmake_files(upstream["vllm"])) == []


def test_fill_stage_export_and_refill_offline_with_no_git_and_dead_urls(
    project, upstream, tmp_path, monkeypatch
):
    fresh = regenerated(project, upstream)
    log: list[str] = []
    entries = sources.fill(fresh, project, log=log.append)
    assert set(entries) == {"kernels", "tk", "flashinfer"}
    tree = entries["kernels"] / "tree"
    assert (tree / "csrc" / "cutlass" / "include" / "cutlass.h").read_text() == "// v1\n"
    assert not (tree / "later.txt").exists()  # the tag's commit, not the branch head
    assert os.access(tree / "gen.pyx", os.X_OK) and (tree / "alias").is_symlink()
    assert not list(sources.cache_root(project).rglob(".git"))

    context = tmp_path / "context"
    env = sources.stage(fresh, project, context)
    assert env == {
        "VLLM_KERNELS_SRC_DIR": "/src/deps/kernels",
        "TK_SRC_DIR": "/src/deps/tk/python/tk/tk",
    }
    values = sources.template_values(fresh)
    assert [(v["context"], v["target"]) for v in values["vllm_sources"]] == [
        ("sources/kernels", "/src/deps/kernels"),
        ("sources/tk", "/src/deps/tk"),
    ]
    assert values["flashinfer_source"] == "sources/flashinfer"
    assert upstream["tk"] in values["vllm_sources_pins"]
    assert sources.template_values(None)["vllm_sources"] == []
    staged = context / "sources" / "kernels" / "CMakeLists.txt"
    assert staged.stat().st_ino == (tree / "CMakeLists.txt").stat().st_ino  # a hard link
    assert (context / "sources" / "flashinfer" / "3rdparty" / "cutlass" / "include").is_dir()

    out = tmp_path / "export"
    sources.export(fresh, project, out, log=log.append)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    sources.export(fresh, project, out, log=log.append)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # same commit, same bytes

    # An air-gapped site: the cache wiped, every URL dead, no git on PATH.
    import shutil

    shutil.rmtree(sources.cache_root(project))
    offline = sources.with_urls(fresh, lambda _url: NOWHERE)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    log.clear()
    sources.fill(offline, project, from_dir=out, log=log.append)
    assert all("imported from" in line for line in log)
    assert sources.cached(offline.source("kernels"), project) is not None


def _retar(archive: Path, change) -> None:
    """Rewrite an exported tar with `change(member_dir)` applied; its manifest sha256 updated,
    so that only the content check can catch it."""
    work = archive.parent / "unpacked"
    with tarfile.open(archive) as tar:
        sources.safe_extract(tar, work)
    change(work)
    with tarfile.open(archive, "w") as tar:
        for item in sorted(work.iterdir()):
            tar.add(item, arcname=item.name)
    manifest = archive.parent / "sources.json"
    doc = json.loads(manifest.read_text())
    for entry in doc["sources"]:
        if entry["file"] == archive.name:
            entry["sha256"] = sources.sha256_file(archive)
    manifest.write_text(json.dumps(doc))


@pytest.fixture
def exported(project, upstream, tmp_path):
    fresh = regenerated(project, upstream)
    sources.fill(fresh, project, log=lambda _: None)
    out = tmp_path / "export"
    sources.export(fresh, project, out, log=lambda _: None)
    import shutil

    shutil.rmtree(sources.cache_root(project))
    return fresh, out


def _assert_nothing_cached(project: Project) -> None:
    root = sources.cache_root(project)
    leftovers = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert not [n for n in leftovers if n.startswith("kernels") or n.startswith(".")]


def test_a_tampered_file_in_an_export_is_refused_and_nothing_is_cached(project, exported):
    fresh, out = exported
    archive = out / f"{fresh.source('kernels').key}.tar"
    _retar(archive, lambda d: (d / "tree" / "CMakeLists.txt").write_text("project(evil)\n"))
    with pytest.raises(ConfigError) as info:
        sources.fill(fresh, project, from_dir=out, log=lambda _: None)
    message = str(info.value)
    assert "\n" not in message and "kernels" in message and "files differ from commit" in message
    _assert_nothing_cached(project)


def test_a_tampered_submodule_commit_object_is_refused(project, exported):
    fresh, out = exported
    archive = out / f"{fresh.source('kernels').key}.tar"

    def forge(d: Path) -> None:
        record = json.loads((d / "source.json").read_text())
        cut = fresh.source("kernels").submodules[0].commit
        raw = bytes.fromhex(record["objects"][cut]).replace(b"tree ", b"tree  ", 1)
        record["objects"][cut] = raw.hex()
        (d / "source.json").write_text(json.dumps(record))

    _retar(archive, forge)
    with pytest.raises(ConfigError, match="commit object is not commit"):
        sources.fill(fresh, project, from_dir=out, log=lambda _: None)
    _assert_nothing_cached(project)


def test_an_export_damaged_in_transit_is_refused_by_its_manifest(project, exported):
    fresh, out = exported
    archive = out / f"{fresh.source('tk').key}.tar"
    archive.write_bytes(archive.read_bytes()[:-1024] + b"\0" * 1024 + b"x")
    with pytest.raises(ConfigError, match="sha256 differs"):
        sources.fill(fresh, project, from_dir=out, log=lambda _: None)


def test_a_pin_the_export_lacks_is_refused_with_what_to_do(project, upstream, exported):
    fresh, out = exported
    moved = dataclasses.replace(
        fresh,
        sources=tuple(
            dataclasses.replace(s, commit=upstream["cut"]) if s.name == "tk" else s
            for s in fresh.sources
        ),
    )
    with pytest.raises(ConfigError, match=r"holds no tk at .*--export"):
        sources.fill(moved, project, from_dir=out, log=lambda _: None)


def test_a_pin_that_moved_upstream_is_refused_when_fetching(project, upstream):
    fresh = regenerated(project, upstream)
    kernels = fresh.source("kernels")
    wrong = dataclasses.replace(
        kernels,
        submodules=(dataclasses.replace(kernels.submodules[0], commit="2" * 40),),
    )
    only = dataclasses.replace(fresh, sources=(wrong,))
    with pytest.raises(ForgeError):
        sources.fill(only, project, log=lambda _: None)
    _assert_nothing_cached(project)


def test_stage_refuses_a_source_that_is_not_cached(project, upstream, tmp_path):
    fresh = regenerated(project, upstream)
    with pytest.raises(ConfigError, match="vllm-forge sources"):
        sources.stage(fresh, project, tmp_path / "context")


def test_cli_sources_fills_from_an_export_and_refuses_a_tampered_one(
    project, exported, capsys, monkeypatch
):
    fresh, out = exported
    argv = ["sources", "--pins", str(project.pins_file), "--lock-dir", str(project.lock_dir)]
    assert cli.main([*argv, "--from", str(out)]) == 0
    import shutil

    shutil.rmtree(sources.cache_root(project))
    archive = out / f"{fresh.source('tk').key}.tar"
    _retar(archive, lambda d: (d / "tree" / "README").write_text("changed\n"))
    capsys.readouterr()
    assert cli.main([*argv, "--from", str(out)]) == ConfigError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vllm-forge: error: tk in imported from")


# ---- git's environment and what it prints ---------------------------------------------------------


def test_git_trusts_the_ca_pip_trusts(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_CERT": str(ca), "HOME": str(tmp_path)}
    assert sources.git_environment(None, env)["GIT_SSL_CAINFO"] == str(ca)
    assert (
        sources.git_environment(None, {**env, "GIT_SSL_CAINFO": "/own"})["GIT_SSL_CAINFO"] == "/own"
    )
    bare = {"PIP_CONFIG_FILE": os.devnull, "HOME": str(tmp_path)}
    assert "GIT_SSL_CAINFO" not in sources.git_environment(None, bare)
    with pytest.raises(ConfigError, match="--ca-bundle"):
        sources.git_environment(str(tmp_path / "missing.pem"), bare)


def test_a_failed_fetch_says_so_in_one_line_without_the_credentials(tmp_path):
    secret = "s3cretT0kenValue42"
    url = f"https://user:{secret}@nonexistent.invalid/x.git"
    g = sources.Git(sources.git_environment(None, {**os.environ, "PIP_CONFIG_FILE": os.devnull}))
    with pytest.raises(IndexError_) as info:
        g.fetch_commit(tmp_path / "r.git", url, "3" * 40)
    assert secret not in str(info.value) and "\n" not in str(info.value)


# ---- drift: the checked-in pins against the real pinned vLLM sdist -------------------------------


@pytest.mark.network
def test_checked_in_pins_match_the_pinned_vllm_sdists_cmake(vllm_sdist):
    files = sources.cmake_files(vllm_sdist)
    checked_in = sources.read_pins(CHECKED_IN)
    assert sources.drift(checked_in, files) == []
    # with every override set, nothing in the CUDA build's CMake reaches the network
    assert sources.network_declarations(files) == []


def test_files_in_a_submodule_this_build_does_not_fetch_are_refused(tmp_path):
    repo = tmp_path / "r"
    sub = "3" * 40
    commit = make_repo(repo, {"src.cu": "x"}, {"rocm/ck": ("https://example.invalid/ck.git", sub)})
    raw = subprocess.run(
        ["git", "cat-file", "commit", commit], cwd=repo, capture_output=True, check=True
    ).stdout
    source = sources.Source(
        name="fa", used_by="vllm", env="FA_SRC_DIR", env_is_cmake_variable=True, subdir="",
        git_url="https://example.invalid/fa.git", tag="", commit=commit, declared_at="t",
        submodules=(sources.Submodule(path="rocm/ck", url="u", commit=sub, fetch=False, why="t"),),
    )  # fmt: skip
    tree = tmp_path / "tree"
    tree.mkdir()
    git("--work-tree", str(tree), "checkout", "HEAD", "--", ".", cwd=repo)
    (tree / "rocm" / "ck").mkdir(parents=True, exist_ok=True)
    sources.verify_tree(source, tree, {commit: raw.hex()}, "test")  # empty: as git leaves it
    (tree / "rocm" / "ck" / "planted.h").write_text("#error not ours\n")
    with pytest.raises(ConfigError, match="does not fetch, yet it holds files"):
        sources.verify_tree(source, tree, {commit: raw.hex()}, "test")


@pytest.mark.parametrize("python", ["with tarfile's filters", "without them (Debian's 3.11.2)"])
def test_safe_extract_refuses_names_and_links_out_of_its_folder(tmp_path, monkeypatch, python):
    if python.startswith("without"):
        monkeypatch.delattr(tarfile, "data_filter", raising=False)

    def archive(*members: tarfile.TarInfo) -> Path:
        path = tmp_path / f"a{len(list(tmp_path.iterdir()))}.tar"
        with tarfile.open(path, "w") as tar:
            for member in members:
                tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
        return path

    def file(name: str) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = 1
        return info

    def link(name: str, target: str) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        return info

    good = archive(file("d/f.txt"), link("d/l", "f.txt"))
    with tarfile.open(good) as tar:
        sources.safe_extract(tar, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "l").read_text() == "x"
    for bad in (file("../escape.txt"), link("l", "../../etc/passwd")):
        with tarfile.open(archive(bad)) as tar, pytest.raises(tarfile.TarError):
            sources.safe_extract(tar, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()
    absolute = f"/{tmp_path.name}-abs.txt"  # refused, or unpacked inside: never at the root
    with tarfile.open(archive(file(absolute))) as tar, contextlib.suppress(tarfile.TarError):
        sources.safe_extract(tar, tmp_path / "out3")
    assert not Path(absolute).exists()
