"""No credential in any output: the redaction rule, and a user's credentials planted everywhere
a user keeps them, then looked for everywhere the tool writes.

Planted: PIP_INDEX_URL, PIP_EXTRA_INDEX_URL and a pip.conf's index-url (PIP_CONFIG_FILE), each
with a password in its URL; a `--secret` file; HF_TOKEN. Run as a user would (the CLI in a
subprocess): render, lock (uv, against the loopback index, which takes the credentials), bump
(against the loopback index and registry), a build of the reachable profile's probe, a tiny
build whose RUN step prints its secrets, verify's layer scan. Searched: stdout and stderr of every
command, every file under each project's build/ (and the locks bump wrote), the images' layers
(saved and scanned), labels and config (inspect), the engine's build history, podman's build
containers, the secrets dirs.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import bumpkit
import pytest
import tinybuild
from bumpkit import PINS, REVISION, free_port, loopback_index
from conftest import engine_or_skip

from vllm_forge import buildsecrets, redact
from vllm_forge.redact import MASK
from vllm_forge.verify import leaks

registry = bumpkit.registry  # the loopback registry fixture (module scope)


# ---------------------------------------------------------------------------- the rule
@pytest.fixture(autouse=True)
def _fresh_known_values():
    redact.forget_all()
    yield
    redact.forget_all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cannot reach the package index http://user:SECRETTOKEN123@127.0.0.1:9/simple (x)",
            f"cannot reach the package index http://{MASK}@127.0.0.1:9/simple (x)",
        ),
        ("git+https://ghp_0123456789@127.0.0.1/x.git@v1.2", f"git+https://{MASK}@127.0.0.1/x.git@v1.2"),
        (
            "GET http://127.0.0.1:5000/f.whl?X-Amz-Signature=abc&n=3&access_token=def#sha256=00",
            f"GET http://127.0.0.1:5000/f.whl?X-Amz-Signature={MASK}&n=3&access_token={MASK}#sha256=00",
        ),
        ('"Authorization": "Bearer eyJhbGci.x.y"', f'"Authorization": "Bearer {MASK}"'),
        (
            "index-url = http://__token__@127.0.0.1/simple http://127.0.0.1/simple?page=2",
            f"index-url = http://{MASK}@127.0.0.1/simple http://127.0.0.1/simple?page=2",
        ),
        ("cannot reach user:tok-0123@127.0.0.1:9 (x)", f"cannot reach {MASK}@127.0.0.1:9 (x)"),
        ("reach user:tok-0123@127.0.0.1, retrying", f"reach {MASK}@127.0.0.1, retrying"),
        ("[user:tok-0123@127.0.0.1]; <u:tok-0123@h>", f"[{MASK}@127.0.0.1]; <{MASK}@h>"),
        ("Basic functionality stays; user@host stays; a@b://c", "Basic functionality stays; user@host stays; a@b://c"),
        (
            "127.0.0.1:5000/nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:0123abcd stays",
            "127.0.0.1:5000/nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:0123abcd stays",
        ),
        ("localhost/vllm-forge:debian-pypi@sha256:ab stays", "localhost/vllm-forge:debian-pypi@sha256:ab stays"),
    ],
)  # fmt: skip
def test_url_credentials_and_token_query_values_are_masked_and_nothing_else(text, expected):
    assert redact.redact(text) == expected


def test_a_token_in_the_path_of_a_configured_index_is_masked():
    """Private indexes carry the token in the path (https://host/<TOKEN>/org/repo/simple/)."""
    url = "http://127.0.0.1:9/Xk29fPq81mZZa0Bc7/org/repo/python/simple/"
    redact.remember_environment({"PIP_EXTRA_INDEX_URL": url})
    assert redact.redact(f"cannot reach {url}") == (
        f"cannot reach http://127.0.0.1:9/{MASK}/org/repo/python/simple/"
    )
    assert (
        redact.redact("http://127.0.0.1/simple/vllm-0.19.1/")
        == "http://127.0.0.1/simple/vllm-0.19.1/"
    )


def test_known_values_are_masked_wherever_they_appear(tmp_path):
    token_file = tmp_path / "hf-token"
    token_file.write_text("hf_known0123456789\n")
    redact.remember_environment(
        {
            "HF_TOKEN": "hf_from_env_0123",
            "PIP_INDEX_URL": "http://u:p%40ss-0123@127.0.0.1/simple",
            "HF_TOKEN_PATH": "/root/.cache/token",  # a path, not a secret
            "MAX_JOBS": "12345678",
        }
    )
    redact.remember_file(token_file)
    text = "hf_from_env_0123 hf_known0123456789 p@ss-0123 p%40ss-0123 /root/.cache/token 12345678"
    assert redact.redact(text) == f"{MASK} {MASK} {MASK} {MASK} /root/.cache/token 12345678"


def test_a_url_written_in_pieces_is_masked_and_a_flush_passes_a_partial_line():
    target = io.StringIO()
    stream = redact.RedactingStream(target)
    for piece in ("index http://user:PLANT", "ED-0123@127.0.0.1/s", "imple\nprogress 5%"):
        stream.write(piece)
    assert target.getvalue() == f"index http://{MASK}@127.0.0.1/simple\n"
    stream.flush()
    assert target.getvalue().endswith("progress 5%")


def test_the_issues_example_prints_no_token():
    """The issue's own reproduction: an unreachable index whose URL carries a token."""
    env = {
        **os.environ,
        "PIP_INDEX_URL": f"http://user:SECRETTOKEN123@127.0.0.1:{free_port()}/simple",
    }
    result = subprocess.run(
        [sys.executable, "-m", "vllm_forge.cli", "bump", "--pins", str(tinybuild.ROOT / "versions.toml"),
         "--dry-run", "--packages-only"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    assert "SECRETTOKEN123" not in result.stdout + result.stderr
    assert f"package index http://{MASK}@127.0.0.1:" in result.stderr


# ---------------------------------------------------------------------------- planted everywhere
@dataclass
class Plant:
    values: dict[str, str]  # where it was planted -> the planted value
    env: dict[str, str]  # the user's environment, every plant in it
    secret_file: Path
    needles: list[Path]  # one file per value, for verify --secret-needle
    projects: list[Path]  # project dirs whose build/ is searched
    outputs: dict[str, str] = field(default_factory=dict)  # "command: stdout|stderr" -> text
    pids: list[int] = field(default_factory=list)

    def found(self, data: str | bytes) -> list[str]:
        raw = data if isinstance(data, bytes) else data.encode()
        return [name for name, value in self.values.items() if value.encode() in raw]

    def forge(self, name: str, *args: str, env: dict[str, str] | None = None, tiny: str = ""):
        """Run the CLI as a user would (or tinybuild's, with a tiny Dockerfile); keep its
        output and its process ID."""
        argv = (
            tinybuild.argv("leaky", tiny, *args)
            if tiny
            else [sys.executable, "-m", "vllm_forge.cli", *args]
        )
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env if env is None else env,
            cwd=self.secret_file.parent,
        )
        out, err = proc.communicate(timeout=600)
        self.pids.append(proc.pid)
        self.outputs[f"{name}: stdout"], self.outputs[f"{name}: stderr"] = out, err
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "HF_"))}
    return {**env, **extra}


@pytest.fixture(scope="module")
def plant(tmp_path_factory, registry) -> Plant:
    """The credentials planted, and the commands that need no engine run: render, lock, bump."""
    root = tmp_path_factory.mktemp("planted")
    value = {
        "PIP_INDEX_URL": f"idx-{secrets.token_hex(8)}",
        "PIP_EXTRA_INDEX_URL": f"extra-{secrets.token_hex(8)}",
        "pip.conf index-url": f"conf-{secrets.token_hex(8)}",
        "--secret file": f"file-{secrets.token_hex(8)}",
        "HF_TOKEN": f"hf_{secrets.token_hex(12)}",
    }
    (root / "hf-token").write_text(value["--secret file"] + "\n")
    needles = []
    for i, v in enumerate(value.values()):
        needles.append(root / f"needle-{i}")
        needles[-1].write_text(v + "\n")
    host, digests = registry
    (root / "index").mkdir()
    with loopback_index(root / "index") as index:
        port = index.url.split(":")[2].split("/")[0]

        def url(user: str, password: str) -> str:
            return f"http://{user}:{password}@127.0.0.1:{port}/simple"

        conf = root / "pip.conf"
        conf.write_text(f"[global]\nindex-url = {url('forge-conf', value['pip.conf index-url'])}\n")
        env = _user_env(
            PIP_CONFIG_FILE=str(conf),
            PIP_INDEX_URL=url("forge-user", value["PIP_INDEX_URL"]),
            PIP_EXTRA_INDEX_URL=url("forge-extra", value["PIP_EXTRA_INDEX_URL"]),
            HF_TOKEN=value["HF_TOKEN"],
            UV_CACHE_DIR=str(root / "uv-cache"),
            UV_PYTHON_DOWNLOADS="never",
        )
        plant = Plant(
            values=value,
            env=env,
            secret_file=root / "hf-token",
            needles=needles,
            projects=[root / "reachable", root / "bumped", root / "tiny"],
        )
        reachable = tinybuild.project(plant.projects[0])
        tinybuild.project(plant.projects[2])
        bumped = plant.projects[1] / "versions.toml"
        bumped.parent.mkdir()
        bumped.write_text(
            PINS.format(
                devel=f"{host}/nvidia/cuda:12.8.0-devel-ubuntu24.04@{digests['12.8.0-devel-ubuntu24.04']}",
                runtime=f"{host}/nvidia/cuda:12.8.1-base-ubuntu24.04@{digests['old-base']}",
                cudnn=f"{host}/nvidia/cuda:12.8.0-cudnn-devel-ubuntu24.04@"
                + digests["12.8.0-cudnn-devel-ubuntu24.04"],
                index="",  # the user's index: PIP_INDEX_URL, with its credentials
                revision=REVISION,
                old_sha=bumpkit.sdist_sha256("vllm", "0.18.0"),
            )
            # not the checkout's own pins once bumped: its packaged locks must not serve them
            .replace('platform = "x86_64-manylinux_2_39"', 'platform = "x86_64-manylinux_2_35"')
        )
        pins = ["--pins", str(reachable), "--profile", tinybuild.PROFILE]
        result = plant.forge("render", "render", *pins)
        assert result.returncode == 0, result.stderr
        # uv resolves against the pip.conf's index (no PIP_INDEX_URL): that credential is used.
        conf_only = {k: v for k, v in env.items() if k != "PIP_INDEX_URL"}
        result = plant.forge(
            "lock", "lock", "--pins", str(bumped), "--profile", "local", "--upgrade", env=conf_only
        )
        assert result.returncode == 0, result.stderr
        result = plant.forge("bump --dry-run", "bump", "--pins", str(bumped), "--dry-run")
        assert result.returncode == 0, result.stderr
        assert f"http://{MASK}@127.0.0.1:{port}/simple" in result.stdout  # it did print the URL
        # The monthly workflow's bump: writes the pins, re-locks, and the pull request's text.
        result = plant.forge(
            "bump --for-pr", "bump", "--pins", str(bumped), "--for-pr", str(root / "pr")
        )
        assert result.returncode == 0, result.stderr
        result = plant.forge("bump", "bump", "--pins", str(bumped))
        assert result.returncode == 0, result.stderr
        assert (plant.projects[1] / "locks" / "local.txt").is_file()
        used = [p for p, _, _ in index.state.seen if p.startswith("/simple/")]
        assert used, "uv and the bump never asked the loopback index"
    return plant


def test_the_bump_pull_request_text_holds_no_credential(plant):
    """`bump --for-pr DIR` writes the pull request's text (DIR/body.md) and the workflow's
    outputs: files a CI system publishes."""
    pr = plant.secret_file.parent / "pr"
    body = (pr / "body.md").read_text()
    assert "index http://" in body  # the changelog names the index it consulted
    assert {p.name: plant.found(p.read_bytes()) for p in pr.iterdir()} == {
        "body.md": [],
        "outputs": [],
    }


def _images_hold_none(plant: Plant, engine, image: str, workdir: Path) -> None:
    """Layers (saved, every layer tar scanned), inspect (labels, config) and history."""
    archive = workdir / f"{uuid.uuid4().hex}.tar"
    engine.save(image, archive)
    try:
        needles = [leaks.text_needle(name, v.encode()) for name, v in plant.values.items()]
        with archive.open("rb") as handle:
            hits, layers = leaks.scan_image_archive(handle, needles)
    finally:
        archive.unlink(missing_ok=True)
    assert layers > 0 and hits == [], hits
    inspect = engine.run([engine.client, "image", "inspect", image]).stdout
    assert plant.found(inspect) == [], f"{image}: inspect (labels, config)"
    history = engine.run(engine.history_argv(image)).stdout
    assert history.strip() and plant.found(history) == [], f"{image}: history"


@pytest.mark.engine
@pytest.mark.parametrize("engine_name", ["docker", "podman"])
def test_planted_credentials_reach_no_output(plant, engine_name, tmp_path):
    engine = engine_or_skip(engine_name)
    reachable, tiny = (p / "versions.toml" for p in (plant.projects[0], plant.projects[2]))
    probe_tag = f"localhost/vllm-forge-test:planted-probe-{engine.name}"
    tiny_tag = f"localhost/vllm-forge-test:planted-tiny-{engine.name}"
    common = ["--profile", tinybuild.PROFILE, "--engine", engine.name]
    secret = ["--secret", f"hf-token={plant.secret_file}"]
    try:
        # The probe's toolchain installs from the index: in the cache first, without the plants
        # (the planted index is a loopback one, unreachable from inside a build).
        warm = subprocess.run(
            [sys.executable, "-m", "vllm_forge.cli", "probe", "--pins", str(reachable), *common,
             "--tag", probe_tag],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert warm.returncode == 0, warm.stdout[-3000:] + warm.stderr
        result = plant.forge(
            f"probe {engine.name}", "probe", "--pins", str(reachable), *common,
            "--tag", probe_tag, *secret,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        result = plant.forge(
            f"tiny {engine.name}", "probe", "--pins", str(tiny), *common, "--tag", tiny_tag,
            *secret, tiny=uuid.uuid4().hex,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        careless = [ln for ln in result.stdout.splitlines() if "careless: [global]" in ln]
        assert careless and MASK in careless[0], "the RUN step's output did not come through"
        needles = [arg for n in plant.needles for arg in ("--secret-needle", str(n))]
        result = plant.forge(
            f"verify {engine.name}", "verify", "--pins", str(reachable), "--profile",
            tinybuild.PROFILE, "--engine", engine.name, "--image", tiny_tag,
            "--check", "slim_no_secrets_in_layers", *needles,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        report = next(
            (plant.projects[0] / "build" / "reports").glob(f"verify-*{engine.name}*.json")
        )
        (check,) = json.loads(report.read_text())["checks"]
        assert check["outcome"] == "pass", check

        # stdout and stderr of every command run so far (render, lock, bump, builds, verify)
        leaked = {name: plant.found(text) for name, text in plant.outputs.items()}
        assert {k: v for k, v in leaked.items() if v} == {}
        # every file under each project's build/, and what bump wrote (the pins, the locks)
        files = [
            path
            for project in plant.projects
            for folder in ("build", "locks")
            for path in (project / folder).rglob("*")
            if path.is_file()
        ] + [plant.projects[1] / "versions.toml"]
        assert len(files) > 10
        assert {
            str(p): plant.found(p.read_bytes()) for p in files if plant.found(p.read_bytes())
        } == {}
        # layers, labels and config, history
        for image in (probe_tag, tiny_tag):
            _images_hold_none(plant, engine, image, tmp_path)
        # no secrets dir of any run left, and no podman build container with copies of one
        for pid in plant.pids:
            for root in buildsecrets.secrets_roots():
                assert not list(root.glob(f"{buildsecrets.PREFIX}{pid}-*"))
        for sources in engine.build_containers().values():
            assert not any(
                f"{buildsecrets.PREFIX}{pid}-" in s for s in sources for pid in plant.pids
            )
        if engine.name == "podman":
            _podman_storage_holds_none(plant, engine)
    finally:
        for image in (probe_tag, tiny_tag):
            engine.remove_image(image)


def _podman_storage_holds_none(plant: Plant, engine) -> None:
    """buildah copies secret files into <graph root>/<driver>-containers/*/userdata/secrets."""
    fmt = "{{.Store.GraphRoot}}\t{{.Store.GraphDriverName}}"
    root, _, driver = (
        engine.run([engine.client, "info", "--format", fmt]).stdout.strip().partition("\t")
    )
    for path in Path(root, f"{driver}-containers").glob("*/userdata/secrets/*"):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        assert plant.found(data) == [], path


def test_the_scanner_finds_what_was_planted(tmp_path):
    """The searches above can fail: a planted value in a file is found."""
    plant = Plant(
        values={"x": "planted-0123456789"}, env={}, secret_file=tmp_path / "s", needles=[],
        projects=[],
    )  # fmt: skip
    assert plant.found(b"...planted-0123456789...") == ["x"]
    assert plant.found(redact.redact("http://u:planted-0123456789@127.0.0.1/")) == []
