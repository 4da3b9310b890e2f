"""Pure parts of the build loop: ccache statistics, replay scripts, tags, secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vllm_forge import build, buildsecrets
from vllm_forge.engines import Engine
from vllm_forge.errors import ConfigError

LOG = """\
#15 1.655 vllm-forge-ccache kernel-probe cache_miss\t1
#15 1.655 vllm-forge-ccache kernel-probe cache_size_kibibyte\t2048
#15 1.655 vllm-forge-ccache kernel-probe direct_cache_hit\t2
#15 1.655 vllm-forge-ccache kernel-probe files_in_cache\t4
#15 1.655 vllm-forge-ccache kernel-probe preprocessed_cache_hit\t1
vllm-forge-ccache vllm direct_cache_hit\t0
vllm-forge-ccache vllm cache_miss\t0
"""


def test_ccache_lines_become_hit_rates():
    stats = build.parse_ccache(LOG.splitlines())
    probe = stats["kernel-probe"]
    assert (probe.hits, probe.misses, probe.files, probe.size_kib) == (3, 1, 4, 2048)
    assert probe.hit_rate == 0.75
    assert stats["vllm"].hit_rate is None
    assert "hit rate 75%" in probe.describe() and "hit rate n/a" in stats["vllm"].describe()


def test_default_tags():
    assert build.default_tag("rtx5090", "runtime") == "localhost/vllm-forge:rtx5090"
    assert build.default_tag("rtx5090", "builder") == "localhost/vllm-forge:rtx5090-builder"


def test_replay_script_is_valid_shell_and_replaces_the_temporary_secrets(tmp_path):
    engine = Engine(
        name="docker", client="/usr/bin/docker", mode="buildkit-classic", version="20.10.24",
        env={"DOCKER_BUILDKIT": "1"},
    )  # fmt: skip
    secrets = {"pip-ca": tmp_path / "ca.pem", "pip-conf": tmp_path / "pip.conf"}
    argv = ["/usr/bin/docker", "build", "--secret", f"id=pip-ca,src={secrets['pip-ca']}",
            "--secret", f"id=pip-conf,src={secrets['pip-conf']}", "--build-arg", "A=b c", "."]  # fmt: skip
    script = build.replay_script(engine, argv, secrets, tmp_path)
    assert str(tmp_path / "ca.pem") not in script
    assert 'id=pip-ca,src="$FORGE_PIP_CA"' in script and "DOCKER_BUILDKIT=1 " in script
    assert "'A=b c'" in script
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0


def test_ca_bundle_choice(tmp_path):
    mine = tmp_path / "corp.pem"
    mine.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = buildsecrets.PipSettings()
    assert buildsecrets.ca_bundle(str(mine), settings, {}) == mine
    assert buildsecrets.ca_bundle(None, buildsecrets.PipSettings(cert=str(mine)), {}) == mine
    with pytest.raises(ConfigError, match="does not exist; pass --ca-bundle"):
        buildsecrets.ca_bundle(str(tmp_path / "missing.pem"), settings, {})


def test_build_secrets_live_in_a_private_dir_that_is_removed():
    with buildsecrets.build_secrets() as secrets:
        folder = secrets["pip-ca"].parent
        assert set(secrets) == {"pip-ca", "pip-conf"}
        assert (folder.stat().st_mode & 0o777) == 0o700
        assert "cert = /run/secrets/pip-ca" in secrets["pip-conf"].read_text()
        assert not str(folder).startswith(str(Path.cwd()))
    assert not folder.exists()
