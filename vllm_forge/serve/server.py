"""Start the container, wait until it serves, follow it; stop and remove it on every way out.

- start: the plan's `run -d`; a container the engine created but could not start (a port in
  use, a device it could not hand in) is removed at once.
- wait: `/health` answering 200, then `/v1/models` listing the model, polled each second, with
  the container's state checked each time (a crashed server is said at once, not at the
  timeout). A progress line shows the time waited and the container's latest log line (model
  download and load take minutes); on a terminal it updates in place.
- on failure (exited, timed out): the container's last log lines, its exit code, the whole log
  in build/logs/serve-NAME.log (redacted), and the container removed.
- Ctrl-C (or SIGTERM, SIGHUP: errors.Stopped) at any point: the container stopped and removed,
  and the one closing line says so.
- up: `--bench` runs; then, `--detach`, return and leave it serving; else show its log until it
  ends or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from .. import redact
from ..errors import EngineCommandError, ForgeError
from . import client
from .plan import ServePlan

TAIL = 25  # log lines shown when it failed
QUIET_PROGRESS_S = 15.0  # how often a progress line is printed where it cannot update in place


class LogFollower:
    """`logs --follow` of the container, read by a thread: the last lines kept, every line
    written (redacted) to `path`, and shown as it comes once `show` is called."""

    def __init__(self, plan: ServePlan, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lines: deque[str] = deque(maxlen=500)
        self._echo: Callable[[str], None] | None = None
        self._proc = plan.engine.start_logs(plan.name)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        with self.path.open("w") as log:
            for raw in self._proc.stdout:
                line = redact.redact(raw.rstrip("\n"))
                self.lines.append(line)
                log.write(line + "\n")
                log.flush()
                if self._echo is not None:
                    self._echo(line)

    def show(self, echo: Callable[[str], None]) -> None:
        self._echo = echo

    @property
    def last(self) -> str:
        return self.lines[-1] if self.lines else ""

    def tail(self, count: int = TAIL) -> list[str]:
        return list(self.lines)[-count:]

    def stop(self, *, drain_s: float = 3.0) -> None:
        """Let it read what the engine still has (drain_s), then end it."""
        self._thread.join(timeout=drain_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        with contextlib.suppress(Exception):
            self._proc.wait(timeout=5)
        self._thread.join(timeout=2)


def port_problem(host: str, port: int) -> str | None:
    """Why nothing can be published on host:port here (something listens), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"port {port} on {host} is taken ({exc.strerror}): another server? pass --port"
    return None


def start(plan: ServePlan) -> None:
    engine = plan.engine
    try:
        engine.run(plan.run_argv())
    except ForgeError:
        engine.run(engine.remove_container_argv(plan.name), check=False)
        raise


def remove(plan: ServePlan) -> None:
    plan.engine.run(plan.engine.remove_container_argv(plan.name), check=False)


class Progress:
    """One line that says how long it has waited and what the container printed last."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.shown = False
        self.last_print = -QUIET_PROGRESS_S

    def update(self, elapsed: float, timeout: float, what: str, log_line: str) -> None:
        text = f"serve: {what}: {elapsed:4.0f} s of {timeout:.0f} s"
        if log_line:
            text += f" | {log_line.strip()}"
        if self.live:
            width = 160
            with contextlib.suppress(OSError):
                width = os.get_terminal_size(self.stream.fileno()).columns - 1
            self.stream.write("\r" + text[:width] + "\033[K")
            self.stream.flush()
            self.shown = True
        elif elapsed - self.last_print >= QUIET_PROGRESS_S:
            self.stream.write(text[:240] + "\n")
            self.stream.flush()
            self.last_print = elapsed

    def done(self) -> None:
        if self.live and self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def wait_ready(
    plan: ServePlan,
    follower: LogFollower,
    *,
    timeout: float,
    api_key: str | None = None,
    interval: float = 1.0,
    progress: Progress | None = None,
) -> list[str]:
    """The model ids /v1/models lists, once /health answers 200 and /v1/models a list."""
    progress = progress or Progress()
    began = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - began
            state = plan.engine.container_state(plan.name)
            if state is None or state[0] not in ("created", "running", "restarting"):
                code = "gone" if state is None else f"{state[0]}, exit code {state[1]}"
                raise EngineCommandError(
                    f"the server in container {plan.name} stopped ({code}) after {elapsed:.0f} s,"
                    f" before {plan.url}/health answered; its last log lines are above, all of"
                    f" them in {follower.path}"
                )
            status, _ = client.get(f"{plan.url}/health", timeout=2.0)
            if status == 200:
                ids = client.models(plan.url, api_key=api_key)
                if ids is not None:
                    return ids
                what = f"{plan.url}/health answers; waiting for /v1/models"
            else:
                what = f"waiting for {plan.url}/health"
            if elapsed > timeout:
                raise EngineCommandError(
                    f"the server in container {plan.name} did not answer {plan.url}/health and"
                    f" /v1/models in {timeout:.0f} s; its last log lines are above, all of them"
                    f" in {follower.path}. A first start downloads the model and compiles: give"
                    " it longer with --timeout or [serve].ready_timeout_s"
                )
            progress.update(elapsed, timeout, what, follower.last)
            time.sleep(interval)
    finally:
        progress.done()


def wait_exit(plan: ServePlan, interval: float = 2.0) -> int:
    """Block until the container is no longer running; its exit code."""
    while True:
        state = plan.engine.container_state(plan.name)
        if state is None:
            return -1
        if state[0] not in ("created", "running", "restarting"):
            return state[1]
        time.sleep(interval)


def serve(
    plan: ServePlan,
    *,
    log_path: Path,
    timeout: float,
    detach: bool = False,
    bench: bool = False,
    api_key: str | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Start, wait, then bench / detach / follow. Every way out but a detached success removes
    the container."""
    follower: LogFollower | None = None
    keep = False
    began = time.monotonic()
    try:
        echo(f"serve: starting {plan.name} from {plan.image} ({plan.engine.name})")
        start(plan)
        follower = LogFollower(plan, log_path)
        ids = wait_ready(plan, follower, timeout=timeout, api_key=api_key)
        echo(
            f"serve: ready in {time.monotonic() - began:.0f} s: {plan.url}/v1 serves"
            f" {', '.join(ids)} (OpenAI-compatible; log: {log_path})"
        )
        if bench:
            try:
                echo(client.bench(plan.url, ids[0], api_key=api_key).describe())
            except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
                echo(f"serve: warning: the benchmark failed: {exc!r}")
        client_name = Path(plan.engine.client).name
        if detach:
            keep = True
            echo(
                f"serve: left running; its log: `{client_name} logs -f {plan.name}`; stop it:"
                f" `vllm-forge serve --stop --name {plan.name}` (or `{client_name} rm -f"
                f" {plan.name}`)"
            )
            return 0
        echo("serve: its log follows; Ctrl-C stops and removes the container")
        follower.show(echo)
        code = wait_exit(plan)
        raise EngineCommandError(
            f"the server in container {plan.name} ended (exit code {code}); its log: {log_path}"
        )
    except KeyboardInterrupt as exc:  # Ctrl-C, or errors.Stopped (SIGTERM, SIGHUP)
        remove(plan)
        exc.detail = f"container {plan.name} stopped and removed"  # type: ignore[attr-defined]
        raise
    except ForgeError:
        if follower is not None:
            follower.stop()
            lines = follower.tail()
            if lines:
                print(f"serve: the last {len(lines)} lines of {plan.name}'s log:", file=sys.stderr)
                for line in lines:
                    print(f"  | {line}", file=sys.stderr)
        remove(plan)
        raise
    except BaseException:  # a bug of ours: no traceback leaves a server running behind it
        remove(plan)
        raise
    finally:
        if follower is not None:
            follower.stop(drain_s=0 if keep else 3.0)
