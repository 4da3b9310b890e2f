"""`vllm-forge serve` (`nox -s serve`): the command it builds, what it refuses before a start,
and the start -> health wait -> stop path with real containers.

- Without an engine (milliseconds): the run command for docker and podman (GPU flags, volumes,
  environment by name), the dry run with no engine at all, redaction, the [serve] pins, the
  checks against an image's facts, the kernel probe's outcomes.
- The real slim image (docker; `engine`): every flag checked against its own
  `vllm serve --help=all` (one that exists, one that does not, one that was removed), its
  vllm.envs, its attention backends; the answer cached per image ID; its kernel probe without
  a GPU; the no-GPU error.
- A stand-in image built here (tests/serve_standin.py), on docker and podman (`engine`): start,
  wait for /health and /v1/models, the benchmark, stop; the cache volume and the host's HF cache
  written; the token arriving by name only; a crash and a timeout with the last log lines and
  exit code; Ctrl-C and SIGTERM during the wait and while following the log, with a real signal
  to a real `vllm-forge` process: the container removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import serve_standin
import tinybuild
from conftest import ROOT, engine_or_skip
from serve_standin_vllm import HELP

from vllm_forge import cli, engines, pins
from vllm_forge.errors import ConfigError, EngineCommandError, EngineError, VerifyError
from vllm_forge.redact import MASK
from vllm_forge.serve import checks, client, image, plan, preflight
from vllm_forge.serve import command as serve_command
from vllm_forge.serve.plan import (
    CACHE_ENV,
    CACHE_ROOT,
    HF_HOME,
    EnvRequest,
    HostEnvironment,
    host_environment,
    make_plan,
)

TOKEN = "hf_PLANTEDserveTOKEN0123456789abcdef"
SLIM = "localhost/forge-serve-test:slim"
PROJECT_SLIM = "localhost/vllm-forge:debian-pypi"


def nominal(name: str) -> engines.Engine:
    return serve_command.nominal_engine(name)


def reachable() -> pins.Pins:
    return pins.load(ROOT / "versions.toml", "debian-pypi")


def host(**env: str) -> HostEnvironment:
    return HostEnvironment(hf_cache=Path("/home/me/.cache/huggingface"), set_names=frozenset(env))


def plan_for(engine_name: str = "docker", *, settings=None, extra=(), env=(), names=(), **kw):
    return make_plan(
        nominal(engine_name),
        image="localhost/vllm-forge:debian-pypi",
        settings=settings or reachable().serve,
        host=host(**{n: "x" for n in names}),
        extra_args=list(extra),
        env_requests=[EnvRequest.parse(e) for e in env],
        **kw,
    )


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == option]


# ---------------------------------------------------------------------------- the [serve] pins
def test_the_serve_defaults_are_the_recipe_and_the_reachable_profile_avoids_flashinfer():
    default = pins.load(ROOT / "versions.toml").serve
    assert default.model == "Qwen/QwQ-32B-AWQ"
    assert (default.max_model_len, default.attention_backend) == (32768, "FLASHINFER")
    assert default.enable_prefix_caching and default.enable_chunked_prefill
    assert (default.reasoning_parser, default.tool_call_parser) == ("deepseek_r1", "hermes")
    assert default == pins.ServePins()  # versions.toml says what the code's defaults say
    assert reachable().serve.attention_backend == "FLASH_ATTN"
    assert reachable().serve.model == default.model


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("port", 0, "[serve].port = 0; write a TCP port"),
        ("host", "localhost", "[serve].host = 'localhost'; write the IPv4 address"),
        ("gpus", "two", "[serve].gpus = 'two'; accepted: 'all', 'none'"),
        ("gpu_memory_utilization", 1.5, "write a fraction above 0 and at most 1"),
        ("enable_prefix_caching", "yes", "[serve].enable_prefix_caching must be a bool"),
        ("max_model_len", True, "[serve].max_model_len must be a int"),
        ("cache_volume", "a b", "[serve].cache_volume = 'a b'; write a volume name"),
        ("hf_cache", "relative/dir", "write an absolute path"),
        ("attention_backend", "flashinfer", "write a vLLM backend name in capitals"),
        ("env", {"X": 1}, '[serve].env.X: a int under that name; write NAME = "value"'),
        ("env", {"HF-TOKEN": "hf_secretvalue"}, "[serve].env.HF-TOKEN: a str under that name"),
        ("max_model_length", 5, "unknown key [serve].max_model_length; known keys:"),
    ],
)
def test_bad_serve_pins_are_one_clear_error(key, value, message):
    doc = pins.read_document(ROOT / "versions.toml")
    doc.setdefault("serve", {})[key] = value
    with pytest.raises(ConfigError) as info:
        pins.resolve(doc, "rtx5090")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_pins_file_without_serve_gets_the_recipe():
    doc = pins.read_document(ROOT / "versions.toml")
    doc.pop("serve")
    for profile in doc["profiles"].values():
        profile.pop("serve", None)
    assert pins.resolve(doc, "debian-pypi").serve == pins.ServePins()


def test_a_command_line_override_error_names_the_option(tmp_path):
    args = cli.parser().parse_args(
        ["serve", "--pins", str(ROOT / "versions.toml"), "--port", "70000", "--dry-run"]
    )
    with pytest.raises(ConfigError) as info:
        serve_command.settings_of(cli.project_of(args), args)
    assert str(info.value).startswith("--port = 70000; write a TCP port")


# ---------------------------------------------------------------------------- the command
def test_docker_gets_gpus_all_and_podman_cdi_devices_with_labels_off():
    docker = plan_for("docker").run_argv()
    podman = plan_for("podman").run_argv()
    assert option_values(docker, "--gpus") == ["all"]
    assert "--device" not in docker and "--security-opt=label=disable" not in docker
    assert option_values(podman, "--device") == ["nvidia.com/gpu=all"]
    assert "--security-opt=label=disable" in podman and "--gpus" not in podman
    assert option_values(podman, "--ulimit")  # podman's run quirk, from the engine
    for argv in (docker, podman):
        assert argv[1:3] == ["run", "-d"] and "--rm" not in argv
        assert "--ipc=host" in argv
        assert option_values(argv, "--publish") == ["127.0.0.1:8000:8000"]
        assert option_values(argv, "--name") == ["vllm-forge-serve"]


@pytest.mark.parametrize(
    ("gpus", "docker", "podman"),
    [
        ("0,1", ["--gpus", '"device=0,1"'], ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]),
        ("1", ["--gpus", '"device=1"'], ["nvidia.com/gpu=1"]),
        ("none", [], []),
    ],
)
def test_a_gpu_list_or_none_the_engines_way(gpus, docker, podman):
    assert engines.Engine.gpu_device_flags(nominal("docker"), gpus) == docker
    podman_flags = nominal("podman").gpu_device_flags(gpus)
    assert option_values(podman_flags, "--device") == podman


def test_one_cache_volume_holds_every_run_time_cache_and_the_host_hf_cache_goes_over_it():
    plan = plan_for("docker")
    argv = plan.run_argv()
    assert option_values(argv, "--volume") == [
        f"vllm-forge-cache:{CACHE_ROOT}",
        f"/home/me/.cache/huggingface:{HF_HOME}",
    ]
    env = dict(e.split("=", 1) for e in option_values(argv, "--env") if "=" in e)
    assert env == CACHE_ENV
    for value in env.values():  # every cache inside the volume
        assert value.startswith(CACHE_ROOT) or value.isdigit()
    assert env["TRITON_CACHE_DIR"] != "/root/.triton/cache"


def test_the_hf_cache_is_the_hosts_own_as_huggingface_hub_finds_it(tmp_path):
    home = Path("/home/me")
    assert host_environment({}, home).hf_cache == home / ".cache/huggingface"
    assert host_environment({"XDG_CACHE_HOME": "/x"}, home).hf_cache == Path("/x/huggingface")
    assert host_environment({"HF_HOME": "/hf", "XDG_CACHE_HOME": "/x"}, home).hf_cache == Path(
        "/hf"
    )
    settings = pins.ServePins(hf_cache=str(tmp_path))
    assert plan_for(settings=settings).hf_cache == tmp_path


def test_secrets_go_by_name_only_and_a_typed_one_never_reaches_the_engines_command():
    plan = plan_for("podman", env=[f"HF_TOKEN={TOKEN}", "VLLM_LOGGING_LEVEL=DEBUG"])
    argv = plan.run_argv()
    assert TOKEN not in " ".join(argv)
    assert option_values(argv, "--env").count("HF_TOKEN") == 1
    assert "VLLM_LOGGING_LEVEL=DEBUG" in option_values(argv, "--env")
    assert any("by name" in note and "shell history" in note for note in plan.notes)
    # From the environment: by name, whenever it is set there.
    auto = plan_for("docker", names=["HF_TOKEN", "VLLM_API_KEY"]).run_argv()
    assert {"HF_TOKEN", "VLLM_API_KEY"} <= set(option_values(auto, "--env"))


def test_a_secret_in_versions_toml_or_a_name_not_set_is_refused():
    settings = pins.ServePins(env=(("HF_TOKEN", TOKEN),))
    with pytest.raises(ConfigError, match=r"\[serve\].env.HF_TOKEN: a secret does not belong"):
        plan_for(settings=settings)
    with pytest.raises(ConfigError, match="--env MY_VAR: MY_VAR is not set here"):
        plan_for(env=["MY_VAR"])


def test_extra_arguments_replace_the_serve_flags_they_set():
    plan = plan_for(extra=["--max_model_len=1000", "--no-enable-prefix-caching", "-O3"])
    args = list(plan.vllm_args)
    assert args[0] == "Qwen/QwQ-32B-AWQ"
    assert "--max-model-len" not in args and "--enable-prefix-caching" not in args
    assert args[-3:] == ["--max_model_len=1000", "--no-enable-prefix-caching", "-O3"]
    assert sum("left out" in n for n in plan.notes) == 2


def test_no_tool_parser_turns_auto_tool_choice_off_and_empty_backend_lets_vllm_choose():
    settings = pins.ServePins(tool_call_parser="", attention_backend="", reasoning_parser="")
    args = plan_for(settings=settings).vllm_args
    for flag in ("--enable-auto-tool-choice", "--tool-call-parser", "--attention-backend"):
        assert flag not in args
    assert "--reasoning-parser" not in args


@pytest.mark.parametrize("engine_name", ["docker", "podman"])
def test_the_printed_command_is_the_command_run(engine_name):
    plan = plan_for(engine_name, extra=["--served-model-name", "my model"])
    printed = plan.shell_command()
    assert shlex.split(printed.replace("\\\n", " ")) == plan.run_argv()
    assert "'my model'" in printed


# ---------------------------------------------------------------------------- dry run, no engine
@pytest.fixture
def no_engine(monkeypatch):
    def detect(preferred=None):
        raise EngineError("no usable container engine: docker: not installed (test)")

    monkeypatch.setattr(engines, "detect", detect)


def test_dry_run_works_without_an_engine_and_says_what_it_did_not_check(no_engine, capsys):
    code = cli.main(["serve", "--pins", str(ROOT / "versions.toml"), "--profile", "debian-pypi",
                     "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "docker run \\\n    -d \\\n    --name vllm-forge-serve" in out
    assert "--attention-backend FLASH_ATTN" in out
    not_checked = out.split("# not checked here:\n", 1)[1]
    assert "anything that needs docker: no usable container engine" in not_checked
    assert "each vLLM flag against the image's `vllm serve --help=all`" in not_checked
    assert "the kernel probe on the GPU" in not_checked


def test_dry_run_keeps_a_typed_token_off_the_command_and_redacts_what_it_prints(
    no_engine, capsys, monkeypatch
):
    base = ["serve", "--pins", str(ROOT / "versions.toml"), "--profile", "debian-pypi",
            "--engine", "podman", "--dry-run"]  # fmt: skip
    assert cli.main([*base, "-e", f"HF_TOKEN={TOKEN}"]) == 0
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    assert "--env HF_TOKEN \\" in out and "HF_TOKEN=" not in out.split("podman run", 1)[1]
    assert "passed by name: export HF_TOKEN in the shell that runs this" in out
    # The guides' `--hf-token VALUE` / `--api-key VALUE`: refused, naming the variable to use.
    for flag, variable in (("--hf-token", "HF_TOKEN"), ("--api-key", "VLLM_API_KEY")):
        assert cli.main([*base, "--", flag, TOKEN]) == 2
        out, err = capsys.readouterr()
        assert TOKEN not in out + err and f"export {variable} instead" in err
    # Whatever is printed passes the one redaction rule: the exported token is masked.
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert cli.main([*base, "--", "--served-model-name", TOKEN]) == 0
    out, err = capsys.readouterr()
    assert TOKEN not in out + err and f"--served-model-name {MASK}" in out


def test_dry_run_refuses_what_the_pins_alone_show_cannot_run(no_engine, capsys):
    base = ["serve", "--pins", str(ROOT / "versions.toml"), "--profile", "debian-pypi", "--dry-run"]
    assert cli.main([*base, "--attention-backend", "FLASHINFER"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot run in profile debian-pypi's image on an RTX 5090" in err
    assert cli.main([*base, "--", "--enable-reasoning"]) == 2
    assert "`--reasoning-parser NAME` alone turns reasoning on" in capsys.readouterr().err
    assert cli.main([*base, "-e", "VLLM_ATTENTION_BACKEND=FLASHINFER"]) == 2
    assert "the flag is `--attention-backend NAME`" in capsys.readouterr().err


# ---------------------------------------------------------------------------- checks (facts)


def facts(**kw) -> image.ImageFacts:
    values = dict(
        image="img",
        image_id="sha256:" + "1" * 64,
        vllm_version="0.19.1",
        cli="vllm",
        help=image.parse_help(HELP),
        env_names=frozenset({"VLLM_LOGGING_LEVEL", "VLLM_API_KEY"}),
        backends=("FLASH_ATTN", "TRITON_ATTN", "FLASHINFER", "FLASHMLA"),
        reasoning_parsers=("deepseek_r1", "qwen3"),
        flashinfer_aot=False,
        nvcc="",
    )
    values.update(kw)
    return image.ImageFacts(**values)


def test_help_parsing_finds_options_aliases_negations_and_choices():
    parsed = image.parse_help(HELP)
    assert {"--max-model-len", "--no-enable-prefix-caching", "-h", "--help"} <= parsed.flags
    assert parsed.choices["--tool-call-parser"] == ("hermes", "llama3_json", "mistral")
    assert parsed.open_choices == {"--tool-call-parser"}
    assert "--enable-reasoning" not in parsed.flags


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (["--max-num-seq", "4"], [], "`--max-num-seq` is not a flag of `vllm serve` in img"
         " (vLLM 0.19.1, read from its `vllm serve --help=all`); did you mean --max-num-seqs?"),
        (["--tool-call-parser", "hermez"], [], "accepts hermes, llama3_json, mistral"),
        (["--reasoning-parser", "deepseek"], [], "has no such parser; did you mean deepseek_r1?"),
        (["--attention-backend", "FLASH_ATTN3"], [], "no such backend; did you mean FLASH_ATTN?"),
        (["--attention-backend", "FLASHMLA"], [], "FlashMLA runs on compute capability 9.0"),
        ([], ["VLLM_LOGGING_LEVL=1"], "not in its vllm.envs"),
        (["--attention-backend", "FLASHINFER"], [], "Could not find nvcc"),
    ],
)  # fmt: skip
def test_the_checks_name_what_the_image_does_not_accept(extra, env, message):
    plan = plan_for(extra=extra, env=env)
    with pytest.raises(ConfigError) as info:
        checks.check(plan, reachable(), facts())
    assert message in str(info.value)


def test_what_the_image_accepts_passes_and_flashinfer_runs_with_aot_kernels_or_nvcc():
    plan = plan_for(extra=["--max-num-seqs", "4", "--tool-parser-plugin", "p.py",
                           "--tool-call-parser", "mine"], env=["VLLM_LOGGING_LEVEL=DEBUG"])  # fmt: skip
    assert checks.check(plan, reachable(), facts()) == []
    flashinfer = plan_for(extra=["--attention-backend", "FLASHINFER"])
    assert checks.check(flashinfer, reachable(), facts(flashinfer_aot=True)) == []
    assert checks.check(flashinfer, reachable(), facts(nvcc="/usr/local/cuda/bin/nvcc")) == []
    # Without facts the pins decide: the rtx5090 profile builds FlashInfer's AOT kernels.
    default = pins.load(ROOT / "versions.toml")
    skipped = checks.check(plan_for(settings=default.serve), default, None)
    assert any("judged from the pins: AOT-built" in s for s in skipped)


# ---------------------------------------------------------------------------- pre-flight pieces
def test_the_probe_outcomes_become_errors_a_person_can_act_on():
    docker = nominal("docker")
    no_kernel = preflight.interpret(2, serve_standin.NO_KERNEL_JSON + "\n", "")
    with pytest.raises(VerifyError, match="no kernel image for sm_120 in this binary"):
        preflight.check_probe(no_kernel, docker, "img")
    no_gpu = preflight.interpret(3, '{"outcome": "no_driver", "message": "no driver"}', "")
    with pytest.raises(EngineError, match="install the NVIDIA Container Toolkit"):
        preflight.check_probe(no_gpu, docker, "img")
    refused = preflight.interpret(
        125, "", "docker: Error response from daemon: could not select device driver \"\" with"
        " capabilities: [[gpu]].\n"
    )  # fmt: skip
    with pytest.raises(EngineError, match="could not hand the GPU in"):
        preflight.check_probe(refused, docker, "img")
    ok = preflight.interpret(0, '{"outcome": "ok", "gpus": [{"message": "GPU 0 ran"}]}', "")
    assert preflight.check_probe(ok, docker, "img") == "GPU 0 ran"


def test_podman_needs_a_cdi_spec_naming_nvidia_gpus(tmp_path):
    podman = nominal("podman")
    problem = podman.gpu_runtime_problem(cdi_dirs=(tmp_path,))
    assert "no CDI spec for nvidia.com/gpu" in problem and "nvidia-ctk cdi generate" in problem
    (tmp_path / "other.yaml").write_text("kind: example.com/fpga\n")
    assert podman.gpu_runtime_problem(cdi_dirs=(tmp_path,)) is not None
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    assert podman.gpu_runtime_problem(cdi_dirs=(tmp_path,)) is None


def test_docker_needs_the_toolkits_hook_or_runtime(tmp_path, monkeypatch):
    docker = engines.Engine(name="docker", client="/bin/true", mode="buildkit-classic", version="0")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "nvidia-ctk runtime configure --runtime=docker" in docker.gpu_runtime_problem()
    hook = tmp_path / "nvidia-container-runtime-hook"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    assert docker.gpu_runtime_problem() is None


def test_the_benchmark_measures_tokens_after_the_first():
    run = client.Run(tokens=257, first_token_s=0.5, generation_s=4.0)
    assert run.tokens_per_s == 64.0
    result = client.BenchResult(model="m", runs=(run, client.Run(tokens=257, first_token_s=0.4,
                                                                 generation_s=2.0)))  # fmt: skip
    assert "96.0 output tokens/s" in result.describe()  # the median of 64 and 128


# ---------------------------------------------------------------------------- the real slim image
@pytest.fixture(scope="module")
def slim(tmp_path_factory):
    """The reachable profile's real slim image in docker, under a test name (CI's `clean`
    removes localhost/vllm-forge*); built (~10 GB, minutes) when absent."""
    engine = engine_or_skip("docker")
    if not engine.image_exists(SLIM):
        if engine.image_exists(PROJECT_SLIM):
            engine.run([engine.client, "tag", PROJECT_SLIM, SLIM])
        else:
            print(f"\nbuilding {SLIM} (the debian-pypi slim image; several minutes)", flush=True)
            done = subprocess.run(
                [sys.executable, "-m", "vllm_forge.cli", "slim", "--profile", "debian-pypi",
                 "--engine", "docker", "--tag", SLIM, "--pins", str(ROOT / "versions.toml")],
                capture_output=True, text=True, timeout=1800,
            )  # fmt: skip
            if done.returncode != 0:
                pytest.skip(f"the debian-pypi slim image could not be built: {done.stderr[-300:]}")
    project = tinybuild.project(tmp_path_factory.mktemp("serve-slim"))
    yield engine, project
    engine.run([engine.client, "rmi", SLIM], check=False)  # the tag only, where both exist


@pytest.mark.engine
def test_flags_are_checked_against_the_real_images_own_help_and_cached_per_image_id(slim):
    engine, pins_file = slim
    cache_dir = pins_file.parent / "build" / "serve"
    first = image.read(engine, SLIM, cache_dir, echo=lambda _: None)
    assert first.vllm_version.startswith("0.19.1") and not first.cached
    assert {"--attention-backend", "--reasoning-parser", "--max-model-len"} <= first.help.flags
    assert "--enable-reasoning" not in first.help.flags
    assert "hermes" in first.help.choices["--tool-call-parser"]
    assert "VLLM_ATTENTION_BACKEND" not in first.env_names and "VLLM_API_KEY" in first.env_names
    assert "FLASHINFER" in first.backends and "deepseek_r1" in first.reasoning_parsers
    assert not first.flashinfer_aot and not first.nvcc  # the debian-pypi image
    again = image.read(engine, SLIM, cache_dir, echo=lambda _: None)
    assert again.cached and again.help == first.help
    (cached_file,) = cache_dir.glob("facts-*.json")
    assert json.loads(cached_file.read_text())["image_id"] == engine.image_id(SLIM)

    resolved = reachable()
    ok = plan_for(extra=["--max-num-seqs", "8", "--kv-cache-dtype", "fp8"])
    assert checks.check(ok, resolved, again) == []
    for extra, message in [
        (["--max-num-seq", "8"], "did you mean --max-num-seqs?"),
        (["--enable-reasoning"], "alone turns reasoning on"),
        (["--kv-cache-dtype", "fp9"], "accepts"),
        (["--attention-backend", "FLASHINFER"], "no flashinfer-jit-cache built ahead of time"),
    ]:
        with pytest.raises(ConfigError, match=message):
            checks.check(plan_for(extra=extra), resolved, again)
    with pytest.raises(ConfigError, match="VLLM_ATTENTION_BACKEND is not read by vLLM 0.19.1"):
        checks.check(plan_for(env=["VLLM_ATTENTION_BACKEND=FLASH_ATTN"]), resolved, again)


@pytest.mark.engine
def test_the_real_kernel_probe_without_a_gpu_stops_serve_with_its_message(slim):
    engine, _ = slim
    with pytest.raises(EngineError) as info:
        preflight.run_probe(engine, SLIM, "none")
    assert "kernel probe: no driver: libcuda.so.1" in str(info.value)
    assert "NVIDIA Container Toolkit" in str(info.value)


@pytest.mark.engine
def test_the_no_gpu_error_is_one_line_on_how_to_set_up_the_toolkit(slim):
    engine, pins_file = slim
    if engine.gpu_runtime_problem() is None:
        pytest.skip("docker can hand a GPU in here: the no-GPU error cannot show")
    done = run_cli("--pins", str(pins_file), "--profile", "debian-pypi", "--engine", "docker",
                   "--image", SLIM, "--model", "Qwen/Qwen3-0.6B")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1
    assert "the NVIDIA Container Toolkit is not installed" in done.stderr
    assert "flags and VLLM_* variables checked against vLLM 0.19.1" in done.stdout


# ---------------------------------------------------------------------------- the stand-in image
def run_cli(
    *args: str, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vllm_forge.cli", "serve", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


class Rig:
    def __init__(self, engine: engines.Engine, pins_file: Path, hf: Path) -> None:
        self.engine = engine
        self.pins_file = pins_file
        self.hf = hf
        self.volume = f"forge-serve-test-{uuid.uuid4().hex[:8]}"
        self.names: list[str] = []

    def args(self, model: str, *more: str, name: str | None = None, port: int | None = None):
        name = name or f"forge-serve-test-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        self.port = port or serve_standin.free_port()
        return [
            "--pins", str(self.pins_file), "--profile", "debian-pypi", "--engine",
            self.engine.name, "--image", serve_standin.TAG, "--gpus", "none", "--model", model,
            "--port", str(self.port), "--name", name, "--cache-volume", self.volume,
            "--hf-cache", str(self.hf), *more,
        ]  # fmt: skip

    def gone(self, name: str, seconds: float = 10) -> bool:
        deadline = time.monotonic() + seconds
        while self.engine.container_state(name) is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def volume_files(self) -> list[str]:
        argv = self.engine.run_argv(
            serve_standin.TAG, ["-c", f"cd {CACHE_ROOT} && find . -type f | sort"],
            entrypoint="/bin/sh", extra=self.engine.volume_flags(self.volume, CACHE_ROOT),
        )  # fmt: skip
        return self.engine.run(argv).stdout.split()

    def log(self, name: str) -> str:
        return (self.pins_file.parent / "build" / "logs" / f"serve-{name}.log").read_text()


@pytest.fixture(scope="module", params=["docker", "podman"])
def rig(request, tmp_path_factory):
    engine = engine_or_skip(request.param)
    root = tmp_path_factory.mktemp(f"serve-{engine.name}")
    pins_file = tinybuild.project(root / "project")
    if reason := serve_standin.base_or_reason(engine, pins_file):
        pytest.skip(reason)
    try:
        serve_standin.build(engine, root / "standin")
    except EngineCommandError as exc:
        pytest.skip(f"the stand-in image could not be built with {engine.name}: {exc}")
    rig = Rig(engine, pins_file, root / "hf")
    yield rig
    for name in rig.names:
        engine.run(engine.remove_container_argv(name), check=False)
    engine.run([engine.client, "volume", "rm", "-f", rig.volume], check=False)
    engine.remove_image(serve_standin.TAG)
    engine.run([engine.client, "rmi", serve_standin.BASE], check=False)


@pytest.mark.engine
def test_start_wait_bench_and_stop_with_the_caches_kept_and_the_token_by_name(rig):
    name = f"forge-serve-test-{uuid.uuid4().hex[:8]}"
    done = run_cli(*rig.args("standin/ok", "--detach", "--bench", "-e", "HF_TOKEN", name=name),
                   env={"HF_TOKEN": TOKEN})  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert TOKEN not in out
    assert "ready in " in out and f"http://127.0.0.1:{rig.port}/v1 serves standin/ok" in out
    assert "flags and VLLM_* variables checked against vLLM 0.19.1" in out
    assert "--gpus none: no GPU handed in, the kernel probe skipped" in out
    bench = [line for line in out.splitlines() if line.startswith("bench: ")]
    assert bench and float(bench[0].split()[1]) > 1, out
    # It serves after serve returned (--detach), on the published port only.
    assert rig.engine.container_state(name)[0] == "running"
    assert client.models(f"http://127.0.0.1:{rig.port}") == ["standin/ok"]
    # The token arrived by name: the server saw it; nothing vllm-forge wrote holds it.
    log = rig.log(name)
    assert f"HF_TOKEN sha256 {hashlib.sha256(TOKEN.encode()).hexdigest()}" in log
    written = "".join(
        p.read_text() for p in rig.pins_file.parent.rglob("build/**/*") if p.is_file()
    )
    assert TOKEN not in written + log
    assert "running as uid 0, HOME=/root" in log

    stopped = run_cli("--engine", rig.engine.name, "--stop", "--name", name)
    assert stopped.returncode == 0 and f"stopped and removed {name}" in stopped.stdout
    assert rig.gone(name)
    # Every run-time cache went into the one volume; the model into the host's HF cache.
    files = rig.volume_files()
    for folder in ("vllm", "triton", "flashinfer/.cache/flashinfer", "cuda"):
        assert f"./{folder}/standin-standin--ok.txt" in files, files
    assert (rig.hf / "hub" / "standin-standin--ok.txt").read_text() == (
        "huggingface written by uid 0\n"
    )


@pytest.mark.engine
def test_a_server_that_dies_shows_its_last_log_lines_and_exit_code_and_is_removed(rig):
    name = f"forge-serve-test-{uuid.uuid4().hex[:8]}"
    done = run_cli(*rig.args("standin/crash", name=name))
    assert done.returncode == 10, done.stdout + done.stderr
    err = done.stderr
    assert "  | stand-in: RuntimeError: CUDA error: no kernel image is available" in err
    assert "exited, exit code 3" in err
    assert err.rstrip().splitlines()[-1].startswith("vllm-forge: error: the server in container")
    assert rig.gone(name, 2)
    assert "loading weights" in rig.log(name)


@pytest.mark.engine
def test_the_health_wait_times_out_with_progress_and_removes_the_container(rig):
    name = f"forge-serve-test-{uuid.uuid4().hex[:8]}"
    done = run_cli(*rig.args("standin/hang", "--timeout", "4", name=name))
    assert done.returncode == 10, done.stdout + done.stderr
    assert f"waiting for http://127.0.0.1:{rig.port}/health" in done.stdout
    assert "did not answer" in done.stderr and "in 4 s" in done.stderr
    assert "stand-in: loading weights (this stand-in never finishes)" in done.stderr
    assert rig.gone(name, 2)


@pytest.mark.engine
def test_a_taken_name_or_port_is_refused_before_anything_starts(rig):
    name = f"forge-serve-test-{uuid.uuid4().hex[:8]}"
    first = run_cli(*rig.args("standin/ok", "--detach", name=name))
    taken = rig.port
    assert first.returncode == 0, first.stdout + first.stderr
    try:
        again = run_cli(*rig.args("standin/ok", "--detach", name=name))
        assert again.returncode == 2
        assert f"a container named {name} exists (running)" in again.stderr
        port = run_cli(*rig.args("standin/ok", "--detach", port=taken))
        assert port.returncode == 2, port.stdout + port.stderr
        assert f"port {taken} on 127.0.0.1 is taken" in port.stderr
        assert rig.engine.container_state(rig.names[-1]) is None
    finally:
        rig.engine.run(rig.engine.remove_container_argv(name), check=False)


@pytest.mark.engine
def test_the_no_gpu_error_on_this_engine(rig):
    if rig.engine.gpu_runtime_problem() is None:
        pytest.skip(f"{rig.engine.name} can hand a GPU in here")
    args = rig.args("standin/ok")
    args[args.index("--gpus") + 1] = "all"
    done = run_cli(*args)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1
    assert f"{rig.engine.name} cannot hand a GPU to a container here" in done.stderr
    assert rig.gone(rig.names[-1], 1)


@pytest.mark.engine
def test_the_stand_ins_probe_reporting_no_kernel_image_stops_serve(rig):
    with pytest.raises(VerifyError) as info:
        preflight.run_probe(rig.engine, serve_standin.TAG, "none")
    assert "no kernel image for sm_120 in this binary" in str(info.value)
    assert "Nothing was started" in str(info.value)


def start_serving(rig, model: str, until: str, *more: str) -> tuple[subprocess.Popen, str]:
    """A real `vllm-forge serve` process, run until its output shows `until`."""
    name = f"forge-serve-test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm_forge.cli", "serve", *rig.args(model, *more, name=name)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT,
                                                                       signal.SIGTERM)],
    )  # fmt: skip
    seen = ""
    deadline = time.monotonic() + 120
    while until not in seen:
        assert proc.poll() is None, seen + proc.stderr.read()
        assert time.monotonic() < deadline, f"no {until!r} in 120 s: {seen}"
        seen += proc.stdout.readline()
    return proc, name


@pytest.mark.engine
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_health_wait_stops_and_removes_the_container(rig, signum):
    proc, name = start_serving(rig, "standin/hang", "waiting for http://")
    assert rig.engine.container_state(name)[0] == "running"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert err.endswith(
        f"vllm-forge: serve interrupted by {signum.name}: container {name} stopped and removed\n"
    ), err
    assert rig.gone(name, 2)


@pytest.mark.engine
def test_ctrl_c_while_following_the_log_stops_and_removes_the_container(rig):
    proc, name = start_serving(rig, "standin/ok", "its log follows")
    assert client.models(f"http://127.0.0.1:{rig.port}") == ["standin/ok"]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"container {name} stopped and removed" in err
    assert rig.gone(name, 2)
    assert client.get(f"http://127.0.0.1:{rig.port}/health", timeout=1)[0] is None


def test_the_cli_takes_vllm_arguments_after_a_second_double_dash():
    args = cli.parser().parse_args(["serve", "--dry-run", "--", "--max-num-seqs", "4"])
    assert isinstance(args, argparse.Namespace)
    assert args.vllm_args == ["--max-num-seqs", "4"] and args.dry_run


def test_a_mistyped_env_names_the_variable_never_its_value():
    with pytest.raises(ConfigError) as raised:
        plan.EnvRequest.parse("HF-TOKEN=hf_notprintedanywhere")
    assert "hf_notprintedanywhere" not in str(raised.value)
    assert "'HF-TOKEN=...'" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("HF_TOKEN", True),
        ("VLLM_API_KEY", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("DB_PASSWORD", True),
        ("TOKENIZERS_PARALLELISM", False),
        ("VLLM_MAX_TOKENS_PER_EXPERT_FP4_MOE", False),
        ("VLLM_SHARED_EXPERTS_STREAM_TOKEN_THRESHOLD", False),
    ],
)
def test_secret_names_are_told_by_their_end_not_by_a_word_inside(name, secret):
    assert plan.is_secret_name(name) is secret


def test_a_port_in_use_is_found_before_anything_starts():
    import socket

    from vllm_forge.serve import server

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert f"{port}" in (server.port_problem("127.0.0.1", port) or "")
    assert server.port_problem("127.0.0.1", port) is None


def test_a_check_container_that_never_answers_is_removed_and_said_in_one_line(monkeypatch):
    """The facts read and the kernel probe: the client times out, its container must not stay."""
    calls: list[list[str]] = []

    def run(self, argv, *, check=True, capture=True, timeout=None, **kw):
        calls.append(list(argv))
        if timeout is not None:
            raise subprocess.TimeoutExpired(argv, timeout)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(engines.Engine, "run", run)
    docker = engines.Engine(name="docker", client="/usr/bin/docker", mode="buildkit-classic",
                            version="20.10")  # fmt: skip
    with pytest.raises(VerifyError, match="no answer in 5 s"):
        image._ask(docker, "localhost/x:y", timeout=5)
    with pytest.raises(EngineCommandError, match="kernel probe: no answer in 5 s"):
        preflight.run_probe(docker, "localhost/x:y", "all", timeout=5)
    started = [argv[argv.index("--name") + 1] for argv in calls if "run" in argv[1:2]]
    removed = [argv[-1] for argv in calls if argv[1:3] == ["rm", "-f"]]
    assert len(started) == 2 and removed == started


def test_the_gpu_runtimes_error_is_found_among_dockers_other_lines():
    stderr = (
        'docker: Error response from daemon: could not select device driver "" with'
        " capabilities: [[gpu]].\n\nRun 'docker run --help' for more information\n"
        'time="2026-12-05T07:18:08Z" level=error msg="error waiting for container: context'
        ' canceled"\n'
    )
    result = preflight.interpret(125, "", stderr)
    assert "could not select device driver" in result.message
