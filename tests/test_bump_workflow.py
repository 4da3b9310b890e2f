"""The monthly bump workflow's logic (`vllm-forge bump --for-pr DIR`), run here against a real
loopback registry and a loopback index; and the workflow file, which must only pass it on."""

from __future__ import annotations

import re
from pathlib import Path

import bumpkit
from bumpkit import PROFILES, bump

from vllm_forge import sources
from vllm_forge.errors import ConfigError, IndexError_

index, registry, pins = bumpkit.index, bumpkit.registry, bumpkit.pins  # fixtures
ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "bump.yml"


def read_outputs(out_dir: Path) -> dict[str, str | list[str]]:
    """GitHub's step-output file format: `key=value` lines and `key<<MARKER ... MARKER` blocks."""
    outputs: dict[str, str | list[str]] = {}
    lines = iter((out_dir / "outputs").read_text().splitlines())
    for line in lines:
        if "<<" in line:
            key, marker = line.split("<<", 1)
            outputs[key] = list(iter(lines.__next__, marker))
        else:
            key, _, value = line.partition("=")
            outputs[key] = value
    return outputs


def test_an_outdated_profile_gives_a_pr_of_the_pins_and_every_rewritten_lock(pins, tmp_path):
    path, _, _ = pins
    out = tmp_path / "pr"
    assert bump(path, "--for-pr", str(out)) == 0
    outputs = read_outputs(out)
    assert outputs["outdated"] == "true"
    assert outputs["paths"] == [
        "versions.toml",
        *(f"locks/{p}{kind}.txt" for p in sorted(PROFILES) for kind in ("", "-build")),
        *(f"locks/sources-{p}.toml" for p in sorted(PROFILES)),  # vLLM moved: its CMake pins too
    ]
    for changed in outputs["paths"]:
        assert (path.parent / changed).is_file()
    # vLLM's CMake pins re-read from the new sdist (it declares none); FlashInfer's entry kept,
    # its commit unchanged: nothing was asked of its git server
    fresh = sources.read_pins(path.parent / "locks" / "sources-rtx5090.toml")
    assert [(s.name, s.commit) for s in fresh.sources] == [("flashinfer", bumpkit.REVISION)]
    assert fresh.vllm == f"sdist sha256:{bumpkit.sdist_sha256('vllm', '0.19.1')}"
    body = Path(outputs["body-path"]).read_text()
    assert "vllm.version" in body and "0.18.0 → 0.19.1" in body
    assert "A person must act on these before merging" in body
    assert "[flashinfer].revision" in body and "refs/tags/v0.6.6" in body
    # and a second run finds nothing: no pull request
    assert bump(path, "--for-pr", str(out)) == 0
    assert read_outputs(out) | {"body-path": ""} == {
        "outdated": "false",
        "paths": [],
        "body-path": "",
    }


def test_a_failed_relock_fails_the_job_and_proposes_nothing(pins, tmp_path, monkeypatch, capsys):
    path, _, _ = pins
    out = tmp_path / "pr"
    out.mkdir()
    (out / "outputs").write_text("outdated=true\n")  # a former run's must not be reused
    monkeypatch.setattr("vllm_forge.lock.uv_binary", _no_uv)
    assert bump(path, "--for-pr", str(out)) == ConfigError.exit_code
    assert "is updated but the locks are not" in capsys.readouterr().err
    assert not (out / "outputs").exists()


def test_an_unreachable_index_fails_the_job_and_writes_nothing(pins, tmp_path):
    path, _, _ = pins
    text = path.read_text()
    url = re.search(r'index_url = "([^"]+)"', text).group(1)
    path.write_text(text.replace(url, f"http://127.0.0.1:{bumpkit.free_port()}/simple"))
    before = path.read_bytes()
    assert bump(path, "--for-pr", str(tmp_path / "pr")) == IndexError_.exit_code
    assert path.read_bytes() == before and not (path.parent / "locks").exists()
    assert not (tmp_path / "pr" / "outputs").exists()


def _no_uv() -> str:
    raise ConfigError("uv is not installed: pip install uv")


# ---------------------------------------------------------------------------- the workflow file
def test_the_workflow_runs_the_tested_logic_and_commits_what_it_names():
    text = WORKFLOW.read_text()
    assert "nox -s bump -- --for-pr build/bump-pr" in text
    assert 'cat build/bump-pr/outputs >> "$GITHUB_OUTPUT"' in text
    assert "add-paths: ${{ steps.bump.outputs.paths }}" in text
    assert "body-path: ${{ steps.bump.outputs.body-path }}" in text
    assert "if: steps.bump.outputs.outdated == 'true'" in text
    assert "set -euo pipefail" in text  # a failed bump or re-lock fails the job
    assert "add-paths: versions.toml" not in text and "rc=" not in text


def test_the_workflow_python_is_one_the_sessions_accept():
    version = re.search(r'python-version: "(3\.\d+)"', WORKFLOW.read_text()).group(1)
    assert tuple(int(n) for n in version.split(".")) >= (3, 11)
    noxfile = (ROOT / "noxfile.py").read_text()
    assert "PYTHON = None  # the interpreter that runs nox" in noxfile
    assert '"3.11"' not in noxfile
