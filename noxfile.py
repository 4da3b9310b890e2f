"""The menu. Each session is a few lines that call into the vllm_forge package.

Session arguments go after `--`, e.g. `nox -s slim -- --profile debian-pypi --engine podman`.
Sessions run on the Python that runs nox (3.11 or later): Debian 12's 3.11, Ubuntu 24.04's 3.12,
a CI runner's. On a stock machine nox itself comes from `pipx run nox` (the system Python
refuses `pip install`, PEP 668); `setup` needs only the standard library.
"""

import sys

import nox

if sys.version_info < (3, 11):  # noqa: UP036 (nox may run on an older python3)
    raise SystemExit(
        f"vllm-forge needs Python 3.11 or later; nox runs on {sys.version.split()[0]}:"
        " run nox with a newer python3 (pipx run --python python3.11 nox ...)"
    )

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = None  # the interpreter that runs nox


def _forge(session: nox.Session, command: str, *, extra: str = "", deps: tuple = ()) -> None:
    """Install the package (an extra, more requirements) and run one subcommand of its CLI."""
    session.install("-q", "-e", f".{extra}", *deps)
    session.run("vllm-forge", command, *session.posargs)


@nox.session(python=False)
def setup(session: nox.Session) -> None:
    """Install docker.io, podman, mmdebstrap and friends from Debian and start dockerd (root)."""
    # No venv and nothing installed: the package runs from the checkout on nox's own Python,
    # with the standard library only (tests/test_bootstrap.py proves it).
    session.run(sys.executable, "-m", "vllm_forge.cli", "setup", *session.posargs)


@nox.session(python=PYTHON)
def render(session: nox.Session) -> None:
    """Render a profile's Dockerfile and build context into build/PROFILE/context."""
    _forge(session, "render")


@nox.session(python=PYTHON)
def base(session: nox.Session) -> None:
    """Make the Debian base image of a profile here (mmdebstrap) and import it into the engine."""
    _forge(session, "base")


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build the builder image: compiled vLLM wheels (or the pinned wheel) and the kernel probe."""
    _forge(session, "build")


@nox.session(python=PYTHON)
def slim(session: nox.Session) -> None:
    """Build the slim runtime image (`vllm serve` entrypoint) of a profile."""
    _forge(session, "slim")


@nox.session(python=PYTHON)
def probe(session: nox.Session) -> None:
    """Build the kernel-probe image: `docker run --gpus all` it for a one-second pre-flight."""
    _forge(session, "probe")


@nox.session(python=PYTHON)
def verify(session: nox.Session) -> None:
    """Check a built image against versions.toml: pins, sm_120 coverage, hygiene, labels, size, GPU."""
    _forge(session, "verify", extra="[verify]")


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Run the slim image as a model server: [serve] settings, pre-flight, health wait (--dry-run, --bench)."""
    _forge(session, "serve")


@nox.session(python=PYTHON)
def repro(session: nox.Session) -> None:
    """Build a profile twice from empty layer caches; compare image IDs and layers (--target)."""
    _forge(session, "repro")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Measure: probe rebuild with ccache (hit rate), builder/slim build time and size, render."""
    _forge(session, "bench")


@nox.session(python=PYTHON)
def clean(session: nox.Session) -> None:
    """Remove every localhost/vllm-forge* image and bound the engines' build caches (8 GB)."""
    _forge(session, "clean")


@nox.session(python=PYTHON)
def jobs(session: nox.Session) -> None:
    """Show the resolved pins and the MAX_JOBS this machine gets."""
    _forge(session, "jobs")


@nox.session(python=PYTHON)
def lock(session: nox.Session) -> None:
    """Re-lock profiles whose hash-pinned lock is stale (uv): every profile, or --profile; --upgrade re-resolves."""
    _forge(session, "lock", deps=("uv",))


@nox.session(python=PYTHON)
def bump(session: nox.Session) -> None:
    """Move the pins forward (base digests, vLLM/torch/FlashInfer), then re-lock (--dry-run, --check)."""
    _forge(session, "bump", deps=("uv",))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the package, tests and noxfile."""
    session.install("-q", "ruff")
    session.run("ruff", "check", "vllm_forge", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "vllm_forge", "tests", "noxfile.py")


@nox.session(python=PYTHON)
def bootstrap(session: nox.Session) -> None:
    """The README's first commands (pipx run nox, setup) in a stock Debian 12 container (~1 min)."""
    session.install("-q", "-e", ".", "pytest")
    session.run(
        "pytest", "-rs", "tests/test_bootstrap.py", *session.posargs,
        env={"VLLM_FORGE_BOOTSTRAP": "1"},
    )  # fmt: skip


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests, then real engine builds of the debian-pypi profile on docker and podman."""
    session.install("-q", "-e", ".[test]", "uv")
    session.run("pytest", "-rs", "--durations=15", *session.posargs)
