"""The build lock: the compile stages' tools, hash-pinned, within the runtime lock's versions.

The completeness tests read the build requirements from the REAL pinned vLLM sdist, fetched by
the script the image runs (scripts/fetch_sdist.py) into build/.cache, and check that the
runtime lock (less vLLM) plus the build lock meet every one of them, and FlashInfer's jit-cache
list too. The unit tests show the check failing, and a stale build lock refused.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from vllm_forge import lock, pins, sources, upstream
from vllm_forge.errors import ConfigError, IndexError_
from vllm_forge.project import Project

ROOT = Path(__file__).resolve().parents[1]
HERE = Project.at(ROOT / "versions.toml")
CACHE = ROOT / "build" / ".cache"
FETCH_SDIST = ROOT / "vllm_forge" / "scripts" / "fetch_sdist.py"


@pytest.fixture(scope="module")
def doc() -> dict:
    return pins.read_document(ROOT / "versions.toml")


@pytest.fixture(scope="module")
def rtx5090(doc) -> pins.Pins:
    return pins.resolve(doc, "rtx5090")


def elsewhere(tmp_path: Path, doc: dict | None = None) -> Project:
    """A project whose versions.toml lives in tmp_path (its locks: tmp_path/locks)."""
    import tomlkit

    path = tmp_path / "versions.toml"
    path.write_text(tomlkit.dumps(doc) if doc is not None else (ROOT / "versions.toml").read_text())
    return Project.at(path)


def locked_for_build(resolved: pins.Pins, project: Project = HERE) -> dict[str, str]:
    """What the compile stages have installed: the runtime lock less vLLM, then the build lock."""
    runtime = lock.pinned(lock.read_fresh_lock(resolved, project))
    runtime.pop("vllm")
    build = lock.pinned(lock.read_fresh_build_lock(resolved, project))
    assert not runtime.keys() & build.keys(), "the build lock repeats runtime entries"
    return runtime | build


# ---- the committed build lock ----------------------------------------------------------------


def test_committed_build_lock_is_fresh_for_versions_toml(rtx5090):
    text = lock.read_fresh_build_lock(rtx5090, HERE)
    assert text.startswith("# vllm-forge lock inputs: sha256:")
    assert text.count("--hash=sha256:") >= text.count("==")  # every entry hash-pinned


def test_a_profile_that_compiles_nothing_has_no_build_lock(doc):
    assert lock.read_fresh_build_lock(pins.resolve(doc, "debian-pypi"), HERE) is None


def test_build_lock_never_repins_a_runtime_package(rtx5090):
    runtime = lock.pinned(lock.read_fresh_lock(rtx5090, HERE))
    build = lock.pinned(lock.read_fresh_build_lock(rtx5090, HERE))
    assert build, "an empty build lock"
    assert not build.keys() & runtime.keys()
    assert {"torch", "numpy", "setuptools"} <= runtime.keys()


def test_build_lock_is_a_requirements_file_pip_installs_with_hashes(rtx5090):
    text = lock.read_fresh_build_lock(rtx5090, HERE)
    for line in text.splitlines():
        assert line.startswith(("#", "    --hash=sha256:")) or lock._ENTRY.match(line), line


# ---- the check itself can fail -----------------------------------------------------------------

LOCK = """\
# vllm-forge lock inputs: sha256:{digest}
setuptools==80.10.2 \\
    --hash=sha256:{h}
wheel==0.48.0 \\
    --hash=sha256:{h}
Jinja2==3.1.6 \\
    --hash=sha256:{h}
""".format(digest="0" * 64, h="1" * 64)


def test_a_requirement_missing_from_the_locks_is_reported(rtx5090):
    env = lock.target_environment(rtx5090)
    locked = lock.pinned(LOCK)
    assert lock.unsatisfied(["wheel", "setuptools>=77", "jinja2"], locked, env) == []
    without_wheel = lock.pinned(LOCK.replace("wheel==0.48.0", "# wheel gone"))
    assert lock.unsatisfied(["wheel", "setuptools>=77"], without_wheel, env) == [
        "wheel (not locked)"
    ]


def test_a_locked_version_outside_the_specifier_is_reported(rtx5090):
    env = lock.target_environment(rtx5090)
    locked = lock.pinned(LOCK.replace("setuptools==80.10.2", "setuptools==81.0.0"))
    assert lock.unsatisfied(["setuptools>=77.0.3,<81.0.0"], locked, env) == [
        "setuptools>=77.0.3,<81.0.0 (locked: 81.0.0)"
    ]


def test_committed_locks_fail_the_check_without_wheel(rtx5090):
    """The completeness check, fed the real locks with one entry taken out, fails."""
    locked = locked_for_build(rtx5090)
    del locked["wheel"]
    missing = lock.unsatisfied(
        upstream.FLASHINFER_JIT_CACHE_BUILD_REQUIRES, locked, lock.target_environment(rtx5090)
    )
    assert missing == ["wheel (not locked)"]


def test_requirements_for_another_platform_or_python_are_skipped(rtx5090):
    env = lock.target_environment(rtx5090)
    assert lock.unsatisfied(['pywin32; sys_platform == "win32"'], {}, env) == []
    assert lock.unsatisfied(['tomli; python_version < "3.11"'], {}, env) == []
    assert lock.unsatisfied(['cmake; platform_machine == "x86_64"'], {}, env) == [
        'cmake; platform_machine == "x86_64" (not locked)'
    ]


# ---- staleness -------------------------------------------------------------------------------


def _copy_locks(resolved: pins.Pins, project: Project) -> None:
    lock.write_lock(resolved, lock.read_fresh_lock(resolved, HERE), project)
    path = project.lock_path(lock.build_lock_name(resolved.profile))
    path.write_text(lock.read_fresh_build_lock(resolved, HERE))


def test_a_new_vllm_sdist_makes_the_build_lock_stale_not_the_runtime_lock(doc, tmp_path):
    project = elsewhere(tmp_path)
    _copy_locks(pins.resolve(doc, "rtx5090"), project)
    changed = copy.deepcopy(doc)
    changed["vllm"]["sdist_sha256"] = "f" * 64
    resolved = pins.resolve(changed, "rtx5090")
    assert lock.read_fresh_lock(resolved, project)  # the runtime does not depend on the sdist
    with pytest.raises(
        ConfigError,
        match=r"build lock of profile rtx5090 \(.*rtx5090-build.txt\) is stale: .*"
        r"run `nox -s lock` .*which writes .*rtx5090-build.txt",
    ):
        lock.read_fresh_build_lock(resolved, project)


def test_a_relocked_runtime_makes_the_build_lock_stale(rtx5090, tmp_path):
    """`lock --upgrade` can move the runtime's versions under the same pins: the build lock,
    resolved within the old versions, must be made again."""
    project = elsewhere(tmp_path)
    _copy_locks(rtx5090, project)
    runtime = lock.read_fresh_lock(rtx5090, HERE)
    version = lock.pinned(runtime)["setuptools"]
    assert f"\nsetuptools=={version} \\" in runtime
    lock.write_lock(
        rtx5090, runtime.replace(f"\nsetuptools=={version} \\", "\nsetuptools==77.0.3 \\"), project
    )
    with pytest.raises(ConfigError, match="build lock of profile rtx5090 .* is stale"):
        lock.read_fresh_build_lock(rtx5090, project)


def test_a_copy_of_the_pins_elsewhere_builds_from_the_packaged_build_lock(rtx5090, tmp_path):
    assert lock.read_fresh_build_lock(rtx5090, elsewhere(tmp_path)) == (
        lock.read_fresh_build_lock(rtx5090, HERE)
    )


def test_missing_build_lock_is_a_clear_error(doc, tmp_path):
    mine = copy.deepcopy(doc)
    mine["profiles"]["mine"] = mine["profiles"]["rtx5090"]
    project = elsewhere(tmp_path, mine)
    resolved = pins.resolve(mine, "mine")
    lock.write_lock(resolved, lock.read_fresh_lock(pins.resolve(doc, "rtx5090"), HERE), project)
    with pytest.raises(ConfigError, match="no build lock for profile mine: run `nox -s lock`"):
        lock.read_fresh_build_lock(resolved, project)


def test_flashinfer_revision_other_than_the_recorded_one_is_refused(doc):
    changed = copy.deepcopy(doc)
    changed["flashinfer"]["revision"] = "a" * 40
    resolved = pins.resolve(changed, "rtx5090")
    vllm = upstream.BuildRequirements(requirements_txt=("wheel",), build_system=())
    with pytest.raises(ConfigError, match="update FLASHINFER_JIT_CACHE_BUILD_REQUIRES"):
        lock.build_requirements(resolved, vllm)
    assert lock.build_inputs_digest(resolved, "") != lock.build_inputs_digest(
        pins.resolve(doc, "rtx5090"), ""
    )


def test_build_requirements_add_flashinfer_only_where_it_is_compiled(doc, rtx5090):
    vllm = upstream.BuildRequirements(requirements_txt=("cmake>=3.26.1",), build_system=("wheel",))
    flashinfer = [r for r in upstream.FLASHINFER_JIT_CACHE_BUILD_REQUIRES if r != "wheel"]
    assert lock.build_requirements(rtx5090, vllm) == [
        "cmake>=3.26.1",
        "wheel",
        *flashinfer,
        "build",
    ]
    no_jit = pins.resolve(doc, "rtx5090", {"flashinfer": {"jit_cache": "none"}})
    assert lock.build_requirements(no_jit, vllm) == ["cmake>=3.26.1", "wheel"]


def test_a_profile_named_like_a_build_lock_is_refused(doc, tmp_path):
    clash = copy.deepcopy(doc)
    clash["profiles"]["rtx5090-build"] = {"description": "clash"}
    with pytest.raises(ConfigError, match="profiles rtx5090 and rtx5090-build clash"):
        lock.refresh(elsewhere(tmp_path, clash), profiles=["rtx5090"], log=lambda _l: None)


# ---- reading vLLM's build requirements (pure) ------------------------------------------------


def test_use_existing_torch_drops_every_line_that_mentions_torch():
    text = "cmake>=3.26\ntorch==2.10.0\nTorchVision\n# torch comment\nwheel\n"
    assert upstream.drop_torch_lines(text) == "cmake>=3.26\nwheel\n"


def test_requirement_files_are_read_as_pip_reads_them():
    files = {
        "pyproject.toml": '[build-system]\nrequires = [\n  "wheel",\n  "torch == 2.10.0",\n]\n',
        "requirements/build.txt": (
            "# a comment\ncmake>=3.26.1  # trailing\n-r common.txt\n"
            "protobuf >= 5, \\\n    !=6.30.*\ntorch==2.10.0\n"
        ),
        "requirements/common.txt": "regex\n",
    }
    found = upstream.build_requirements_of(files)
    assert found.requirements_txt == ("cmake>=3.26.1", "regex", "protobuf >= 5,     !=6.30.*")
    assert found.build_system == ("wheel",)
    assert found.all == ("cmake>=3.26.1", "regex", "protobuf >= 5,     !=6.30.*", "wheel")


def test_an_option_the_reader_cannot_follow_is_refused():
    files = {
        "pyproject.toml": "[build-system]\nrequires = []\n",
        "requirements/build.txt": "--extra-index-url somewhere\ncmake\n",
    }
    with pytest.raises(ConfigError, match="option line '--extra-index-url somewhere'"):
        upstream.build_requirements_of(files)


def test_a_tree_without_build_txt_is_not_a_vllm_source(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[build-system]\nrequires = []\n")
    with pytest.raises(ConfigError, match="has no requirements/build.txt"):
        upstream.vllm_build_requirements(tmp_path)


def test_a_file_that_is_no_tarball_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "vllm-0.19.1.tar.gz"
    fake.write_bytes(b"sdist 0.19.1")
    with pytest.raises(ConfigError, match=r"is not a readable sdist \(") as info:
        upstream.vllm_build_requirements(fake)
    assert "\n" not in str(info.value)


# ---- against the real pinned sdist and the real index ------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def vllm_sdist(rtx5090) -> Path:
    """The pinned vLLM sdist, fetched by the image's own script into build/.cache (reused)."""
    vllm = rtx5090.vllm
    dest = CACHE / "sdist" / f"vllm-{vllm.version}.tar.gz"
    if dest.is_file() and _sha256(dest) == vllm.sdist_sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(FETCH_SDIST), "vllm", vllm.version, vllm.sdist_sha256, str(dest)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "unreachable" in result.stderr:
        reason = f"package index unreachable, cannot fetch the vLLM sdist: {result.stderr.strip()}"
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    assert result.returncode == 0, result.stderr
    assert _sha256(dest) == vllm.sdist_sha256
    return dest


@pytest.mark.network
def test_every_vllm_build_requirement_is_in_the_locks(rtx5090, vllm_sdist):
    required = upstream.vllm_build_requirements(vllm_sdist)
    from packaging.requirements import Requirement

    names = {lock.normalize_name(Requirement(r).name) for r in required.all}
    assert {"cmake", "setuptools", "setuptools-scm", "wheel", "ninja", "jinja2"} <= names
    assert not any("torch" in r.lower() for r in required.all)  # use_existing_torch.py's doing
    env = lock.target_environment(rtx5090)
    assert lock.unsatisfied(required.all, locked_for_build(rtx5090), env) == []


@pytest.mark.network
def test_every_flashinfer_jit_cache_build_requirement_is_in_the_locks(rtx5090):
    env = lock.target_environment(rtx5090)
    required = [*upstream.FLASHINFER_JIT_CACHE_BUILD_REQUIRES, *lock.BUILD_FRONTEND]
    assert lock.unsatisfied(required, locked_for_build(rtx5090), env) == []


@pytest.mark.network
def test_reading_matches_running_upstreams_use_existing_torch(vllm_sdist, tmp_path):
    """The reader's torch filter is vLLM's own script's: run that script on the extracted sdist
    (as the vllm-build stage does) and read the tree it leaves."""
    with tarfile.open(vllm_sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        sources.safe_extract(tar, tmp_path)
    tree = tmp_path / top
    result = subprocess.run(
        [sys.executable, "use_existing_torch.py"], cwd=tree, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert ">>> removed from requirements/build.txt: torch==" in result.stdout
    assert upstream.vllm_build_requirements(tree) == upstream.vllm_build_requirements(vllm_sdist)


@pytest.mark.network
def test_runtime_and_build_locks_together_are_one_consistent_environment(rtx5090, tmp_path):
    """The pip-check of the compile stages, without installing 4 GB: resolving exactly the
    pinned set (runtime less vLLM, plus build) must add nothing and move nothing."""
    locked = locked_for_build(rtx5090)
    req_file = tmp_path / "together.in"
    req_file.write_text("".join(f"{n}=={v}\n" for n, v in sorted(locked.items())))
    argv = lock.compile_argv(rtx5090, lock.uv_binary(), req_file, _index_url())
    argv = [a for a in argv if a != "--generate-hashes"]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    _skip_if_unreachable(result.stderr)
    assert result.returncode == 0, result.stderr
    assert lock.pinned(result.stdout) == locked


@pytest.mark.network
def test_make_build_lock_resolves_against_the_real_index(rtx5090, vllm_sdist, tmp_path):
    runtime = lock.read_fresh_lock(rtx5090, HERE)
    required = upstream.vllm_build_requirements(vllm_sdist)
    try:
        text = lock.make_build_lock(rtx5090, runtime, required, tmp_path, _index_url())
    except IndexError_ as error:
        _skip_if_unreachable(str(error))
        raise
    assert lock.lock_digest(text) == lock.build_inputs_digest(rtx5090, runtime)
    made = lock.pinned(text)
    assert {"cmake", "wheel", "setuptools-scm", "build"} <= made.keys()
    assert not made.keys() & lock.pinned(runtime).keys()


@pytest.mark.network
def test_the_locked_wheel_still_has_wheel_bdist_wheel(rtx5090, tmp_path):
    """flashinfer-jit-cache's build_backend.py does `from wheel.bdist_wheel import bdist_wheel`:
    the locked `wheel` must still ship that module (newer releases keep only a shim)."""
    import zipfile

    entry = next(
        e
        for e in lock._entries(lock.read_fresh_build_lock(rtx5090, HERE))
        if lock._entry_name(e) == "wheel"
    )
    (tmp_path / "wheel.txt").write_text(lock._join([entry]))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-q"]
        + ["-r", str(tmp_path / "wheel.txt"), "-d", str(tmp_path / "d")],
        capture_output=True,
        text=True,
    )
    _skip_if_unreachable(result.stderr)
    assert result.returncode == 0, result.stderr
    (downloaded,) = (tmp_path / "d").glob("wheel-*.whl")
    assert "wheel/bdist_wheel.py" in zipfile.ZipFile(downloaded).namelist()


def _index_url() -> str:
    from vllm_forge import pipconfig

    return pipconfig.index_url()


def _skip_if_unreachable(stderr: str) -> None:
    markers = ("Failed to fetch", "unreachable", "Network is unreachable", "Connection refused")
    if any(m in stderr for m in markers):
        reason = f"package index unreachable: {stderr.strip().splitlines()[-1]}"
        print(reason, file=sys.stderr)
        pytest.skip(reason)


def test_a_git_vllm_source_is_checked_out_at_its_revision_and_read(doc, tmp_path):
    """[vllm].source = "git": the build lock reads the pinned revision (a local repository
    stands in for [vllm].git_url)."""
    repo = tmp_path / "vllm"
    (repo / "requirements").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[build-system]\nrequires = [\n  "wheel",\n]\n')
    (repo / "requirements" / "build.txt").write_text("cmake>=3.26.1\ntorch==2.10.0\n")

    def git(*args: str) -> str:
        argv = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "pinned")
    revision = git("rev-parse", "HEAD")
    (repo / "requirements" / "build.txt").write_text("moved-on\n")
    git("commit", "-qam", "later")
    resolved = pins.resolve(
        doc, "rtx5090", {"vllm": {"source": "git", "git_url": str(repo), "revision": revision}}
    )
    (tmp_path / "project").mkdir()
    source = upstream.vllm_source(resolved, elsewhere(tmp_path / "project"))
    assert source == tmp_path / "project" / "build" / ".cache" / "src" / "vllm" / revision
    assert upstream.vllm_build_requirements(source) == upstream.BuildRequirements(
        requirements_txt=("cmake>=3.26.1",), build_system=("wheel",)
    )
