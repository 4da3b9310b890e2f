"""What the image's own vLLM accepts, read from the image once per image ID.

One short container (no GPU, no network) runs `FACTS` with the image's Python: vLLM's own
`vllm serve --help=all` (where vLLM cannot infer a device without a GPU, the same CLI with its CPU
platform chosen up front, as verify does), the variables `vllm.envs` reads, the attention
backends and reasoning parsers it registers, and whether FlashInfer can get sm_120 kernels there
(its AOT jit-cache, or nvcc to JIT them). The answer is kept in build/serve/ under the image's ID:
the same image is never asked twice; a rebuilt one is.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import redact
from ..engines import Engine
from ..errors import VerifyError
from ..verify.scripts import NO_DEVICE, VLLM_CLI_NO_GPU

FACTS_FORMAT = 1  # bump when FACTS or ImageFacts change: older cache files are then ignored
MARKER = "FORGE-SERVE-FACTS "
# Without this, an NVIDIA runtime configured as the default would hand the GPU in anyway.
NO_GPU_ENV = {"NVIDIA_VISIBLE_DEVICES": "void"}

FACTS = r"""
import importlib.util, json, os, shutil, subprocess, sys
NO_GPU, NO_DEVICE, MARKER = @ARGS@
facts = {"cli": "vllm"}

def cli(*args):
    r = subprocess.run(["vllm", *args], capture_output=True, text=True)
    if r.returncode != 0 and NO_DEVICE in r.stdout + r.stderr:
        facts["cli"] = "vllm with its CPU platform chosen (no GPU here)"
        r = subprocess.run([sys.executable, "-c", NO_GPU, *args], capture_output=True, text=True)
    return r

try:
    r = cli("serve", "--help=all")
    facts.update(help=r.stdout, help_rc=r.returncode, help_error=r.stderr[-1500:])
except OSError as e:
    facts.update(help="", help_rc=127, help_error=str(e))
try:
    import vllm
    facts["vllm_version"] = getattr(vllm, "__version__", "")
    import vllm.envs as envs
    facts["env_names"] = sorted(envs.environment_variables)
except Exception as e:
    facts["env_error"] = repr(e)[-300:]
try:
    from vllm.v1.attention.backends.registry import AttentionBackendEnum
    facts["backends"] = [m.name for m in AttentionBackendEnum]
except Exception as e:
    facts["backends_error"] = repr(e)[-300:]
try:
    from vllm.reasoning import ReasoningParserManager as R
    names = set(getattr(R, "reasoning_parsers", {})) | set(getattr(R, "lazy_parsers", {}))
    facts["reasoning_parsers"] = sorted(names)
except Exception as e:
    facts["reasoning_error"] = repr(e)[-300:]
facts["flashinfer"] = importlib.util.find_spec("flashinfer") is not None
facts["flashinfer_aot"] = importlib.util.find_spec("flashinfer_jit_cache") is not None
cuda_home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
nvcc = shutil.which("nvcc") or os.path.join(cuda_home, "bin", "nvcc")
facts["nvcc"] = nvcc if os.access(nvcc, os.X_OK) else ""
print(MARKER + json.dumps(facts))
""".replace("@ARGS@", repr((VLLM_CLI_NO_GPU, NO_DEVICE, MARKER)))

_OPTION_LINE = re.compile(r"^ {2}(-{1,2}[A-Za-z0-9].*)$")
_CHOICES = re.compile(r"^(?P<flag>-{1,2}[A-Za-z0-9][\w.-]*) \{(?P<choices>[^}]*)\}")


@dataclass(frozen=True, kw_only=True)
class HelpFlags:
    flags: frozenset[str]  # every option string: --max-model-len, --no-enable-prefix-caching, -q
    choices: dict[str, tuple[str, ...]]  # option -> its {choices}, where the help lists them
    open_choices: frozenset[str]  # options whose choices a plugin can extend ("or name ...")


def parse_help(text: str) -> HelpFlags:
    """The options of an argparse help text (vLLM's `--help=all`): each line that starts, after
    two spaces, with an option; its comma-separated aliases; `{a,b}` choices."""
    flags: set[str] = set()
    choices: dict[str, tuple[str, ...]] = {}
    open_choices: set[str] = set()
    for line in text.splitlines():
        match = _OPTION_LINE.match(line)
        if not match:
            continue
        invocation = re.split(r"\s{2,}", match.group(1).strip(), maxsplit=1)[0]
        for part in re.split(r",\s+(?=-)", invocation):
            token = part.split()[0] if part.split() else ""
            if token.startswith("-"):
                flags.add(token)
            found = _CHOICES.match(part)
            if found:
                choices[found["flag"]] = tuple(found["choices"].split(","))
                if " or " in part.split("}", 1)[-1]:  # "... or name registered in --plugin"
                    open_choices.add(found["flag"])
    return HelpFlags(flags=frozenset(flags), choices=choices, open_choices=frozenset(open_choices))


@dataclass(frozen=True, kw_only=True)
class ImageFacts:
    image: str
    image_id: str
    vllm_version: str
    cli: str  # how the help was read
    help: HelpFlags
    env_names: frozenset[str] | None  # None: could not be read
    backends: tuple[str, ...] | None
    reasoning_parsers: tuple[str, ...] | None
    flashinfer_aot: bool  # flashinfer-jit-cache is installed (kernels built ahead of time)
    nvcc: str  # where nvcc is, "" if the image has none (FlashInfer cannot JIT)
    cached: bool = False  # read from build/serve/ rather than from the image just now


def cache_file(cache_dir: Path, image_id: str) -> Path:
    return cache_dir / f"facts-{image_id.removeprefix('sha256:')[:24]}.json"


def read(engine: Engine, image: str, cache_dir: Path, echo=print) -> ImageFacts:
    """The image's facts: from build/serve/ if this image ID was asked before, else from a
    container of the image (about 20 s: vLLM's CLI imports torch)."""
    image_id = engine.image_id(image)
    path = cache_file(cache_dir, image_id)
    raw = _load(path, image_id)
    cached = raw is not None
    if raw is None:
        echo(f"serve: reading `vllm serve --help=all` and vllm.envs from {image} (once per image)")
        raw = _ask(engine, image)
        raw.update(format=FACTS_FORMAT, image_id=image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        redact.write_text(path, json.dumps(raw, indent=1) + "\n")
    return _facts(raw, image, image_id, cached=cached)


def _load(path: Path, image_id: str) -> dict | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if raw.get("format") != FACTS_FORMAT or raw.get("image_id") != image_id:
        return None
    return raw


def _ask(engine: Engine, image: str, *, timeout: float = 600) -> dict:
    name = f"vllm-forge-serve-facts-{uuid.uuid4().hex[:12]}"
    argv = engine.run_argv(
        image,
        ["-c", FACTS],
        entrypoint="python3",
        env=NO_GPU_ENV,
        name=name,
        extra=engine.no_network_flags(),
    )
    try:
        result = engine.run(argv, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        # the client is gone, its container is not (--rm acts on exit only)
        engine.run(engine.remove_container_argv(name), check=False)
        raise VerifyError(
            f"cannot read what vLLM accepts from {image}: no answer in {timeout:.0f} s"
            " (--dry-run shows the command without this check)"
        ) from None
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    raise VerifyError(
        f"cannot read what vLLM accepts from {image}: `python3 -c FACTS` exited"
        f" {result.returncode}: {last[-300:]}; is it a vllm-forge image? (--dry-run shows the"
        " command without this check)"
    )


def _facts(raw: dict, image: str, image_id: str, *, cached: bool) -> ImageFacts:
    if raw.get("help_rc") != 0 or not raw.get("help"):
        last = (str(raw.get("help_error", "")).strip().splitlines() or ["no output"])[-1]
        raise VerifyError(
            f"`vllm serve --help=all` failed in {image} (exit {raw.get('help_rc')}): {last[-300:]}"
        )
    env_names = raw.get("env_names")
    backends = raw.get("backends")
    parsers = raw.get("reasoning_parsers")
    return ImageFacts(
        image=image,
        image_id=image_id,
        vllm_version=str(raw.get("vllm_version") or "?"),
        cli=str(raw.get("cli", "vllm")),
        help=parse_help(raw["help"]),
        env_names=frozenset(env_names) if env_names is not None else None,
        backends=tuple(backends) if backends is not None else None,
        reasoning_parsers=tuple(parsers) if parsers is not None else None,
        flashinfer_aot=bool(raw.get("flashinfer_aot")),
        nvcc=str(raw.get("nvcc") or ""),
        cached=cached,
    )
