"""The pip configuration reader: pip's files, sections and environment, in pip's order."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from vllm_forge import buildsecrets, lock, pins, pipconfig
from vllm_forge.errors import ConfigError, IndexError_

ROOT = Path(__file__).resolve().parents[1]

A, B, C, D = (f"http://127.0.0.1:{port}/simple" for port in (8001, 8002, 8003, 8004))


@dataclass
class Machine:
    """A machine of temp directories: /etc, a home, a virtual environment, and its environment."""

    root: Path
    env: dict[str, str]

    @property
    def global_xdg(self) -> Path:
        return self.root / "etc" / "xdg" / "pip" / "pip.conf"

    @property
    def global_etc(self) -> Path:
        return self.root / "etc" / "pip.conf"

    @property
    def user_legacy(self) -> Path:
        return self.root / "home" / ".pip" / "pip.conf"

    @property
    def user(self) -> Path:
        return self.root / "home" / ".config" / "pip" / "pip.conf"

    @property
    def site(self) -> Path:
        return self.root / "venv" / "pip.conf"

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def settings(self, **kwargs) -> dict[str, str]:
        return pipconfig.settings(self.env, **kwargs)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch) -> Machine:
    monkeypatch.setattr(pipconfig, "ETC", tmp_path / "etc")
    env = {"HOME": str(tmp_path / "home"), "VIRTUAL_ENV": str(tmp_path / "venv")}
    return Machine(root=tmp_path, env=env)


# ---------------------------------------------------------------------------- which files
def test_files_in_pips_order_lowest_first(machine: Machine):
    assert pipconfig.config_files(machine.env) == [
        machine.global_xdg,
        machine.global_etc,
        machine.user_legacy,
        machine.user,
        machine.site,
    ]


def test_xdg_variables_move_the_global_and_user_files(machine: Machine):
    env = {**machine.env, "XDG_CONFIG_DIRS": "/a:/b", "XDG_CONFIG_HOME": "/c"}
    files = pipconfig.config_files(env)
    assert files[:3] == [Path("/a/pip/pip.conf"), Path("/b/pip/pip.conf"), machine.global_etc]
    assert Path("/c/pip/pip.conf") in files and machine.user not in files


def test_pip_config_file_comes_last_and_replaces_the_user_files(machine: Machine):
    mine = machine.write(machine.root / "mine.conf", "[global]\nindex-url = " + A)
    files = pipconfig.config_files({**machine.env, "PIP_CONFIG_FILE": str(mine)})
    assert files == [machine.global_xdg, machine.global_etc, machine.site, mine]
    missing = machine.root / "missing.conf"  # pip keeps the user files when it does not exist
    assert machine.user in pipconfig.config_files({**machine.env, "PIP_CONFIG_FILE": str(missing)})


def test_pip_config_file_devnull_turns_every_file_off_but_not_the_environment(machine: Machine):
    machine.write(machine.user, f"[global]\nindex-url = {A}\ncert = /x.pem\n")
    env = {**machine.env, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": B}
    assert pipconfig.config_files(env) == []
    assert pipconfig.settings(env) == {"index-url": B}


# ---------------------------------------------------------------------------- precedence
def test_later_scopes_override_earlier_ones(machine: Machine):
    machine.write(machine.global_xdg, f"[global]\nindex-url = {A}\ncert = /global.pem\n")
    machine.write(machine.global_etc, f"[global]\nindex-url = {B}\n")
    assert machine.settings() == {"index-url": B, "cert": "/global.pem"}
    machine.write(machine.user_legacy, f"[global]\nindex-url = {C}\n")
    assert machine.settings()["index-url"] == C
    machine.write(machine.user, f"[global]\nindex-url = {D}\n")
    assert machine.settings()["index-url"] == D
    machine.write(machine.site, f"[global]\nindex-url = {A}\n")
    assert machine.settings()["index-url"] == A
    mine = machine.write(machine.root / "mine.conf", f"[global]\nindex-url = {C}\n")
    machine.env["PIP_CONFIG_FILE"] = str(mine)
    assert machine.settings() == {"index-url": C, "cert": "/global.pem"}


def test_the_commands_section_beats_global_even_from_a_lower_file(machine: Machine):
    machine.write(machine.global_etc, f"[install]\nindex-url = {A}\n[download]\nindex-url = {C}\n")
    machine.write(machine.user, f"[global]\nindex-url = {B}\ntrusted-host = 127.0.0.1\n")
    assert machine.settings() == {"index-url": A, "trusted-host": "127.0.0.1"}  # as pip does
    assert machine.settings(command="download")["index-url"] == C
    assert machine.settings(command="freeze")["index-url"] == B


def test_environment_beats_every_file_and_empty_values_count_as_unset(machine: Machine):
    machine.write(machine.site, f"[install]\nindex-url = {A}\ncert = /site.pem\n")
    machine.env |= {"PIP_INDEX_URL": B, "PIP_CERT": "", "PIP_TRUSTED_HOST": "127.0.0.1"}
    assert machine.settings() == {"index-url": B, "cert": "/site.pem", "trusted-host": "127.0.0.1"}
    assert pipconfig.index_url(machine.env) == B


def test_keys_are_normalized_like_pips(machine: Machine):
    machine.write(machine.user, f"[global]\nINDEX_URL = {A}\n--trusted-host = 127.0.0.1\n")
    assert machine.settings() == {"index-url": A, "trusted-host": "127.0.0.1"}


def test_several_extra_index_urls_on_one_line_or_several(machine: Machine):
    machine.write(machine.user, f"[global]\nextra-index-url =\n    {A}\n    {B} {C}\n")
    assert machine.settings()["extra-index-url"].split() == [A, B, C]
    machine.env["PIP_EXTRA_INDEX_URL"] = f"{D} {A}"
    assert machine.settings()["extra-index-url"].split() == [D, A]


# ---------------------------------------------------------------------------- the index URL
def test_nothing_configured_gives_pips_default_index(machine: Machine):
    assert machine.settings() == {}
    assert pipconfig.index_url(machine.env) == pipconfig.pip_default_index()


def test_index_url_takes_the_first_word(machine: Machine):
    machine.write(machine.user, f"[global]\nindex-url = {A}  \n")
    assert pipconfig.index_url(machine.env) == A


def test_a_broken_file_is_one_line_naming_it(machine: Machine):
    machine.write(machine.user, "index-url = no section\n")
    with pytest.raises(ConfigError) as info:
        machine.settings()
    message = str(info.value)
    assert str(machine.user) in message and "\n" not in message
    assert "PIP_CONFIG_FILE=/dev/null" in message


def test_an_unreadable_or_missing_file_is_skipped_as_pip_does(machine: Machine):
    machine.user.mkdir(parents=True)  # a directory where the file would be: cannot be opened
    assert machine.settings() == {}


# ---------------------------------------------------------------------------- its users
def test_build_secrets_keep_only_what_a_build_can_reach(machine: Machine):
    machine.write(
        machine.global_etc,
        "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nfind-links = /opt/wheels\n"
        f"extra-index-url = file:///opt/pypi/simple {B}\nindex-url = {A}\n",
    )
    machine.write(machine.user, f"[global]\nindex-url = {C}\n")
    settings = buildsecrets.user_pip_settings(machine.env)
    assert settings.index_url == C  # user beats global
    assert settings.extra_index_urls == (B,)  # file:// dropped
    text = buildsecrets.pip_conf_text(settings)
    assert "cert = /run/secrets/pip-ca" in text and f"index-url = {C}" in text
    assert "file://" not in text and "find-links" not in text
    from_env = buildsecrets.user_pip_settings({**machine.env, "PIP_INDEX_URL": D})
    assert from_env.index_url == D


def test_lock_resolves_against_the_configured_index(machine: Machine, monkeypatch):
    machine.write(machine.user, f"[install]\nindex-url = {A}\n")
    for name in [n for n in os.environ if n.startswith(("PIP_", "XDG_CONFIG"))]:
        monkeypatch.delenv(name)
    for name, value in machine.env.items():
        monkeypatch.setenv(name, value)
    argv: list[list[str]] = []

    def run(command, **_):
        argv.append(command)
        return subprocess.CompletedProcess(command, 1, "", "stopped here")

    monkeypatch.setattr(lock, "uv_binary", lambda: "uv")
    monkeypatch.setattr(lock.subprocess, "run", run)
    resolved = pins.load(ROOT / "versions.toml", "debian-pypi")
    with pytest.raises(IndexError_, match="stopped here"):
        lock.make_lock(resolved, machine.root / "work")
    assert argv[0][argv[0].index("--index-url") + 1] == A
