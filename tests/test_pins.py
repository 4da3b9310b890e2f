"""versions.toml validation: every bad input gets one clear line, and nothing is written."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_forge import pins
from vllm_forge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def doc() -> dict:
    return pins.read_document(ROOT / "versions.toml")


def with_change(doc: dict, dotted: str, value) -> dict:
    changed = copy.deepcopy(doc)
    *path, last = dotted.split(".")
    node = changed
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value
    return changed


def test_every_profile_in_the_repo_resolves(doc):
    for name in pins.profile_names(doc):
        resolved = pins.resolve(doc, name)
        assert resolved.profile == name
        assert resolved.description


def test_default_profile_is_rtx5090_compiling_vllm_for_12_0(doc):
    resolved = pins.resolve(doc)
    assert resolved.profile == "rtx5090"
    assert resolved.compiles_vllm
    assert [str(a) for a in resolved.build.arch_list] == ["12.0"]
    assert resolved.devel.digest.startswith("sha256:") and resolved.runtime.digest


def test_debian_pypi_profile_overrides_only_what_it_names(doc):
    default, reachable = pins.resolve(doc, "rtx5090"), pins.resolve(doc, "debian-pypi")
    assert reachable.devel.local and reachable.runtime.local
    assert reachable.vllm.source == "wheel" and reachable.nvcc == "index"
    assert reachable.python_version == "3.11"
    assert reachable.torch == default.torch and reachable.vllm.version == default.vllm.version


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("build.torch_cuda_arch_list", "12", "'12' is not a CUDA architecture; accepted forms"),
        ("build.torch_cuda_arch_list", "sm_120", "'sm_120' is not a CUDA architecture"),
        ("build.torch_cuda_arch_list", "12,0", "'12,0' is not a CUDA architecture"),
        ("build.max_jobs", 0, "[build].max_jobs = 0; it must be at least 1"),
        ("build.max_jobs", "many", "accepted: 'auto' or a whole number"),
        ("build.nvcc_threads", 0, "nvcc_threads = 0"),
        (
            "images.devel",
            "nvidia/cuda:12.8.1-devel-ubuntu24.04@sha256:abc",
            "is not 'sha256:' followed by 64",
        ),
        ("images.devel", "nvidia/cuda:12.8.1-devel-ubuntu24.04", "is not pinned by digest"),
        ("images.runtime", "nvidia/cuda@sha256:" + "a" * 64, "has no tag"),
        ("vllm.sdist_sha256", "", "needs [vllm].sdist_sha256"),
        ("vllm.source", "pypi", "[vllm].source = 'pypi'; accepted: 'sdist', 'git', 'wheel'"),
        ("build.max_job", 4, "unknown key [build].max_job; known keys:"),
        ("buld.max_jobs", 4, "unknown table [buld]"),
    ],
)
def test_bad_input_is_one_clear_error(doc, dotted, value, message):
    changed = with_change(doc, dotted, value)
    with pytest.raises(ConfigError) as info:
        pins.resolve(changed)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_two_part_torch_version_is_accepted_as_written(doc):
    assert pins.resolve(with_change(doc, "torch.version", "2.10")).torch.version == "2.10"


def test_git_source_needs_a_full_revision(doc):
    changed = with_change(with_change(doc, "vllm.source", "git"), "vllm.revision", "v0.19.1")
    with pytest.raises(ConfigError, match="needs \\[vllm\\].revision: a full 40-hex commit"):
        pins.resolve(changed)


def test_git_source_with_a_full_revision_pins_vllm_to_that_commit(doc):
    ok = with_change(with_change(doc, "vllm.source", "git"), "vllm.revision", "a" * 40)
    assert pins.resolve(ok).vllm.source_pin.endswith("@" + "a" * 40)


def test_unknown_profile_lists_the_known_ones(doc):
    with pytest.raises(
        ConfigError, match="unknown profile 'rtx4090'; known profiles: debian-pypi, rtx5090"
    ):
        pins.resolve(doc, "rtx4090")


def test_unknown_key_inside_a_profile(doc):
    changed = with_change(doc, "profiles.debian-pypi.vllm.sorce", "wheel")
    with pytest.raises(ConfigError, match=r"\[profiles.debian-pypi\]: unknown key \[vllm\].sorce"):
        pins.resolve(changed)


def test_localhost_image_needs_a_base_that_makes_it(doc):
    changed = with_change(doc, "images.runtime", "localhost/mine:1")
    with pytest.raises(ConfigError, match="makes no such base"):
        pins.resolve(changed, "rtx5090")


def test_overrides_are_validated_too(doc):
    with pytest.raises(ConfigError, match="'8.9,PTX' is not a CUDA architecture"):
        pins.resolve(doc, None, {"build": {"torch_cuda_arch_list": "8.9,PTX"}})


def test_labels_carry_every_pin_under_its_own_key(doc):
    """Key by key against versions.toml itself: torch and torchaudio share a version, so a
    comparison of values alone would not see the torchaudio label go missing."""
    labels = pins.resolve(doc).labels()
    own = {
        "profile": "rtx5090",
        "cuda": doc["cuda"]["version"],
        "base.devel": doc["images"]["devel"],
        "base.runtime": doc["images"]["runtime"],
        "python": doc["python"]["version"],
        "torch": doc["torch"]["version"],
        "torchvision": doc["torch"]["torchvision"],
        "torchaudio": doc["torch"]["torchaudio"],
        "flashinfer": doc["flashinfer"]["version"],
        "flashinfer.packages": ",".join(doc["flashinfer"]["packages"]),
        "flashinfer.jit-cache": doc["flashinfer"]["jit_cache"],
        "vllm": doc["vllm"]["version"],
        "vllm.source": f"sdist sha256:{doc['vllm']['sdist_sha256']}",
        "torch-cuda-arch-list": doc["build"]["torch_cuda_arch_list"],
        "nvcc": doc["toolchain"]["nvcc"],
    }
    expected = {f"io.github.vllm-forge.{key}": value for key, value in own.items()}
    expected["org.opencontainers.image.version"] = doc["vllm"]["version"]
    expected["org.opencontainers.image.base.name"] = doc["images"]["runtime"]
    missing = sorted(set(expected) - set(labels))
    wrong = {k: (labels[k], v) for k, v in expected.items() if k in labels and labels[k] != v}
    assert not missing and not wrong, f"missing: {missing}; wrong (found, expected): {wrong}"
    assert sorted(labels) == sorted(expected), "a label this test does not know"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vllm_forge.cli", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["render", "--max-jobs", "0"], "--max-jobs = 0; it must be at least 1"),
        (["render", "--arch-list", "sm_120"], "'sm_120' is not a CUDA architecture"),
        (["render", "--profile", "nope"], "unknown profile 'nope'"),
        (["render", "--tag", "Vllm Forge:latest"], "is not an image reference"),
        (["render", "--secret", "hf-token"], "write it as ID=FILE"),
    ],
)
def test_cli_bad_input_exits_nonzero_with_one_line_and_writes_nothing(tmp_path, args, expected):
    (tmp_path / "versions.toml").write_bytes((ROOT / "versions.toml").read_bytes())
    result = run_cli(*args, "--pins", str(tmp_path / "versions.toml"), cwd=tmp_path)
    assert result.returncode == ConfigError.exit_code
    assert result.stderr.strip().count("\n") == 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["versions.toml"]


def test_cli_max_jobs_from_environment_is_validated(tmp_path):
    (tmp_path / "versions.toml").write_bytes((ROOT / "versions.toml").read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "vllm_forge.cli", "jobs", "--pins", str(tmp_path / "versions.toml")],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "MAX_JOBS": "-3"},
    )
    assert result.returncode == ConfigError.exit_code
    assert "environment MAX_JOBS = -3" in result.stderr


# ---------------------------------------------------------------------------- issue 10
@pytest.mark.parametrize(
    ("ref", "cuda"),
    [
        ("nvidia/cuda:12.8.1-devel-ubuntu24.04@sha256:" + "a" * 64, "12.8"),
        ("nvidia/cuda:13.0.1-base-ubuntu24.04@sha256:" + "a" * 64, "13.0"),
        ("127.0.0.1:5000/nvidia/cuda:12.9.0@sha256:" + "a" * 64, "12.9"),
        ("ubuntu:24.04@sha256:" + "a" * 64, None),  # not a CUDA tag: no CUDA claimed
        ("localhost/vllm-forge/debian:bookworm", None),
    ],
)
def test_the_cuda_a_base_tag_names(ref, cuda):
    assert pins.ImageRef.parse(ref, "k").cuda == cuda


def test_bases_cuda_version_and_torch_must_agree(doc):
    with pytest.raises(ConfigError, match=r"CUDA 12.8 image .* but \[cuda\].version = '13.0'"):
        pins.resolve(with_change(doc, "cuda.version", "13.0"))
    runtime = doc["images"]["runtime"].replace("12.8.1", "12.9.0")
    with pytest.raises(ConfigError, match=r"\[images\].runtime is a CUDA 12.9 image"):
        pins.resolve(with_change(doc, "images.runtime", runtime))
    # local bases name no CUDA: only the lock can contradict [cuda].version there
    assert pins.resolve(with_change(doc, "cuda.version", "13.0"), "debian-pypi").cuda_version


@pytest.mark.parametrize("profile", ["rtx5090", "debian-pypi"])
def test_the_repos_locks_hold_a_torch_for_the_pinned_cuda(doc, profile):
    text = (ROOT / "vllm_forge" / "locks" / f"{profile}.txt").read_text()
    assert pins.lock_torch_cuda(text) == [("12.8", "nvidia-cuda-runtime-cu12==12.8.90")]
    pins.check_lock_cuda(pins.resolve(doc, profile), text, "lock")


def test_a_lock_whose_torch_is_another_cuda_is_refused(doc):
    resolved = pins.resolve(doc, "debian-pypi")
    with pytest.raises(ConfigError, match=r"torch 2.10.0 is a CUDA 13.0 build \(nvidia-cuda-runt"):
        pins.check_lock_cuda(resolved, "nvidia-cuda-runtime==13.0.96 \\\n", "the lock")
    with pytest.raises(ConfigError, match="pins no CUDA runtime"):
        pins.check_lock_cuda(resolved, "torch==2.10.0 \\\n", "the lock")


def test_compiling_vllm_with_another_cuda_major_nvcc_is_refused(doc):
    changed = with_change(doc, "toolchain.nvcc", "index")
    with pytest.raises(ConfigError, match="torch's extension build refuses another CUDA major"):
        pins.resolve(changed, "rtx5090")
    unpinned = with_change(doc, "profiles.debian-pypi.toolchain.nvcc_package", "cuda-toolkit")
    with pytest.raises(ConfigError, match="with nvcc = 'index' it must pin the toolkit exactly"):
        pins.resolve(unpinned, "debian-pypi")


def test_the_nvcc_of_each_profile(doc):
    assert pins.resolve(doc, "rtx5090").nvcc_cuda == "12.8"
    assert pins.resolve(doc, "debian-pypi").nvcc_cuda == "13.0"


def test_the_repos_pins_carry_no_warning(doc):
    assert all(not pins.resolve(doc, name).warnings for name in pins.profile_names(doc))


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("project.source_date_epoch", -1, "[project].source_date_epoch = -1; it is seconds since"),
        ("budget.slim_max_gb", 0, "[budget].slim_max_gb = 0; it must be a size in GB above 0"),
        ("profiles.rtx5090.description", 5, "[profiles.rtx5090].description must be a str"),
        ("profiles.rtx5090", 1, "[profiles].rtx5090 = 1: a profile is a table"),
        ("profiles", 3, "profiles = 3: write each profile as a [profiles.NAME] table"),
    ],
)
def test_values_once_silently_accepted_are_refused(doc, dotted, value, message):
    with pytest.raises(ConfigError) as info:
        pins.resolve(with_change(doc, dotted, value), "debian-pypi")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_pins_file_that_is_a_directory_or_not_utf8_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        pins.read_document(tmp_path)
    latin1 = tmp_path / "versions.toml"
    latin1.write_bytes(b'# caf\xe9\n[project]\ndefault_profile = "x"\n')
    with pytest.raises(ConfigError, match="byte 0xe9 at offset 5 is not UTF-8"):
        pins.read_document(latin1)
