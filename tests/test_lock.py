"""The committed locks match versions.toml, and the build installs exactly from them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from vllm_forge import lock, pins
from vllm_forge.errors import ConfigError
from vllm_forge.project import PACKAGED_LOCKS, Project

ROOT = Path(__file__).resolve().parents[1]
HERE = Project.at(ROOT / "versions.toml")


@pytest.fixture(scope="module")
def doc() -> dict:
    return pins.read_document(ROOT / "versions.toml")


def elsewhere(tmp_path: Path, text: str | None = None) -> Project:
    """A project whose versions.toml lives outside the checkout (its locks: tmp_path/locks)."""
    (tmp_path / "versions.toml").write_text(text or (ROOT / "versions.toml").read_text())
    return Project.at(tmp_path / "versions.toml")


@pytest.mark.parametrize("profile", ["rtx5090", "debian-pypi"])
def test_committed_lock_is_fresh_for_versions_toml(doc, profile):
    """Fails when versions.toml changed without `nox -s lock`."""
    text = lock.read_fresh_lock(pins.resolve(doc, profile), HERE)
    assert text.startswith("# vllm-forge lock inputs: sha256:")


@pytest.mark.parametrize("profile", ["rtx5090", "debian-pypi"])
def test_lock_pins_every_top_level_requirement_with_hashes(doc, profile):
    resolved = pins.resolve(doc, profile)
    text = lock.read_fresh_lock(resolved, HERE)
    for requirement in lock.requirements(resolved):
        block = text.split(requirement + " \\\n", 1)
        assert len(block) == 2, f"{requirement} missing from the {profile} lock"
        assert block[1].lstrip().startswith("--hash=sha256:")


def test_checkout_keeps_its_locks_in_the_package_and_elsewhere_beside_the_pins(tmp_path):
    assert HERE.lock_dir == PACKAGED_LOCKS
    assert elsewhere(tmp_path).lock_dir == tmp_path / "locks"
    assert Project.at(ROOT / "versions.toml", tmp_path / "l").lock_dir == tmp_path / "l"


def test_a_copy_of_the_pins_elsewhere_builds_from_the_packaged_lock(doc, tmp_path):
    project = elsewhere(tmp_path)
    resolved = pins.resolve(doc, "debian-pypi")
    assert lock.read_fresh_lock(resolved, project) == lock.read_fresh_lock(resolved, HERE)


def test_a_fresh_lock_beside_the_pins_wins_over_the_packaged_one(doc, tmp_path):
    project = elsewhere(tmp_path)
    resolved = pins.resolve(doc, "debian-pypi")
    text = lock.read_fresh_lock(resolved, HERE) + "# mine\n"
    assert lock.write_lock(resolved, text, project) == tmp_path / "locks" / "debian-pypi.txt"
    assert lock.read_fresh_lock(resolved, project).endswith("# mine\n")


def test_changing_a_pin_makes_the_lock_stale(doc, tmp_path):
    project = elsewhere(tmp_path)
    resolved = pins.resolve(doc, "debian-pypi")
    lock.write_lock(resolved, lock.read_fresh_lock(resolved, HERE), project)
    changed = copy.deepcopy(doc)
    changed["torch"]["torchaudio"] = "2.9.1"
    with pytest.raises(
        ConfigError,
        match=r"lock of profile debian-pypi \(.*\) is stale: versions.toml changed .* run `nox -s lock`",
    ):
        lock.read_fresh_lock(pins.resolve(changed, "debian-pypi"), project)


def test_python_or_platform_change_makes_the_lock_stale(doc):
    resolved = pins.resolve(doc, "debian-pypi")
    other = pins.resolve(doc, "debian-pypi", {"python": {"platform": "x86_64-manylinux_2_28"}})
    assert lock.inputs_digest(resolved) != lock.inputs_digest(other)


def test_missing_lock_is_a_clear_error(doc, tmp_path):
    mine = copy.deepcopy(doc)
    mine["profiles"]["mine"] = mine["profiles"]["rtx5090"]
    with pytest.raises(ConfigError, match="no lock for profile mine: run `nox -s lock`"):
        lock.read_fresh_lock(pins.resolve(mine, "mine"), elsewhere(tmp_path))


def test_split_keeps_hashes_and_drops_vllm_for_compiled_profiles(doc):
    resolved = pins.resolve(doc, "rtx5090")
    parts = lock.split(lock.read_fresh_lock(resolved, HERE), drop_vllm=True)
    assert parts.vllm == ""
    assert "\nvllm==" not in "\n" + parts.deps
    assert "torch==2.10.0 \\\n    --hash=sha256:" in parts.deps
    assert "#" not in parts.deps  # no comments: a requirements file pip reads with hashes
    wheel = lock.split(
        lock.read_fresh_lock(pins.resolve(doc, "debian-pypi"), HERE), drop_vllm=False
    )
    assert wheel.vllm.startswith("vllm==0.19.1 \\\n    --hash=sha256:")
    assert "71a87f46cafab4489c69a5c5c83b870d0235e5694d8222303d460576293dc719" in wheel.vllm


@pytest.mark.network
def test_uv_resolves_the_reachable_profile_against_the_real_index(doc, tmp_path):
    resolved = pins.resolve(doc, "debian-pypi")
    text = lock.make_lock(resolved, tmp_path)
    assert lock.lock_digest(text) == lock.inputs_digest(resolved)
    assert "nvidia-cuda-runtime-cu12==12.8.90" in text  # torch 2.10.0's CUDA 12.8 runtime
    parts = lock.split(text, drop_vllm=False)
    assert parts.vllm and parts.deps.count("==") > 100


def test_an_unchanged_copy_of_the_pins_needs_no_relock(tmp_path, monkeypatch):
    """`lock` and the build agree on "current": the packaged lock serves an unchanged copy."""

    def resolve_again(*_args, **_kwargs):
        raise AssertionError("re-resolved a profile whose lock is current")

    monkeypatch.setattr(lock, "make_lock", resolve_again)
    monkeypatch.setattr(lock, "make_build_lock", resolve_again)  # the build locks too
    monkeypatch.setattr(lock.upstream, "vllm_source", resolve_again)  # no sdist download
    assert lock.refresh(elsewhere(tmp_path), log=lambda _line: None) == []
    assert not (tmp_path / "locks").exists()
