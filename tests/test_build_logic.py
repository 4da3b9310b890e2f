"""Pure parts of the build loop: ccache statistics, replay scripts, tags, secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vllm_forge import build, buildsecrets, redact
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


def test_build_output_reaches_the_log_and_the_terminal_redacted(tmp_path):
    """A RUN step that prints the index URL and a --secret file: both masked in log and echo."""
    token = tmp_path / "hf-token"
    token.write_text("hf_planted_0123456789\n")
    redact.remember_file(token)
    engine = Engine(name="docker", client="/bin/sh", mode="buildkit-classic", version="0")
    script = "echo 'index-url = http://u:PLANTED-0123@127.0.0.1:9/simple'; cat " + str(token)
    shown: list[str] = []
    log = tmp_path / "build.log"
    rc, _ = build.stream(engine, ["/bin/sh", "-c", script], log, shown.append, secrets_dir=tmp_path)
    assert rc == 0
    for text in (log.read_text(), "\n".join(shown)):
        assert "PLANTED" not in text and "hf_planted" not in text
        assert "index-url = http://***@127.0.0.1:9/simple" in text
    redact.forget_all()


def test_replay_script_is_written_redacted_and_stays_valid_shell(tmp_path):
    engine = Engine(name="podman", client="/usr/bin/podman", mode="podman", version="4.3.1")
    argv = ["/usr/bin/podman", "build", "--build-arg",
            "INDEX=http://u:PLANTED-0123@127.0.0.1/simple?token=abc", "."]  # fmt: skip
    script = tmp_path / "replay.sh"
    redact.write_text(script, build.replay_script(engine, argv, {}, tmp_path))
    text = script.read_text()
    assert "PLANTED" not in text and "token=abc" not in text
    assert "INDEX=http://***@127.0.0.1/simple?token=***" in text
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


def test_secrets_go_to_memory_backed_storage_only(tmp_path):
    on_disk = tmp_path / "runtime"  # a plain directory: not memory-backed
    on_disk.mkdir()
    roots = buildsecrets.secrets_roots({"XDG_RUNTIME_DIR": str(on_disk)})
    assert on_disk not in roots
    mounts = Path("/proc/self/mounts").read_text()
    if " /dev/shm tmpfs " in mounts:
        assert roots[0] == Path("/dev/shm")


def test_compile_lines_from_the_admission_launcher_become_one_summary_line_per_stage():
    # what `compile_admit.py --summary | sed ...` prints in a compile step, inside engine output
    log = [
        "#12 812.3 vllm-forge-compile vllm units 311",
        "#12 812.3 vllm-forge-compile vllm seconds 40211",
        "#12 812.3 vllm-forge-compile vllm waited 1830",
        "#12 812.3 vllm-forge-compile vllm heaviest 11059 scaled_mm_sm120_fp8.cu",
        "#12 812.3 vllm-forge-compile vllm over-count 14",
        "#12 812.3 vllm-forge-compile vllm over-estimate 9400 8192 cutlass-sm120-other x_sm120.cu",
        "#14 2.0 vllm-forge-compile flashinfer units 0",
    ]
    compiles = build.parse_compiles(log)
    assert compiles == {
        "vllm": "311 units, 30 job-minutes waiting for memory, heaviest 10.8 GiB"
        " (scaled_mm_sm120_fp8.cu); 14 above compile_memory.toml, most 9.2 > 8.0 GiB"
        " (cutlass-sm120-other: x_sm120.cu)"
    }
