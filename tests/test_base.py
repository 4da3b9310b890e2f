"""The Debian base made here is reproducible: same inputs, same tarball."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vllm_forge import base, pins

ROOT = Path(__file__).resolve().parents[1]


def test_mmdebstrap_command_is_minimal_and_names_the_mirror_only_when_pinned():
    spec = pins.BaseSpec(suite="bookworm", image="localhost/x:y")
    argv = base.mmdebstrap_argv(spec, Path("/t/out.tar"))
    assert argv[:3] == ["mmdebstrap", "--variant=minbase", "--include=ca-certificates"]
    assert argv[-2:] == ["bookworm", "/t/out.tar"]
    pinned = base.mmdebstrap_argv(spec, Path("/t/out.tar"), "http://mirror.example/debian")
    assert pinned[-1] == "http://mirror.example/debian"


@pytest.mark.network
def test_same_inputs_give_the_same_tarball(tmp_path):
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap not installed (nox -s setup)")
    resolved = pins.load(ROOT / "versions.toml", "debian-pypi")
    first = base.bootstrap(resolved.base, tmp_path / "a.tar", epoch=resolved.source_date_epoch)
    second = base.bootstrap(resolved.base, tmp_path / "b.tar", epoch=resolved.source_date_epoch)
    assert first == second
