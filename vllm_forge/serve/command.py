"""`vllm-forge serve` (`nox -s serve`): its options, and its run, in the order a failure is
cheapest to find: settings, the image's own vLLM (cached), the host's GPU runtime, the kernel
probe, then the start.

`--dry-run` prints the command and what it could not check here (no engine, no image, no GPU),
and starts nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import engines, pins, redact
from ..build import default_tag, slug
from ..errors import ConfigError, EngineError
from ..project import Project
from . import checks, image, preflight, server
from .plan import (
    DEFAULT_NAME,
    EnvRequest,
    ServePlan,
    host_environment,
    is_secret_name,
    make_plan,
)

# command-line option -> [serve] key it overrides
OVERRIDES = {
    "model": "model",
    "host": "host",
    "port": "port",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "max_model_len": "max_model_len",
    "prefix_caching": "enable_prefix_caching",
    "chunked_prefill": "enable_chunked_prefill",
    "reasoning_parser": "reasoning_parser",
    "tool_call_parser": "tool_call_parser",
    "attention_backend": "attention_backend",
    "gpus": "gpus",
    "cache_volume": "cache_volume",
    "hf_cache": "hf_cache",
    "timeout": "ready_timeout_s",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "Anything after a second `--` goes to `vllm serve` as is (checked against the image's"
        " own flags), e.g. `vllm-forge serve -- --max-num-seqs 8`. Every default is the [serve]"
        " table of versions.toml, per profile."
    )
    p.add_argument("--image", help="image to run (default: localhost/vllm-forge:PROFILE)")
    p.add_argument("--engine", choices=engines.ENGINE_NAMES, help="default: docker, else podman")
    p.add_argument("--model", help="Hugging Face model id ([serve].model)")
    p.add_argument("--host", help="host address to publish the port on ([serve].host)")
    p.add_argument("--port", type=int, help="host port ([serve].port)")
    p.add_argument("--gpu-memory-utilization", type=float, metavar="FRACTION")
    p.add_argument("--max-model-len", type=int, metavar="TOKENS")
    p.add_argument("--attention-backend", metavar="NAME", help="'' lets vLLM choose")
    p.add_argument("--reasoning-parser", metavar="NAME", help="'' for none")
    p.add_argument("--tool-call-parser", metavar="NAME", help="'' turns tool calls off")
    p.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--chunked-prefill", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--gpus", help="'all', 'none', or device indexes '0,1' ([serve].gpus)")
    p.add_argument("--cache-volume", metavar="NAME", help="the run-time cache volume")
    p.add_argument("--hf-cache", metavar="DIR", help="host Hugging Face cache to mount")
    p.add_argument("--timeout", type=int, metavar="SECONDS", help="how long to wait for /health")
    p.add_argument(
        "--env",
        "-e",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="more environment; NAME alone passes it from here by name (secrets: always by name)",
    )
    p.add_argument("--name", default=DEFAULT_NAME, help=f"container name (default: {DEFAULT_NAME})")
    p.add_argument("--dry-run", action="store_true", help="print the command; start nothing")
    p.add_argument("--detach", action="store_true", help="return once it serves; leave it running")
    p.add_argument("--bench", action="store_true", help="once up, measure output tokens/s")
    p.add_argument("--stop", action="store_true", help="stop and remove the container --name")
    p.add_argument("vllm_args", nargs="*", metavar="-- VLLM_ARGS", help=argparse.SUPPRESS)


def settings_of(project: Project, args: argparse.Namespace) -> pins.Pins:
    """The profile's pins with the command line's [serve] overrides; an override's error names
    the option it came from."""
    given = {
        key: getattr(args, option)
        for option, key in OVERRIDES.items()
        if getattr(args, option, None) is not None
    }
    try:
        return pins.resolve(
            pins.read_document(project.pins_file), args.profile, {"serve": given} if given else None
        )
    except ConfigError as exc:
        for option, key in OVERRIDES.items():
            if key in given and exc.message.startswith(f"[serve].{key} "):
                flag = "--" + option.replace("_", "-")
                raise ConfigError(flag + exc.message[len(f"[serve].{key}") :]) from None
        raise


def plan_of(
    project: Project, args: argparse.Namespace, engine: engines.Engine
) -> tuple[pins.Pins, ServePlan]:
    resolved = settings_of(project, args)
    plan = make_plan(
        engine,
        image=args.image or default_tag(resolved.profile, "runtime"),
        settings=resolved.serve,
        host=host_environment(os.environ, Path.home()),
        extra_args=[a for a in args.vllm_args if a != "--"],
        env_requests=[EnvRequest.parse(e) for e in args.env],
        name=args.name,
    )
    return resolved, plan


def nominal_engine(name: str) -> engines.Engine:
    """An engine that is not here, for a dry run's command (its client by name, from PATH)."""
    mode = "podman" if name == "podman" else "buildkit-classic"
    return engines.Engine(name=name, client=name, mode=mode, version="?")


def run(project: Project, args: argparse.Namespace) -> int:
    if args.stop:
        return stop(args)
    if args.dry_run:
        return dry_run(project, args)
    _typed_secrets(args, into_environment=True)
    engine = engines.detect(args.engine)
    resolved, plan = plan_of(project, args, engine)
    if not engine.image_exists(plan.image):
        raise ConfigError(
            f"image {plan.image} is not in {engine.name}; build it with `nox -s slim -- --profile"
            f" {resolved.profile} --engine {engine.name}`, or pass --image"
        )
    for note in plan.notes:
        print(f"serve: note: {note}")
    facts = image.read(engine, plan.image, project.build / "serve")
    for skipped in checks.check(plan, resolved, facts):
        print(f"serve: not checked: {skipped}")
    print(
        f"serve: flags and VLLM_* variables checked against vLLM {facts.vllm_version} in"
        f" {plan.image}" + (" (cached for this image ID)" if facts.cached else "")
    )
    if (state := engine.container_state(plan.name)) is not None:
        raise ConfigError(
            f"a container named {plan.name} exists ({state[0]}): stop it with `vllm-forge serve"
            f" --stop --name {plan.name}`, or pass another --name"
        )
    if problem := server.port_problem(plan.settings.host, plan.settings.port):
        raise ConfigError(problem)
    if plan.settings.gpus == "none":
        print("serve: --gpus none: no GPU handed in, the kernel probe skipped")
    else:
        print(f"serve: kernel probe: {preflight.run_probe(engine, plan.image, plan.settings.gpus)}")
    if plan.hf_cache is not None:
        plan.hf_cache.mkdir(parents=True, exist_ok=True)
    return server.serve(
        plan,
        log_path=project.logs / f"serve-{slug(plan.name)}.log",
        timeout=plan.settings.ready_timeout_s,
        detach=args.detach,
        bench=args.bench,
        api_key=os.environ.get("VLLM_API_KEY") if "VLLM_API_KEY" in plan.env_by_name else None,
    )


def _typed_secrets(args: argparse.Namespace, *, into_environment: bool) -> None:
    """A secret typed as `--env HF_TOKEN=...`: into the redaction rule, and (a real start) into
    the engine client's environment, from where it is passed by name."""
    for text in args.env:
        request = EnvRequest.parse(text)
        if request.value is not None and is_secret_name(request.name):
            redact.remember(request.value)
            if into_environment:
                os.environ[request.name] = request.value


def dry_run(project: Project, args: argparse.Namespace) -> int:
    not_checked: list[str] = []
    try:
        engine, here = engines.detect(args.engine), True
    except EngineError as exc:
        engine, here = nominal_engine(args.engine or "docker"), False
        not_checked.append(f"anything that needs {engine.name}: {exc}")
    _typed_secrets(args, into_environment=False)
    resolved, plan = plan_of(project, args, engine)
    facts = None
    if here and engine.image_exists(plan.image):
        facts = image.read(engine, plan.image, project.build / "serve")
    elif here:
        not_checked.append(
            f"the image's own vLLM: {plan.image} is not in {engine.name} (build it: `nox -s slim"
            f" -- --profile {resolved.profile} --engine {engine.name}`)"
        )
    not_checked += checks.check(plan, resolved, facts)
    if plan.settings.gpus != "none":
        if here and (problem := engine.gpu_runtime_problem()):
            not_checked.append(f"a start here would likely stop at the GPU: {problem}")
        not_checked.append("the kernel probe on the GPU (a dry run starts no container)")
    not_checked.append(f"{plan.url}/health and /v1/models (nothing is started)")
    client = Path(engine.client).name
    print(f"# vllm-forge serve --dry-run: profile {resolved.profile}, {engine.name}")
    for note in plan.notes:
        print(f"# note: {note}")
    if plan.env_by_name:
        names = ", ".join(plan.env_by_name)
        print(f"# passed by name: export {names} in the shell that runs this")
    print(plan.shell_command())
    print(f"# then: {client} logs -f {plan.name}; stop: {client} rm -f {plan.name}")
    if facts is not None:
        print(
            f"# checked against vLLM {facts.vllm_version} in {plan.image}: every flag (its"
            " `vllm serve --help=all`), every VLLM_* variable (vllm.envs), the backend"
        )
    print("# not checked here:")
    for item in not_checked:
        print(f"#   - {item}")
    return 0


def stop(args: argparse.Namespace) -> int:
    engine = engines.detect(args.engine)
    if engine.container_state(args.name) is None:
        print(f"serve: no container named {args.name} in {engine.name}")
        return 0
    done = engine.run(engine.remove_container_argv(args.name), check=False)
    if done.returncode != 0:
        raise engine.command_failed(
            engine.remove_container_argv(args.name), done.returncode, done.stderr
        )
    print(f"serve: stopped and removed {args.name}")
    return 0
