"""Fatal errors a person can act on: one line, one exit code each, no traceback."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class ForgeError(Exception):
    """Base of every error the tool reports as a single line and a non-zero exit."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ForgeError):
    """versions.toml, a profile or a command-line option is wrong."""

    exit_code = 2


class EngineError(ForgeError):
    """No usable container engine, or its daemon is not running."""

    exit_code = 3


class BaseImageError(ForgeError):
    """A base image cannot be had (pulled or made here)."""

    exit_code = 4


class BuildError(ForgeError):
    """The engine ran and the build failed."""

    exit_code = 5


class RegistryError(ForgeError):
    """A container registry refused or could not be reached."""

    exit_code = 6


class IndexError_(ForgeError):
    """The Python package index refused or could not be reached."""

    exit_code = 7


class VerifyError(ForgeError):
    """An image failed verification."""

    exit_code = 8


class OutdatedError(ForgeError):
    """`bump --check`: a pin has a newer candidate."""

    exit_code = 9


class EngineCommandError(ForgeError):
    """The engine is there and ran a command, and that command failed (a missing image, a
    container that would not start, a save that broke off): not "no usable engine"."""

    exit_code = 10


class Stopped(KeyboardInterrupt):
    """A stop signal arrived (SIGINT, SIGTERM, SIGHUP). It unwinds like Ctrl-C, so every
    cleanup that Ctrl-C runs runs for it too; the exit code is 128 + the signal's number.
    `detail` is what the interrupted work wants said in the one closing line (e.g. a build: its
    image tag unchanged)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.detail = ""


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Inside the block, SIGINT, SIGTERM and SIGHUP raise `Stopped` (SIGTERM and SIGHUP end a
    Python program at once by default: no cleanup would run). Only the first signal raises:
    later ones are ignored, so the cleanup that the first one started is not cut short. A signal
    the process was started ignoring stays ignored (`nohup` ignores SIGHUP; a shell's `&` in a
    script, SIGINT). Outside the main thread nothing changes (Python handles signals there only)."""
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(signum)
            raise Stopped(signum)

    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in signals:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
