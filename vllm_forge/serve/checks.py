"""The plan checked against what the image's vLLM accepts, before anything starts.

Each problem is one ConfigError line that names the flag or variable, where it came from when
that helps, and what to write instead. Without the image's facts (a dry run on a machine without
the image), what the pins and this project's notes on vLLM 0.19.1 say is still checked, and the
rest is named as not checked.
"""

from __future__ import annotations

import difflib

from ..errors import ConfigError
from ..pins import Pins
from .image import ImageFacts
from .plan import ServePlan, flag_name, flags_of

# Flags and variables that RTX 5090 guides still hand out and vLLM 0.19.1 no longer has.
REMOVED_FLAGS = {
    "--enable-reasoning": "it is gone; `--reasoning-parser NAME` alone turns reasoning on"
    " ([serve].reasoning_parser)",
}
REMOVED_ENV = {
    "VLLM_ATTENTION_BACKEND": "the flag is `--attention-backend NAME` ([serve].attention_backend)",
    "VLLM_FLASH_ATTN_VERSION": "vLLM picks FlashAttention 2 on sm_120 itself; leave it out",
}
# Backends that are no use on an RTX 5090 (sm_120) whatever the image: (prefix, why).
NOT_FOR_SM120 = (
    ("ROCM_", "an AMD ROCm backend"),
    ("XPU_", "an Intel XPU backend"),
    ("CPU_ATTN", "vLLM's CPU backend"),
    ("FLASH_ATTN_MLA", "FlashAttention 3's MLA: sm_90a kernels only"),
    ("FLASHMLA", "FlashMLA runs on compute capability 9.0 and 10.0 only"),
    ("CUTLASS_MLA", "CUTLASS MLA kernels are for datacenter Blackwell (10.x)"),
    ("FLASHINFER_MLA", "FlashInfer's MLA (trtllm-gen) kernels are for datacenter Blackwell (10.x)"),
)
FLASHINFER_WHY = (
    "FlashInfer's prefill/decode kernels for sm_120 are not in flashinfer-cubin (sm100 only),"
    " the image has no flashinfer-jit-cache built ahead of time and no nvcc to JIT them: vLLM"
    ' would fail only after the weights are loaded and compiled ("Could not find nvcc");'
    " use FLASH_ATTN (vLLM's own choice on sm_120) or TRITON_ATTN, or an image of a profile"
    ' with [flashinfer].jit_cache = "source" (rtx5090)'
)


def check(plan: ServePlan, pins: Pins, facts: ImageFacts | None) -> list[str]:
    """Raise a ConfigError for the first problem; return what could not be checked."""
    skipped: list[str] = []
    args = list(plan.vllm_args[1:])
    _removed(args, plan)
    if facts is None:
        skipped.append(
            "each vLLM flag against the image's `vllm serve --help=all`; each VLLM_* variable"
            " against its vllm.envs; the backend and parsers against what it registers"
        )
    else:
        _flags(args, facts)
        _choices(args, facts)
        _parsers(args, facts, skipped)
        _env(plan, facts, skipped)
    _backend(args, pins, facts, skipped)
    return skipped


def values_of(args: list[str], flag: str) -> list[str]:
    """Every value given to `flag` (`--flag V` or `--flag=V`, underscores or hyphens)."""
    want = flag_name(flag)
    found = []
    for i, arg in enumerate(args):
        if not arg.startswith("-") or flag_name(arg) != want or arg.lstrip("-").startswith("no-"):
            continue
        if "=" in arg:
            found.append(arg.split("=", 1)[1])
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            found.append(args[i + 1])
    return found


def _removed(args: list[str], plan: ServePlan) -> None:
    for token in flags_of(args):
        flag = token.split("=", 1)[0].replace("_", "-")
        if flag in REMOVED_FLAGS:
            raise ConfigError(
                f"`{flag}` is not a flag of vLLM 0.19.1's `vllm serve`: {REMOVED_FLAGS[flag]}"
            )
    for name in _env_names(plan):
        if name in REMOVED_ENV:
            raise ConfigError(
                f'{name} is not read by vLLM 0.19.1 (not in vllm.envs; it only logs "Unknown vLLM'
                f' environment variable detected"): {REMOVED_ENV[name]}'
            )


def _flags(args: list[str], facts: ImageFacts) -> None:
    known = facts.help.flags
    for token in flags_of(args):
        flag = token.split("=", 1)[0]
        if flag in known or flag.split(".", 1)[0] in known:  # `--compilation-config.mode 3`
            continue
        dashed = flag.replace("_", "-")  # vLLM's parser accepts --max_model_len too
        if dashed in known or dashed.split(".", 1)[0] in known:
            continue
        if flag.startswith("-O") and "--optimization-level" in known:  # vLLM's -O3 shorthand
            continue
        close = difflib.get_close_matches(dashed, sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"`{flag}` is not a flag of `vllm serve` in {facts.image} (vLLM {facts.vllm_version},"
            f" read from its `vllm serve --help=all`){hint}"
        )


def _choices(args: list[str], facts: ImageFacts) -> None:
    given = {flag_name(f) for f in flags_of(args)}
    for flag, choices in facts.help.choices.items():
        if flag in facts.help.open_choices and "tool-parser-plugin" in given:
            continue
        for value in values_of(args, flag):
            if value not in choices:
                raise ConfigError(
                    f"`{flag} {value}`: vLLM {facts.vllm_version} in {facts.image} accepts"
                    f" {', '.join(choices)}"
                )


def _parsers(args: list[str], facts: ImageFacts, skipped: list[str]) -> None:
    given = {flag_name(f) for f in flags_of(args)}
    if facts.reasoning_parsers is None:
        skipped.append("the reasoning parser's name (the image's vLLM did not list its parsers)")
        return
    if "reasoning-parser-plugin" in given:
        return
    for value in values_of(args, "--reasoning-parser"):
        if value and value not in facts.reasoning_parsers:
            close = difflib.get_close_matches(value, facts.reasoning_parsers, n=1)
            raise ConfigError(
                f"`--reasoning-parser {value}`: vLLM {facts.vllm_version} in {facts.image} has"
                f" no such parser"
                + (f"; did you mean {close[0]}?" if close else "")
                + f" (it has {', '.join(facts.reasoning_parsers)})"
            )


def _env_names(plan: ServePlan) -> list[str]:
    return [name for name, _ in plan.env] + list(plan.env_by_name)


def _env(plan: ServePlan, facts: ImageFacts, skipped: list[str]) -> None:
    if facts.env_names is None:
        skipped.append("VLLM_* variables (the image's vllm.envs could not be read)")
        return
    for name in _env_names(plan):
        if name.startswith("VLLM_") and name not in facts.env_names:
            close = difflib.get_close_matches(name, sorted(facts.env_names), n=1, cutoff=0.8)
            raise ConfigError(
                f"{name} is not read by vLLM {facts.vllm_version} in {facts.image} (not in its"
                ' vllm.envs: it would only log "Unknown vLLM environment variable detected")'
                + (f"; did you mean {close[0]}?" if close else "")
            )


def _backend(args: list[str], pins: Pins, facts: ImageFacts | None, skipped: list[str]) -> None:
    for backend in values_of(args, "--attention-backend"):
        name = backend.upper()
        if name in ("", "AUTO", "NONE"):
            continue
        if facts is not None and facts.backends is not None and name not in facts.backends:
            close = difflib.get_close_matches(name, facts.backends, n=1)
            raise ConfigError(
                f"`--attention-backend {backend}`: vLLM {facts.vllm_version} in {facts.image} has"
                " no such backend" + (f"; did you mean {close[0]}?" if close else "")
            )
        for prefix, why in NOT_FOR_SM120:
            if name.startswith(prefix):
                raise ConfigError(
                    f"`--attention-backend {backend}` cannot run on an RTX 5090 (sm_120): {why}"
                )
        if name.startswith("FLASHINFER"):
            if facts is not None:
                runnable, where = facts.flashinfer_aot or bool(facts.nvcc), f"in {facts.image}"
            else:
                # The pins say: only a profile that compiles the jit-cache wheel has the kernels;
                # no slim image has nvcc.
                runnable, where = pins.builds_flashinfer, f"in profile {pins.profile}'s image"
                skipped.append(
                    "FlashInfer's kernels in the image itself (judged from the pins: "
                    + ("AOT-built" if runnable else "not AOT-built")
                    + ")"
                )
            if not runnable:
                raise ConfigError(
                    f"`--attention-backend {backend}` cannot run {where} on an RTX 5090: "
                    + FLASHINFER_WHY
                )
