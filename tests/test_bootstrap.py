"""The newcomer's first command: README's bootstrap works where nothing is installed.

On a stock Debian 12 or Ubuntu 24.04 the system Python refuses `pip install nox` (PEP 668) and
has none of the package's dependencies. So nox comes from `pipx run nox`, and `nox -s setup` runs
the CLI on nox's own Python from the checkout, with the standard library only. Two proofs:

- here, in seconds: the CLI's parser, `--help` of every command and `setup` itself run in an
  interpreter where jinja2, requests, tomlkit, packaging and urllib3 cannot be imported;
- in a container of the stock Debian 12 base (`localhost/vllm-forge/debian:bookworm`, made by
  `nox -s base`; no Python at all): the README's lines, as a newcomer types them, up to a
  finished `nox -s setup` (Debian's packages really installed; the container sees the host's
  docker daemon through its socket, as a machine sees its own). About a minute; it runs in
  `nox -s bootstrap` (VLLM_FORGE_BOOTSTRAP=1) and is skipped, saying so, in `nox -s tests`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import engine_or_skip

from vllm_forge import pipconfig

ROOT = Path(__file__).resolve().parents[1]
THIRD_PARTY = ("jinja2", "requests", "tomlkit", "packaging", "urllib3")
STOCK_DEBIAN = "localhost/vllm-forge/debian:bookworm"

# What README.md tells a newcomer to type (its bootstrap and the setup half of its first command).
README_BOOTSTRAP = [
    "apt-get update && apt-get install -y pipx",
    "pipx run nox --list",
    "pipx run nox -s setup",
]


def _stdlib_only(code: str, *args: str, env: dict[str, str] | None = None):
    """Run `code` in this interpreter without site-packages (`-S`): no third-party module."""
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}"
    return subprocess.run(
        [sys.executable, "-S", "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env or {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=60,
    )


def test_the_interpreter_of_these_checks_really_lacks_the_dependencies():
    probe = "import importlib.util as u; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    result = _stdlib_only(probe, *THIRD_PARTY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [["--help"], *([command, "--help"] for command in ("setup", "bump", "verify", "render"))],
)
def test_the_parser_and_help_need_only_the_standard_library(argv):
    code = (
        "from vllm_forge import cli\n"
        "try:\n    cli.main(sys.argv[1:])\nexcept SystemExit as exit:\n    code = exit.code\n"
        f"heavy = [m for m in {THIRD_PARTY!r} if m in sys.modules]\n"
        "print('heavy:', heavy); sys.exit(code)\n"
    )
    result = _stdlib_only(code, *argv)
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout and "usage: vllm-forge" in result.stdout


def test_setup_runs_on_a_stock_python_up_to_its_first_real_step(tmp_path):
    """No apt-get on PATH: setup gets past every import and says, in one line, what it needs."""
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    result = _stdlib_only("from vllm_forge import cli\nsys.exit(cli.main(['setup']))", env=env)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("vllm-forge: error: setup installs Debian packages")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_commands_that_need_the_dependencies_say_so_in_one_line():
    code = "from vllm_forge import cli\nsys.exit(cli.main(sys.argv[1:]))"
    for argv, needs in ((["render"], "jinja2"), (["bump", "--check"], "bump needs")):
        result = _stdlib_only(code, *argv)
        assert result.returncode == 2, result.stderr
        assert needs in result.stderr and result.stderr.count("\n") == 1


# ---------------------------------------------------------------------------- a stock Debian
@pytest.mark.engine
@pytest.mark.network
def test_the_readme_bootstrap_in_a_stock_debian_container():
    if os.environ.get("VLLM_FORGE_BOOTSTRAP") != "1":
        pytest.skip("the README bootstrap runs in `nox -s bootstrap` (a stock Debian, ~1 min)")
    docker = engine_or_skip("docker")
    if subprocess.run(
        [docker.client, "image", "inspect", STOCK_DEBIAN], capture_output=True
    ).returncode:
        pytest.skip(f"{STOCK_DEBIAN} is not here: `nox -s base -- --profile debian-pypi` makes it")
    bundle = pipconfig.settings().get("cert") or os.environ.get("REQUESTS_CA_BUNDLE", "")
    mounts = ["-v", f"{ROOT}:/src:ro", "-v", "/var/run/docker.sock:/var/run/docker.sock"]
    env = {
        "PIP_INDEX_URL": pipconfig.index_url(),  # the host's index, never written in a file
        "DEBIAN_FRONTEND": "noninteractive",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/root/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    if bundle and Path(bundle).is_file():  # a TLS-intercepting network: trust what the host trusts
        mounts += ["-v", f"{bundle}:/etc/host-ca.pem:ro"]
        env |= {"PIP_CERT": "/etc/host-ca.pem", "REQUESTS_CA_BUNDLE": "/etc/host-ca.pem"}
    script = "set -eux\ncommand -v python3 && exit 90  # stock: no Python at all\n"
    script += "\n".join(README_BOOTSTRAP) + "\n"
    argv = [docker.client, "run", "--rm", *mounts, "-w", "/src"]
    argv += [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    started = time.monotonic()
    result = subprocess.run(
        [*argv, STOCK_DEBIAN, "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **docker.env},
    )
    took = time.monotonic() - started
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
    assert result.returncode == 0, f"bootstrap failed after {took:.0f} s:\n{tail}"
    assert "* tests" in result.stdout  # `nox --list` listed the sessions
    assert "setup: docker daemon" in result.stdout and "is running" in result.stdout
    assert "Session setup was successful" in result.stdout + result.stderr
    print(f"\nREADME bootstrap in a stock Debian 12 container: {took:.0f} s")


def test_the_bootstrap_tested_is_the_one_the_readme_gives():
    """The container test types README_BOOTSTRAP: keep it the README's own lines."""
    readme = (ROOT / "README.md").read_text()
    assert "apt-get update && apt-get install -y pipx" in readme
    assert "pipx run nox -s setup slim -- --profile debian-pypi" in readme
    assert "pipx run nox -s setup tests" in readme
    assert "python3 -m pip install nox" not in readme  # PEP 668 refuses it on a stock system
