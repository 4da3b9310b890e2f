"""Fatal errors a person can act on: one line, one exit code each, no traceback."""

from __future__ import annotations


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
