"""The engine abstraction's argument lists, and detection against the real machine."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from conftest import engine_or_skip

from vllm_forge import engines
from vllm_forge.engines import BuildRequest, Engine
from vllm_forge.errors import EngineCommandError, EngineError

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


CLASSIC = Engine(
    name="docker", client="docker", mode="buildkit-classic", version="20.10.24",
    env={"DOCKER_BUILDKIT": "1"},
)  # fmt: skip
BUILDX = Engine(name="docker", client="docker", mode="buildx", version="27.3.1")
PODMAN = Engine(name="podman", client="podman", mode="podman", version="4.3.1")


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
    except EngineError as exc:
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


def test_only_podman_and_buildx_on_engine_23_stamp_timestamps():
    assert PODMAN.timestamp_option == "--timestamp" and PODMAN.fixes_timestamps
    assert BUILDX.timestamp_option == "rewrite-timestamp" and BUILDX.fixes_timestamps
    old_buildx = Engine(name="docker", client="docker", mode="buildx", version="20.10.24")
    assert old_buildx.timestamp_option is None and not old_buildx.fixes_timestamps
    assert CLASSIC.timestamp_option is None


def test_gpus_go_in_by_flag_on_docker_and_by_cdi_device_on_podman():
    assert CLASSIC.gpu_flags() == BUILDX.gpu_flags() == ["--gpus", "all"]
    assert PODMAN.gpu_flags() == ["--device", "nvidia.com/gpu=all"]


def test_podman_removes_a_container_without_the_grace_period():
    assert PODMAN.remove_container_argv("box") == ["podman", "rm", "-f", "-t", "0", "box"]
    assert CLASSIC.remove_container_argv("box") == ["docker", "rm", "-f", "box"]


def test_save_streams_or_writes_a_file_and_cp_copies_out():
    assert PODMAN.save_argv("img") == ["podman", "save", "img"]
    assert CLASSIC.save_argv("img", Path("/t/a.tar")) == ["docker", "save", "-o", "/t/a.tar", "img"]
    assert CLASSIC.copy_out_argv("box", "/etc/x", Path("/t/x")) == [
        "docker", "cp", "box:/etc/x", "/t/x",
    ]  # fmt: skip


def test_clean_argv_per_engine():
    assert CLASSIC.bound_build_cache_argv(8_000_000_000) == [
        "docker", "builder", "prune", "-f", "--keep-storage", "8000000000",
    ]  # fmt: skip
    assert PODMAN.bound_build_cache_argv(1) is None
    assert PODMAN.prune_dangling_images_argv() == ["podman", "image", "prune", "-f"]


def test_each_engine_has_one_way_to_empty_its_cache_mounts():
    """podman: folders on the host; buildx: a builder prune; classic docker: fresh per build."""
    assert PODMAN.cache_mount_dir == engines.BUILDAH_CACHE
    assert PODMAN.prune_cache_mounts_argv() is None
    assert not PODMAN.no_cache_builds_get_fresh_cache_mounts
    assert BUILDX.cache_mount_dir is None
    assert BUILDX.prune_cache_mounts_argv() == [
        "docker", "builder", "prune", "-f", "--filter", "type=exec.cachemount",
    ]  # fmt: skip
    assert CLASSIC.cache_mount_dir is None and CLASSIC.prune_cache_mounts_argv() is None
    assert CLASSIC.no_cache_builds_get_fresh_cache_mounts


def test_history_is_read_in_each_engines_format_bottom_first():
    assert CLASSIC.history_argv("img")[-3:] == ["--format", "{{json .}}", "img"]
    assert PODMAN.history_argv("img")[-3:] == ["--format", "json", "img"]
    docker_out = (
        '{"CreatedBy":"RUN make","Size":"12.3MB"}\n'
        '{"CreatedBy":"LABEL a=b","Size":"0B"}\n'
        '{"CreatedBy":"/bin/sh -c #(nop) ADD file:1 in /","Size":"74MB"}\n'
    )
    podman_out = '[{"CreatedBy":"RUN make","size":123},{"createdBy":"ENV X=1","size":0}]'
    assert CLASSIC.parse_history(docker_out) == [
        engines.HistoryEntry(created_by="/bin/sh -c #(nop) ADD file:1 in /", empty=False),
        engines.HistoryEntry(created_by="LABEL a=b", empty=True),
        engines.HistoryEntry(created_by="RUN make", empty=False),
    ]
    assert PODMAN.parse_history(podman_out) == [
        engines.HistoryEntry(created_by="ENV X=1", empty=True),
        engines.HistoryEntry(created_by="RUN make", empty=False),
    ]


def test_a_failed_engine_command_is_its_own_one_line_error_not_no_engine():
    """The engine ran and the command failed: name the command and its last stderr line."""
    shell = Engine(name="docker", client="/bin/sh", mode="buildkit-classic", version="20.10.24")
    argv = ["/bin/sh", "-c", "echo first >&2; echo 'Error: No such image: x' >&2; exit 3"]
    with pytest.raises(EngineCommandError) as info:
        shell.run(argv)
    message = str(info.value)
    assert message.startswith("docker: `sh -c ")
    assert message.endswith("failed (exit 3): Error: No such image: x")
    assert "\n" not in message and "first" not in message.split("`")[-1]
    assert not isinstance(info.value, EngineError)
    assert EngineCommandError.exit_code not in {EngineError.exit_code, 0, 1, 2}
    assert shell.run(argv, check=False).returncode == 3  # check=False never raises


def test_a_long_engine_command_is_shortened_in_the_message():
    error = CLASSIC.command_failed(["docker", "build", *["--build-arg=X"] * 40], 1, "")
    assert len(str(error)) < 200 and "...` failed (exit 1): no error message" in str(error)


def test_a_client_that_is_gone_is_no_usable_engine():
    gone = Engine(name="podman", client="/nonexistent/podman", mode="podman", version="4.3.1")
    with pytest.raises(EngineError, match="podman: cannot run /nonexistent/podman"):
        gone.run([gone.client, "version"])


@pytest.mark.engine
@pytest.mark.parametrize("name", ["docker", "podman"])
def test_inspecting_a_missing_image_names_the_engines_own_message(name):
    engine = engine_or_skip(name)
    with pytest.raises(EngineCommandError) as info:
        engine.inspect("localhost/vllm-forge-test/absent:none")
    message = str(info.value)
    assert message.startswith(f"{name}: `{name} image inspect localhost/vllm-forge-test/absent")
    assert "failed (exit " in message and "\n" not in message
    # the engine's own last stderr line: "No such image: ..." (docker), "image not known" (podman)
    assert "no such image" in message.lower() or "image not known" in message


@pytest.mark.engine
def test_clean_leaves_containers_that_are_not_a_dead_runs_build_alone():
    """clean removes podman build containers of vllm-forge runs that are gone, nothing else:
    not a user's container, not another tool's buildah working container."""
    import subprocess

    from vllm_forge import clean

    engine = engine_or_skip("podman")
    image = "localhost/vllm-forge/debian:bookworm"
    if not engine.image_exists(image):
        pytest.skip(f"{image} is not in podman (made by `nox -s base`)")
    names = ["vllm-forge-test-users-box", "vllm-forge-test-working"]
    made = [
        subprocess.run(
            ["podman", "create", "--name", names[0], image, "true"], capture_output=True
        ),
        subprocess.run(["buildah", "from", "--name", names[1], image], capture_output=True),
    ]
    try:
        assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
        clean.clean(engine, keep_cache_gb=1000, keep_images=True, log=lambda _line: None)
        listed = subprocess.run(
            ["podman", "ps", "--all", "--external", "--format", "{{.Names}}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert set(names) <= set(listed)
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *names], capture_output=True)
