"""The engine abstraction's argument lists, and detection against the real machine."""

from __future__ import annotations

import resource
from pathlib import Path

from vllm_forge import engines
from vllm_forge.engines import BuildRequest, Engine

REQ = BuildRequest(
    context=Path("/ctx"),
    dockerfile=Path("/ctx/Dockerfile"),
    tag="localhost/x:y",
    target="runtime",
    build_args={"MAX_JOBS": "4"},
    secrets={"pip-ca": Path("/tmp/s/ca.pem")},
    timestamp=1764201600,
)


def test_classic_docker_builds_with_buildkit_env_and_no_timestamp_flag():
    engine = Engine(
        name="docker", client="/usr/bin/docker", mode="buildkit-classic", version="20.10.24",
        env={"DOCKER_BUILDKIT": "1"},
    )  # fmt: skip
    argv = engine.build_argv(REQ)
    assert argv[:3] == ["/usr/bin/docker", "build", "--progress=plain"]
    assert argv[argv.index("--target") : argv.index("--target") + 2] == ["--target", "runtime"]
    assert "--secret" in argv and "id=pip-ca,src=/tmp/s/ca.pem" in argv
    assert "MAX_JOBS=4" in argv and "SOURCE_DATE_EPOCH=1764201600" in argv
    assert "--timestamp" not in argv and argv[-1] == "/ctx"


def test_podman_builds_oci_format_with_a_fixed_timestamp():
    engine = Engine(name="podman", client="podman", mode="podman", version="4.3.1")
    argv = engine.build_argv(REQ)
    assert argv[:5] == ["podman", "build", "--layers", "--format", "oci"]
    assert argv[argv.index("--timestamp") + 1] == "1764201600"


def test_buildx_loads_the_image():
    engine = Engine(name="docker", client="docker", mode="buildx", version="20.10.24")
    argv = engine.build_argv(REQ)
    assert argv[:3] == ["docker", "buildx", "build"] and "--load" in argv


def test_podman_run_carries_ulimits_within_the_hosts_limits():
    engine = Engine(name="podman", client="podman", mode="podman", version="4.3.1")
    argv = engine.run_argv("img", ["-c", "true"], entrypoint="python")
    nofile = argv[argv.index("--ulimit") + 1]
    assert nofile.startswith("nofile=")
    soft = int(nofile.split("=")[1].split(":")[0])
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert soft <= hard or hard == resource.RLIM_INFINITY
    assert argv[-3:] == ["img", "-c", "true"]
    assert argv[argv.index("--entrypoint") + 1] == "python"


def test_docker_run_has_no_podman_quirks():
    engine = Engine(name="docker", client="docker", mode="buildkit-classic", version="20.10.24")
    assert "--ulimit" not in engine.run_argv("img", [])


def test_unknown_engine_name_is_a_clear_error():
    try:
        engines.detect("containerd")
    except engines.EngineError as exc:
        assert "choose docker or podman" in str(exc)
    else:
        raise AssertionError("expected EngineError")


def test_detection_skips_a_docker_client_that_cannot_do_buildkit(tmp_path, monkeypatch):
    """A docker >= 23 client without buildx refuses BuildKit builds: it must be passed over."""
    fake = tmp_path / "docker"
    fake.write_text(
        '#!/bin/sh\ncase "$1" in buildx) exit 1;; version) echo 28.2.2; exit 0;; esac\nexit 1\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    engine, reasons = engines.detect_docker()
    assert any("28.2.2" in r and "no buildx plugin" in r for r in reasons)
    if engine is not None:  # Debian's own client under /usr/bin can still serve
        assert engine.client == "/usr/bin/docker" and engine.mode == "buildkit-classic"
