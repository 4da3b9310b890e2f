"""The [serve] settings + the command line + the host's environment -> one frozen `ServePlan`.

Pure: nothing here runs an engine, reads the TOML or touches the network. The host's
environment is read once, by `host_environment`, and handed in.

What the container gets, and why:
- the GPUs the engine's way (`Engine.gpu_device_flags`: docker `--gpus`, podman CDI devices),
  SELinux labels off on podman, `--ipc=host`, the port published on [serve].host only;
- one engine volume at /var/cache/vllm-forge for everything written at run time that should be
  kept, each tool pointed into it by its own variable (`CACHE_ENV`);
- the host's Hugging Face cache over the volume's huggingface/ (the host's `huggingface-cli
  login` token comes along: it lives there);
- secrets (HF_TOKEN, ...) by name only: `--env HF_TOKEN`, the value in the engine client's
  environment, never on a command line, in a file or in the image;
- it runs as root, the image's own user (README: serve, "Which user").
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import redact
from ..engines import Engine
from ..errors import ConfigError
from ..pins import ServePins
from ..render import CACHE_ROOT, CUDA_CACHE_MAX_SIZE, CUDA_CACHE_PATH

CONTAINER_PORT = 8000  # the image's EXPOSE; vLLM's default --port
HF_HOME = f"{CACHE_ROOT}/huggingface"
# Every run-time cache, in the volume. The image sets the same (templates/Dockerfile.j2); they
# are repeated so an image built before it did gets them too.
CACHE_ENV: dict[str, str] = {
    "XDG_CACHE_HOME": CACHE_ROOT,  # vLLM: $XDG_CACHE_HOME/vllm (torch.compile, Inductor, Triton)
    "HF_HOME": HF_HOME,  # huggingface_hub: models, datasets, the login token
    "TRITON_CACHE_DIR": f"{CACHE_ROOT}/triton",  # default ~/.triton/cache, outside ~/.cache
    "FLASHINFER_WORKSPACE_BASE": f"{CACHE_ROOT}/flashinfer",  # default ~ (.cache/flashinfer)
    "CUDA_CACHE_PATH": CUDA_CACHE_PATH,  # the driver's JIT of PTX (default ~/.nv)
    "CUDA_CACHE_MAXSIZE": str(CUDA_CACHE_MAX_SIZE),  # the driver's maximum
}
# Passed by name whenever the host's environment has them.
SECRET_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY")
# vLLM flags that would put a secret on the container's command line, and the variable to use.
SECRET_FLAGS = {"hf-token": "HF_TOKEN", "api-key": "VLLM_API_KEY"}
DEFAULT_NAME = "vllm-forge-serve"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^-[0-9.]")


# A variable whose name ends the way a secret's does (HF_TOKEN, VLLM_API_KEY, *_PASSWORD,
# AWS_SECRET_ACCESS_KEY) goes by name only. Narrower than the redaction rule, which masks widely:
# TOKENIZERS_PARALLELISM or vLLM's VLLM_MAX_TOKENS_PER_EXPERT_FP4_MOE are settings, not secrets.
_SECRET_NAME = re.compile(
    r"(?i)(^|_)(TOKEN|SECRET|SECRET_KEY|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)$"
)


def is_secret_name(name: str) -> bool:
    """Whether a variable holds a secret, by its name (HF_TOKEN, *_API_KEY, ...)."""
    return name in SECRET_NAMES or bool(_SECRET_NAME.search(name))


@dataclass(frozen=True, kw_only=True)
class HostEnvironment:
    """What serve reads of the host's environment, once."""

    hf_cache: Path  # the host's own Hugging Face cache
    set_names: frozenset[str]  # the variables that are set (their values are not kept here)


def host_environment(environ: Mapping[str, str], home: Path) -> HostEnvironment:
    """The host's HF cache the way huggingface_hub finds it: $HF_HOME, else
    $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface."""
    if environ.get("HF_HOME"):
        hf = Path(environ["HF_HOME"]).expanduser()
    elif environ.get("XDG_CACHE_HOME"):
        hf = Path(environ["XDG_CACHE_HOME"]).expanduser() / "huggingface"
    else:
        hf = home / ".cache" / "huggingface"
    return HostEnvironment(
        hf_cache=hf, set_names=frozenset(k for k, v in environ.items() if v is not None)
    )


@dataclass(frozen=True, kw_only=True)
class EnvRequest:
    """One `--env` of the command line: NAME=VALUE, or NAME alone (its value from here)."""

    name: str
    value: str | None

    @classmethod
    def parse(cls, text: str) -> EnvRequest:
        name, sep, value = text.partition("=")
        if not _ENV_NAME.match(name):  # the name only: what follows `=` may be a token
            shown = f"{name}=..." if sep else name
            raise ConfigError(f"--env {shown!r}: write NAME=VALUE, or NAME to pass it from here")
        return cls(name=name, value=value if sep else None)


@dataclass(frozen=True, kw_only=True)
class ServePlan:
    engine: Engine
    image: str
    name: str  # the container's
    settings: ServePins
    vllm_args: tuple[str, ...]  # after the image: the model, then flags (ENTRYPOINT vllm serve)
    env: tuple[tuple[str, str], ...]  # values that are no secret: on the command line
    env_by_name: tuple[str, ...]  # passed by name: the value only in the client's environment
    volumes: tuple[tuple[str, str], ...]  # (named volume or host folder, path in the container)
    hf_cache: Path | None  # the host folder mounted at HF_HOME
    notes: tuple[str, ...] = ()  # what a person should know about how the settings combined

    @property
    def url(self) -> str:
        """Where the server answers from this host."""
        host = "127.0.0.1" if self.settings.host == "0.0.0.0" else self.settings.host
        return f"http://{host}:{self.settings.port}"

    @property
    def model(self) -> str:
        return self.vllm_args[0]

    def run_argv(self) -> list[str]:
        """The engine's `run -d` command: a list, never a shell string."""
        engine, s = self.engine, self.settings
        extra = [
            *engine.gpu_device_flags(s.gpus),
            *engine.label_flags(),
            *engine.ipc_host_flags(),
            *engine.publish_flags(s.host, s.port, CONTAINER_PORT),
        ]
        for source, target in self.volumes:
            extra += engine.volume_flags(source, target)
        extra += engine.env_name_flags(list(self.env_by_name))
        return engine.run_argv(
            self.image, list(self.vllm_args), env=dict(self.env), detach=True, name=self.name,
            extra=extra,
        )  # fmt: skip

    def shell_command(self) -> str:
        """`run_argv` as a person copies it: one option a line, quoted for a POSIX shell,
        redacted (there is nothing to redact by construction: secrets go by name)."""
        argv = self.run_argv()
        split = len(argv) - len(self.vllm_args) - 1  # the image
        lines = [shlex.join(argv[:2])]
        lines += [shlex.join(group) for group in _groups(argv[2:split])]
        lines.append(shlex.quote(argv[split]))
        lines.append(shlex.quote(self.vllm_args[0]))
        lines += [shlex.join(group) for group in _groups(list(self.vllm_args[1:]))]
        return redact.redact(" \\\n    ".join(lines))


def _groups(args: list[str]) -> list[list[str]]:
    """Options with their values: a token that starts with '-' (not a negative number) starts
    a group; a value before any option is a group of its own."""
    groups: list[list[str]] = []
    for arg in args:
        if not groups or (arg.startswith("-") and not _NUMBER.match(arg)):
            groups.append([arg])
        else:
            groups[-1].append(arg)
    return groups


def flag_name(token: str) -> str:
    """A flag as written -> the name it sets: `--max_model_len=5` -> `max-model-len`,
    `--no-enable-prefix-caching` -> `enable-prefix-caching`, `--compilation-config.mode` ->
    `compilation-config`."""
    name = token.split("=", 1)[0].lstrip("-").replace("_", "-").split(".", 1)[0]
    return name.removeprefix("no-")


def flags_of(args: list[str] | tuple[str, ...]) -> list[str]:
    """The option tokens of a vLLM argument list, without values (negative numbers are values)."""
    return [a for a in args if a.startswith("-") and not _NUMBER.match(a) and a != "--"]


def vllm_arguments(s: ServePins, extra: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments after the image, notes): the model, the flags [serve] asks for, then
    `extra`. A flag that `extra` also sets is dropped from [serve]'s, so each is given once."""
    items: list[tuple[str, list[str], str]] = [
        ("--gpu-memory-utilization", [f"{s.gpu_memory_utilization:g}"], "gpu_memory_utilization"),
        ("--max-model-len", [str(s.max_model_len)], "max_model_len"),
        (
            "--enable-prefix-caching" if s.enable_prefix_caching else "--no-enable-prefix-caching",
            [],
            "enable_prefix_caching",
        ),
        (
            "--enable-chunked-prefill"
            if s.enable_chunked_prefill
            else "--no-enable-chunked-prefill",
            [],
            "enable_chunked_prefill",
        ),
    ]
    if s.reasoning_parser:
        items.append(("--reasoning-parser", [s.reasoning_parser], "reasoning_parser"))
    if s.tool_call_parser:
        items.append(("--enable-auto-tool-choice", [], "tool_call_parser"))
        items.append(("--tool-call-parser", [s.tool_call_parser], "tool_call_parser"))
    if s.attention_backend:
        items.append(("--attention-backend", [s.attention_backend], "attention_backend"))
    given = {flag_name(f) for f in flags_of(extra)}
    args, notes = [s.model], []
    for flag, values, key in items:
        if flag_name(flag) in given:
            notes.append(f"{flag} of [serve].{key} left out: the extra arguments set it")
            continue
        args += [flag, *values]
    return args + list(extra), notes


def _no_secret_flags(args: list[str], engine: Engine) -> None:
    """`--hf-token VALUE`, `--api-key VALUE`: refused, with the variable that carries it."""
    for i, arg in enumerate(args):
        if not arg.startswith("--") or flag_name(arg) not in SECRET_FLAGS:
            continue
        value = arg.split("=", 1)[1] if "=" in arg else None
        if value is None and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
        if value is not None and value.lower() not in ("true", "false"):
            variable = SECRET_FLAGS[flag_name(arg)]
            raise ConfigError(
                f"`{arg.split('=', 1)[0]}` with a value puts a secret on the container's command"
                f" line (`ps`, `{Path(engine.client).name} inspect`, this command's output);"
                f" export {variable} instead: serve passes it by name"
            )


def make_plan(
    engine: Engine,
    *,
    image: str,
    settings: ServePins,
    host: HostEnvironment,
    extra_args: list[str],
    env_requests: list[EnvRequest],
    name: str = DEFAULT_NAME,
) -> ServePlan:
    """Everything the container gets, decided; a ConfigError for a request that cannot be met."""
    if not _NAME.match(name):
        raise ConfigError(
            f"--name {name!r}: a container name is letters, digits, '_', '.', '-' (e.g. {DEFAULT_NAME})"
        )
    _no_secret_flags([*settings.extra_args, *extra_args], engine)
    vllm_args, notes = vllm_arguments(settings, [*settings.extra_args, *extra_args])
    env: dict[str, str] = dict(CACHE_ENV)
    by_name: list[str] = [n for n in SECRET_NAMES if n in host.set_names]
    for key, value in settings.env:
        if is_secret_name(key):
            raise ConfigError(
                f"[serve].env.{key}: a secret does not belong in versions.toml; export {key}"
                f" in the environment that runs serve and pass `--env {key}` (by name)"
            )
        env[key] = value
    for request in env_requests:
        if request.value is None:
            if request.name not in host.set_names:
                raise ConfigError(
                    f"--env {request.name}: {request.name} is not set here; export it, or write"
                    f" --env {request.name}=VALUE"
                )
            env.pop(request.name, None)
            by_name.append(request.name)
        elif is_secret_name(request.name):
            # Its value is on serve's command line already (shell history); it goes no further.
            env.pop(request.name, None)
            by_name.append(request.name)
            notes.append(
                f"--env {request.name}=...: passed to the container by name, not on the engine's"
                f" command line; export {request.name} instead of typing it (shell history)"
            )
        else:
            env[request.name] = request.value
    if "HF_TOKEN" not in by_name and "HUGGING_FACE_HUB_TOKEN" not in by_name:
        notes.append(
            "HF_TOKEN is not set: a gated model will not download (a token saved by"
            " `huggingface-cli login` in the host's HF cache is used, if there is one)"
        )
    hf_cache = Path(settings.hf_cache).expanduser() if settings.hf_cache else host.hf_cache
    volumes = ((settings.cache_volume, CACHE_ROOT), (str(hf_cache), HF_HOME))
    return ServePlan(
        engine=engine,
        image=image,
        name=name,
        settings=settings,
        vllm_args=tuple(vllm_args),
        env=tuple(sorted(env.items())),
        env_by_name=tuple(dict.fromkeys(by_name)),
        volumes=volumes,
        hf_cache=hf_cache,
        notes=tuple(notes),
    )
