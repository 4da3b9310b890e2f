"""SIGINT, SIGTERM and SIGHUP stop vllm-forge in order: the engine's build stopped (its client,
the RUN step's processes and, for podman, the build containers with their copies of the
secrets), the secrets dir removed, no tag moved, one line, exit 128 + the signal.

The fast tests use real processes and real signals but no engine; the engine tests send each
signal to a real build on docker and on podman while its RUN step runs, then build again and
find the stopped build's finished layer in the cache.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import tinybuild
from conftest import engine_or_skip

from vllm_forge import buildsecrets, clean, cli, engines
from vllm_forge.errors import Stopped, stop_on_signals
from vllm_forge.redact import MASK

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
NAMES = [s.name for s in SIGNALS]


# ---------------------------------------------------------------------------- helpers
def pids_running(fragment: str) -> list[int]:
    """Processes (not zombies) whose command line contains `fragment`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if fragment in cmdline and state != "Z" and int(proc.name) != os.getpid():
            found.append(int(proc.name))
    return found


def gone_within(fragment: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while pids_running(fragment):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def secrets_dirs_of(pid: int) -> list[Path]:
    return [
        path
        for root in buildsecrets.secrets_roots()
        for path in root.glob(f"{buildsecrets.PREFIX}{pid}-*")
    ]


def default_stop_signals() -> None:
    """For a child: a runner that ignores SIGINT or SIGHUP (a script's `&`, nohup) passes that on;
    the child is to see them as a user's terminal or a CI runner sends them."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def unique_seconds() -> str:
    """A sleep length no other process uses: the RUN step is found by it."""
    return f"{random.randint(400, 900)}.{random.randint(100000, 999999)}"


# ---------------------------------------------------------------------------- without an engine
@pytest.fixture
def handled_as_by_default():
    """The stop signals as a fresh Python has them, whatever this test runner was started with
    (a runner started by nohup ignores SIGHUP, and vllm-forge leaves an ignored signal alone)."""
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_each_stop_signal_raises_stopped_once_then_the_handlers_come_back(handled_as_by_default):
    before = {s: signal.getsignal(s) for s in SIGNALS}
    for signum in SIGNALS:
        with stop_on_signals():
            with pytest.raises(Stopped) as info:
                os.kill(os.getpid(), signum)
                time.sleep(5)
            assert info.value.signum == signum
            os.kill(os.getpid(), signal.SIGHUP)  # a second signal while cleaning up: ignored
            time.sleep(0.05)
    assert {s: signal.getsignal(s) for s in SIGNALS} == before


def test_a_signal_ignored_at_start_stays_ignored_as_under_nohup():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)  # no Stopped: the hangup is ignored, as nohup asked
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize("signum", SIGNALS, ids=NAMES)
def test_main_turns_a_signal_into_one_line_and_128_plus_its_number(
    monkeypatch, capsys, signum, handled_as_by_default
):
    def jobs(args):
        os.kill(os.getpid(), signum)
        time.sleep(5)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "jobs", jobs)
    assert cli.main(["jobs"]) == 128 + signum
    err = capsys.readouterr().err
    assert err == f"vllm-forge: jobs interrupted by {signum.name}\n"


def test_main_redacts_what_a_command_prints_and_its_error_line(monkeypatch, capsys):
    url = "http://forge:PLANTED-main-0123@127.0.0.1:9/simple"

    def jobs(args):
        print("index", url[:20], end="")  # a URL written in two pieces is still one URL
        print(url[20:])
        raise cli.ConfigError(f"cannot reach {url}")

    monkeypatch.setitem(cli.COMMANDS, "jobs", jobs)
    assert cli.main(["jobs"]) == 2
    out, err = capsys.readouterr()
    assert "PLANTED" not in out + err
    assert f"http://{MASK}@127.0.0.1:9/simple" in out and f"http://{MASK}@127.0.0.1:9" in err


def test_secrets_dir_is_private_named_for_its_process_on_memory_and_gone_after_a_stop():
    with pytest.raises(Stopped), buildsecrets.build_secrets() as secrets:
        folder = secrets["pip-conf"].parent
        assert folder.name.startswith(f"{buildsecrets.PREFIX}{os.getpid()}-")
        assert folder.stat().st_mode & 0o777 == 0o700
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in secrets.values())
        if Path("/dev/shm").is_dir():  # memory-backed here: nothing on a disk, even after SIGKILL
            assert folder.parent in (Path("/dev/shm"), Path(os.environ.get("XDG_RUNTIME_DIR", "/")))
        raise Stopped(signal.SIGTERM)
    assert not folder.exists()


def test_clean_removes_the_secrets_dirs_of_dead_runs_only(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = tmp_path / f"{buildsecrets.PREFIX}{os.getpid()}-live"
    gone = tmp_path / f"{buildsecrets.PREFIX}{dead.pid}-dead"
    other = tmp_path / "vllm-forge-secrets-unowned"
    for folder in (mine, gone, other):
        folder.mkdir()
        (folder / "pip.conf").write_text("[global]\n")
    removed = clean.remove_dead_runs_secrets(None, roots=[tmp_path], log=lambda _: None)
    assert removed == [str(gone)]
    assert mine.is_dir() and other.is_dir() and not gone.exists()


def test_stop_build_kills_the_client_and_a_run_step_in_a_session_of_its_own(tmp_path):
    """podman's RUN step outlives its client (own session under buildah's OCI runtime): the
    same shape, with sh as the client and a `setsid sleep` as the RUN step."""
    seconds = unique_seconds()
    engine = engines.Engine(name="docker", client="/bin/sh", mode="buildkit-classic", version="0")
    client = engine.start_build(["/bin/sh", "-c", f"setsid sleep {seconds} & echo up; wait"])
    assert client.stdout.readline() == "up\n"
    assert pids_running(f"sleep {seconds}")
    engine.stop_build(client, secrets_dir=tmp_path)
    assert client.returncode is not None
    assert gone_within(f"sleep {seconds}", 2)


def test_a_build_client_dies_with_vllm_forge_even_on_sigkill():
    seconds = unique_seconds()
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from vllm_forge.engines import Engine;"
            "e = Engine(name='docker', client='/bin/sleep', mode='buildkit-classic', version='0');"
            f"p = e.start_build(['/bin/sleep', '{seconds}']); print(p.pid, flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    int(parent.stdout.readline())
    assert pids_running(f"sleep {seconds}")
    parent.kill()
    parent.wait()
    assert gone_within(f"sleep {seconds}", 2)


# ---------------------------------------------------------------------------- real builds
@dataclass
class Rig:
    engine: engines.Engine
    pins: Path
    tag: str
    hold: Path

    def cli_args(self) -> list[str]:
        return [
            "probe", "--pins", str(self.pins), "--profile", tinybuild.PROFILE,
            "--engine", self.engine.name, "--tag", self.tag, "--secret", f"hold={self.hold}",
        ]  # fmt: skip

    def build(self, nonce: str, seconds: str = "0") -> subprocess.CompletedProcess:
        self.hold.write_text(seconds + "\n")
        return tinybuild.run("hold", nonce, *self.cli_args())

    @property
    def log(self) -> Path:
        return tinybuild.log_path(self.pins, self.engine.name)


@pytest.fixture(scope="module", params=["docker", "podman"])
def rig(request, tmp_path_factory):
    engine = engine_or_skip(request.param)
    root = tmp_path_factory.mktemp(f"signals-{engine.name}")
    rig = Rig(
        engine=engine,
        pins=tinybuild.project(root),
        tag=f"localhost/vllm-forge-test:signals-{engine.name}",
        hold=root / "hold",
    )
    first = rig.build(uuid.uuid4().hex)  # the image the tag points at before any signal
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    yield rig
    engine.remove_image(rig.tag)


def start_held_build(rig, **popen) -> tuple[subprocess.Popen, str, str]:
    """A real build through the CLI whose RUN step holds (a unique `sleep`) until stopped."""
    nonce, seconds = uuid.uuid4().hex, unique_seconds()
    rig.hold.write_text(seconds + "\n")
    rig.log.unlink(missing_ok=True)
    argv = tinybuild.argv("hold", nonce, *rig.cli_args())
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, **popen), nonce, seconds


def wait_until_holding(rig, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while "vllm-forge-test: holding" not in (rig.log.read_text() if rig.log.exists() else ""):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "vllm-forge ended"
        assert time.monotonic() < deadline, "the build's RUN step did not start in 120 s"
        time.sleep(0.1)


@pytest.mark.engine
@pytest.mark.parametrize("signum", SIGNALS, ids=NAMES)
def test_a_signal_stops_the_build_removes_its_secrets_keeps_the_tag_and_the_cache(rig, signum):
    engine = rig.engine
    before = engine.image_id(rig.tag)
    proc, nonce, seconds = start_held_build(
        rig, stderr=subprocess.PIPE, text=True, preexec_fn=default_stop_signals
    )
    try:
        wait_until_holding(rig, proc)
        assert pids_running(f"sleep {seconds}"), "the RUN step is not running"
        (secrets_dir,) = secrets_dirs_of(proc.pid)
        started = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        stop_seconds = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 128 + signum
    assert err.count("\n") == 1, err
    assert err.startswith(f"vllm-forge: probe interrupted by {signum.name}: {engine.name} build")
    assert "its secrets removed" in err
    assert f"{rig.tag} not moved (still {before[:19]})" in err
    assert stop_seconds < 15
    # Nothing of the build runs on: not the client, not the RUN step.
    assert gone_within(f"sleep {seconds}", 5), "the RUN step still runs"
    assert not pids_running(str(rig.pins.parent / "build")), "the build client still runs"
    # Nothing of its secrets stays: not the dir, not podman's copies in its build containers.
    assert not secrets_dir.exists() and not secrets_dirs_of(proc.pid)
    assert engine.build_containers_using(str(secrets_dir)) == []
    assert engine.image_id(rig.tag) == before
    assert rig.log.read_text().endswith(f"vllm-forge: build stopped ({signum.name})\n")

    # The next build finds the stopped build's finished step (COPY nonce) in the layer cache.
    again = rig.build(nonce)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr
    assert tinybuild.copy_step_cached(again.stdout), again.stdout[-3000:]
    assert engine.image_id(rig.tag) != before


@pytest.mark.engine
def test_after_a_sigkill_the_client_dies_too_and_clean_removes_what_is_left(rig):
    """SIGKILL cannot be handled: the client dies with vllm-forge (PR_SET_PDEATHSIG), so no tag
    moves; the secrets dir stays, in memory, and (podman) the build containers with copies of
    the secrets stay in storage, until `clean` removes them as a dead run's."""
    engine = rig.engine
    before = engine.image_id(rig.tag)
    proc, _nonce, seconds = start_held_build(rig, stderr=subprocess.DEVNULL)
    try:
        wait_until_holding(rig, proc)
        (secrets_dir,) = secrets_dirs_of(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert gone_within(str(rig.pins.parent / "build"), 5), "the build client outlived vllm-forge"
    if engine.name == "podman":  # its RUN step outlives podman: an operator's kill
        for pid in pids_running(f"sleep {seconds}"):
            os.kill(pid, signal.SIGKILL)
        assert engine.build_containers_using(str(secrets_dir)), "no container left to clean"
    assert gone_within(f"sleep {seconds}", 5)
    assert engine.image_id(rig.tag) == before
    assert secrets_dir.is_dir()
    if Path("/dev/shm").is_dir():
        assert secrets_dir.parent != Path(tempfile.gettempdir()), "secrets were on a disk"

    removed = clean.remove_dead_runs_secrets(engine, log=lambda _: None)
    assert str(secrets_dir) in removed and not secrets_dir.exists()
    assert engine.build_containers_using(str(secrets_dir)) == []


def test_verify_passes_a_stop_signal_on_instead_of_reporting_checks_that_did_not_run(
    tmp_path, monkeypatch
):
    """pytest swallows KeyboardInterrupt (and so errors.Stopped); verify's runner re-raises it,
    so `verify` stopped by SIGTERM exits 143 like every other command, not 8."""
    from vllm_forge.verify import runner

    module = tmp_path / "test_stopping.py"
    module.write_text(
        "from vllm_forge.errors import Stopped\n"
        "import signal\n"
        "def test_stop():\n"
        "    raise Stopped(signal.SIGTERM)\n"
    )
    monkeypatch.setattr(runner, "CHECKS", module)
    with pytest.raises(Stopped) as stopped:
        runner.run(cfg=None, echo=lambda _line: None)  # type: ignore[arg-type]
    assert stopped.value.signum == signal.SIGTERM
