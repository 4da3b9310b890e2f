"""versions.toml + a profile + command-line overrides -> one frozen `Pins` object.

Nothing downstream reads the TOML again. Every check here fails with one line that names the
key, what is wrong, and the accepted form.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cuda_arch import (
    Arch,
    check_nvcc_can_build,
    covers,
    format_arch_list,
    parse_arch_list,
    served_gpu_warning,
)
from .errors import ConfigError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_REV = re.compile(r"^[0-9a-f]{40}$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*([ab]|rc|\.post|\.dev)?[0-9]*$")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?$")
# An nvidia/cuda-style tag: CUDA major.minor.patch, then the flavour (`12.8.1-devel-ubuntu24.04`).
_CUDA_TAG = re.compile(r"^(?P<major>[0-9]+)\.(?P<minor>[0-9]+)\.[0-9]+(-|$)")
# torch's CUDA build, as its lock pins the CUDA runtime: `nvidia-cuda-runtime-cu12==12.8.90`
# (CUDA 12 builds) or `nvidia-cuda-runtime==13.0.96` (CUDA 13 builds, via cuda-toolkit[cudart]).
_LOCK_CUDA_RUNTIME = re.compile(
    r"^(?P<req>nvidia-cuda-runtime(?:-cu[0-9]+)?==(?P<major>[0-9]+)\.(?P<minor>[0-9]+)\S*)",
    re.M | re.I,
)
_EPOCH_MAX = 253402300799  # 9999-12-31T23:59:59Z

# The schema: table -> {key: type}. A profile may override any key of any table, plus `description`.
SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "project": {"default_profile": str, "source_date_epoch": int},
    "cuda": {"version": str},
    "images": {"devel": str, "runtime": str},
    "python": {"version": str, "platform": str},
    "torch": {"version": str, "torchvision": str, "torchaudio": str, "index_url": str},
    "flashinfer": {
        "version": str,
        "packages": list,
        "jit_cache": str,
        "git_url": str,
        "revision": str,
        "cuda_arch_list": str,
    },
    "vllm": {"version": str, "source": str, "sdist_sha256": str, "git_url": str, "revision": str},
    "toolchain": {"nvcc": str, "nvcc_package": str},
    "build": {
        "torch_cuda_arch_list": str,
        "max_jobs": (str, int),
        "nvcc_threads": int,
        "ccache_max_size": str,
    },
    "budget": {"slim_max_gb": (int, float)},
    "base": {"suite": str, "image": str, "mirror": str},
    "serve": {
        "model": str,
        "host": str,
        "port": int,
        "gpu_memory_utilization": (int, float),
        "max_model_len": int,
        "enable_prefix_caching": bool,
        "enable_chunked_prefill": bool,
        "reasoning_parser": str,
        "tool_call_parser": str,
        "attention_backend": str,
        "gpus": str,
        "cache_volume": str,
        "hf_cache": str,
        "ready_timeout_s": int,
        "extra_args": list,
        "env": dict,
    },
}
# base: only profiles that make their own base image have it; serve: every key has a default
# (SERVE_DEFAULTS), so a pins file without the table still resolves.
OPTIONAL_TABLES = {"base", "serve"}
PROFILE_ONLY_KEYS = {"description"}


DOCKER_HUB = "docker.io"  # the registry of a name without a host, by Docker's rules
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the distribution spec's grammar
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """`name:tag@sha256:digest`, or a `localhost/` image made on this machine (no digest).

    `name` is kept as written (for rewriting); `registry` and `repository` are what a registry
    client asks for, with Docker's rules for names without a host (`docker.io`, `library/`).
    """

    raw: str
    name: str
    tag: str
    digest: str | None

    @property
    def local(self) -> bool:
        return self.name.startswith("localhost/")

    @property
    def cuda(self) -> str | None:
        """The CUDA major.minor its tag names (`12.8.1-devel-ubuntu24.04` -> "12.8"); None for a
        `localhost/` image or a tag that is not a CUDA version."""
        match = None if self.local else _CUDA_TAG.match(self.tag)
        return f"{match['major']}.{match['minor']}" if match else None

    @property
    def pull_ref(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"

    @property
    def registry(self) -> str:
        """The registry host: `127.0.0.1:5000`, `localhost`, or `docker.io` when none is written."""
        return _split_host(self.name)[0]

    @property
    def repository(self) -> str:
        """The repository on that registry: `nvidia/cuda`; `library/ubuntu` for `ubuntu`."""
        return _split_host(self.name)[1]

    @staticmethod
    def is_tag(text: str) -> bool:
        """Whether `text` is a tag by the distribution spec's grammar."""
        return bool(_TAG.match(text))

    def with_tag(self, tag: str, digest: str) -> ImageRef:
        """The same image name at another tag and digest (the bump moves pins this way)."""
        return ImageRef(raw=f"{self.name}:{tag}@{digest}", name=self.name, tag=tag, digest=digest)

    @classmethod
    def parse(cls, raw: str, key: str, *, need_digest: bool = True) -> ImageRef:
        """Parse and check one pin; `need_digest=False` lets a tag alone through (bump pins it)."""
        ref, _, digest = raw.partition("@")
        name, sep, tag = ref.rpartition(":")
        if not sep or "/" in tag or not name:
            raise ConfigError(f"{key}: {raw!r} has no tag; write it as NAME:TAG@sha256:<64 hex>")
        if not _TAG.match(tag):
            raise ConfigError(
                f"{key}: {raw!r}: tag {tag!r} is not a valid tag (letters, digits, '_', '.', '-')"
            )
        repository = _split_host(name)[1]
        if not all(_PATH_COMPONENT.match(part) for part in repository.split("/")):
            raise ConfigError(
                f"{key}: {raw!r}: {repository!r} is not a repository name (lowercase letters and"
                " digits, separated by '.', '_', '__' or '-')"
            )
        if name.startswith("localhost/"):
            if digest:
                raise ConfigError(
                    f"{key}: {raw!r}: a localhost/ image is made here; drop the @digest"
                )
            return cls(raw=raw, name=name, tag=tag, digest=None)
        if not digest:
            if not need_digest:
                return cls(raw=raw, name=name, tag=tag, digest=None)
            raise ConfigError(
                f"{key}: {raw!r} is not pinned by digest; append @sha256:<64 hex> "
                "(`nox -s bump` resolves it)"
            )
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or not _SHA256.match(hexpart):
            raise ConfigError(
                f"{key}: digest {digest!r} is not 'sha256:' followed by 64 lowercase hex digits"
            )
        return cls(raw=raw, name=name, tag=tag, digest=digest)


def _split_host(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a host if it has a '.' or a ':' or is `localhost`."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = DOCKER_HUB, name
    if host == f"index.{DOCKER_HUB}":
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return host, repository


@dataclass(frozen=True, kw_only=True)
class TorchPins:
    version: str
    torchvision: str
    torchaudio: str
    index_url: str


@dataclass(frozen=True, kw_only=True)
class FlashInferPins:
    version: str
    packages: tuple[str, ...]
    jit_cache: str  # "source" | "none"
    git_url: str
    revision: str
    cuda_arch_list: tuple[Arch, ...]


@dataclass(frozen=True, kw_only=True)
class VllmPins:
    version: str
    source: str  # "sdist" | "git" | "wheel"
    sdist_sha256: str
    git_url: str
    revision: str

    @property
    def source_pin(self) -> str:
        """What pins the source: the sdist hash, the git revision, or the wheel's version."""
        if self.source == "sdist":
            return f"sdist sha256:{self.sdist_sha256}"
        if self.source == "git":
            return f"git {self.git_url}@{self.revision}"
        return f"wheel vllm=={self.version}"


@dataclass(frozen=True, kw_only=True)
class BuildKnobs:
    arch_list: tuple[Arch, ...]
    max_jobs: int | None  # None: size from cores and memory
    nvcc_threads: int
    ccache_max_size: str


@dataclass(frozen=True, kw_only=True)
class BaseSpec:
    suite: str
    image: str
    mirror: str = ""  # "" = mmdebstrap's default


# `nox -s serve`'s defaults: the recipe RTX 5090 guides hand out (QwQ-32B-AWQ on one card,
# FlashInfer attention, prefix caching, chunked prefill, a 32k context, reasoning and tool calls).
SERVE_DEFAULTS: dict[str, Any] = {
    "model": "Qwen/QwQ-32B-AWQ",
    "host": "127.0.0.1",
    "port": 8000,
    "gpu_memory_utilization": 0.9,
    "max_model_len": 32768,
    "enable_prefix_caching": True,
    "enable_chunked_prefill": True,
    "reasoning_parser": "deepseek_r1",
    "tool_call_parser": "hermes",
    "attention_backend": "FLASHINFER",
    "gpus": "all",
    "cache_volume": "vllm-forge-cache",
    "hf_cache": "",
    "ready_timeout_s": 1800,
    "extra_args": [],
    "env": {},
}
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_GPUS = re.compile(r"^(all|none|[0-9]+(,[0-9]+)*)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BACKEND = re.compile(r"^[A-Z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class ServePins:
    """How `nox -s serve` runs the slim image: the [serve] table (README: serve)."""

    model: str = SERVE_DEFAULTS["model"]
    host: str = SERVE_DEFAULTS["host"]  # the host address the port is published on
    port: int = SERVE_DEFAULTS["port"]  # the host port; vLLM listens on 8000 in the container
    gpu_memory_utilization: float = SERVE_DEFAULTS["gpu_memory_utilization"]
    max_model_len: int = SERVE_DEFAULTS["max_model_len"]
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    reasoning_parser: str = SERVE_DEFAULTS["reasoning_parser"]  # "" = none
    tool_call_parser: str = SERVE_DEFAULTS["tool_call_parser"]  # "" = no tool calls
    attention_backend: str = SERVE_DEFAULTS["attention_backend"]  # "" = vLLM chooses
    gpus: str = "all"  # "all", "none", or device indexes "0,1"
    cache_volume: str = SERVE_DEFAULTS["cache_volume"]
    hf_cache: str = ""  # "" = the host's own HF cache (HF_HOME, XDG_CACHE_HOME, ~/.cache)
    ready_timeout_s: int = SERVE_DEFAULTS["ready_timeout_s"]
    extra_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def parse_serve(table: dict[str, Any]) -> ServePins:
    """[serve] (defaults, then the document, the profile and overrides, merged) -> ServePins."""
    d = {**SERVE_DEFAULTS, **table}
    model = d["model"]
    if not model or any(c.isspace() for c in model):
        raise ConfigError(
            f"[serve].model = {model!r}; write a Hugging Face model id, e.g. 'Qwen/QwQ-32B-AWQ'"
        )
    try:
        ipaddress.IPv4Address(d["host"])
    except ValueError:
        raise ConfigError(
            f"[serve].host = {d['host']!r}; write the IPv4 address to publish the port on:"
            " '127.0.0.1' (this machine only) or '0.0.0.0' (every interface)"
        ) from None
    if not 1 <= d["port"] <= 65535:
        raise ConfigError(f"[serve].port = {d['port']}; write a TCP port from 1 to 65535")
    utilization = d["gpu_memory_utilization"]
    if isinstance(utilization, bool) or not 0 < utilization <= 1:
        raise ConfigError(
            f"[serve].gpu_memory_utilization = {utilization!r}; write a fraction above 0 and at"
            " most 1, e.g. 0.9"
        )
    if d["max_model_len"] < 1:
        raise ConfigError(
            f"[serve].max_model_len = {d['max_model_len']}; write the context length in tokens,"
            " e.g. 32768"
        )
    for key in ("reasoning_parser", "tool_call_parser"):
        if d[key] and not re.match(r"^[A-Za-z0-9_.-]+$", d[key]):
            raise ConfigError(f"[serve].{key} = {d[key]!r}; write a parser name, or '' for none")
    if not _BACKEND.match(d["attention_backend"]):
        raise ConfigError(
            f"[serve].attention_backend = {d['attention_backend']!r}; write a vLLM backend name"
            " in capitals (FLASH_ATTN, FLASHINFER, TRITON_ATTN), or '' for vLLM's choice"
        )
    if not _GPUS.match(d["gpus"]):
        raise ConfigError(
            f"[serve].gpus = {d['gpus']!r}; accepted: 'all', 'none', or device indexes like '0,1'"
        )
    if not _VOLUME_NAME.match(d["cache_volume"]):
        raise ConfigError(
            f"[serve].cache_volume = {d['cache_volume']!r}; write a volume name (letters,"
            " digits, '_', '.', '-'), e.g. 'vllm-forge-cache'"
        )
    hf_cache = d["hf_cache"]
    if hf_cache and not hf_cache.startswith(("/", "~")):
        raise ConfigError(
            f"[serve].hf_cache = {hf_cache!r}; write an absolute path (or ~/...), or '' for the"
            " host's own Hugging Face cache"
        )
    if d["ready_timeout_s"] < 1:
        raise ConfigError(f"[serve].ready_timeout_s = {d['ready_timeout_s']}; write seconds >= 1")
    extra = d["extra_args"]
    if not all(isinstance(a, str) for a in extra):
        raise ConfigError(f"[serve].extra_args = {extra!r}; write a list of strings")
    env = d["env"]
    for name, value in env.items():
        if not _ENV_NAME.match(name) or not isinstance(value, str):
            # the name and the value's type only: the value may be a token written by mistake
            raise ConfigError(
                f"[serve].env.{name}: a {type(value).__name__} under that name; write"
                ' NAME = "value" (a string), e.g. VLLM_LOGGING_LEVEL = "DEBUG"'
            )
    return ServePins(
        model=model,
        host=d["host"],
        port=d["port"],
        gpu_memory_utilization=float(utilization),
        max_model_len=d["max_model_len"],
        enable_prefix_caching=d["enable_prefix_caching"],
        enable_chunked_prefill=d["enable_chunked_prefill"],
        reasoning_parser=d["reasoning_parser"],
        tool_call_parser=d["tool_call_parser"],
        attention_backend=d["attention_backend"],
        gpus=d["gpus"],
        cache_volume=d["cache_volume"],
        hf_cache=hf_cache,
        ready_timeout_s=d["ready_timeout_s"],
        extra_args=tuple(extra),
        env=tuple(sorted(env.items())),
    )


@dataclass(frozen=True, kw_only=True)
class Pins:
    profile: str
    description: str
    source_date_epoch: int
    cuda_version: str
    devel: ImageRef
    runtime: ImageRef
    python_version: str
    python_platform: str  # uv's --python-platform, e.g. x86_64-manylinux_2_39
    torch: TorchPins
    flashinfer: FlashInferPins
    vllm: VllmPins
    nvcc: str  # "image" | "index"
    nvcc_package: str
    build: BuildKnobs
    slim_max_gb: float
    base: BaseSpec | None
    nvcc_cuda: str = ""  # the CUDA release of the nvcc the build uses ("12.8", "13.0")
    warnings: tuple[str, ...] = ()  # pins that build, but not what the profile promises
    serve: ServePins = field(default_factory=ServePins)  # how `nox -s serve` runs the image

    @property
    def compiles_vllm(self) -> bool:
        return self.vllm.source in ("sdist", "git")

    @property
    def builds_flashinfer(self) -> bool:
        """Whether the builder compiles FlashInfer's AOT kernels (its jit-cache wheel)."""
        return self.compiles_vllm and self.flashinfer.jit_cache == "source"

    def labels(self) -> dict[str, str]:
        """Every pin as an OCI-style label (the image carries what it was built from)."""
        prefix = "io.github.vllm-forge"
        return {
            f"{prefix}.profile": self.profile,
            f"{prefix}.cuda": self.cuda_version,
            f"{prefix}.base.devel": self.devel.raw,
            f"{prefix}.base.runtime": self.runtime.raw,
            f"{prefix}.python": self.python_version,
            f"{prefix}.torch": self.torch.version,
            f"{prefix}.torchvision": self.torch.torchvision,
            f"{prefix}.torchaudio": self.torch.torchaudio,
            f"{prefix}.flashinfer": self.flashinfer.version,
            f"{prefix}.flashinfer.packages": ",".join(self.flashinfer.packages),
            f"{prefix}.flashinfer.jit-cache": self.flashinfer.jit_cache,
            f"{prefix}.vllm": self.vllm.version,
            f"{prefix}.vllm.source": self.vllm.source_pin,
            f"{prefix}.torch-cuda-arch-list": ";".join(str(a) for a in self.build.arch_list),
            f"{prefix}.nvcc": self.nvcc if self.nvcc == "image" else self.nvcc_package,
            "org.opencontainers.image.version": self.vllm.version,
            "org.opencontainers.image.base.name": self.runtime.raw,
        }


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_tables(doc: dict[str, Any], where: str, *, allow_missing: bool) -> None:
    for table, value in doc.items():
        if table in PROFILE_ONLY_KEYS and where != "versions.toml":
            continue
        if table not in SCHEMA:
            known = ", ".join(sorted(SCHEMA))
            raise ConfigError(f"{where}: unknown table [{table}]; known tables: {known}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{table}] must be a table")
        for key, item in value.items():
            if key not in SCHEMA[table]:
                known = ", ".join(sorted(SCHEMA[table]))
                raise ConfigError(f"{where}: unknown key [{table}].{key}; known keys: {known}")
            expected = SCHEMA[table][key]
            if not isinstance(item, expected) or (isinstance(item, bool) and expected is not bool):
                names = (
                    expected.__name__
                    if isinstance(expected, type)
                    else " or ".join(t.__name__ for t in expected)
                )
                raise ConfigError(f"{where}: [{table}].{key} must be a {names}, not {item!r}")
    if not allow_missing:
        for table, keys in SCHEMA.items():
            if table in OPTIONAL_TABLES:
                continue
            missing = [k for k in keys if k not in doc.get(table, {})]
            if missing:
                raise ConfigError(f"{where}: [{table}] lacks {', '.join(missing)}")


def read_document(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def read_text(path: Path) -> str:
    """The text of a pins file; one ConfigError line if it cannot be read or is not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the project root or pass --pins") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; pass the versions.toml file in it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: byte {exc.object[exc.start]:#04x} at offset {exc.start} is not UTF-8;"
            " TOML is UTF-8: save the file as UTF-8"
        ) from None


def _profiles(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `[profiles.NAME]` tables; a ConfigError for anything else under [profiles]."""
    profiles = doc.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"profiles = {profiles!r}: write each profile as a [profiles.NAME] table")
    for name, value in profiles.items():
        if not isinstance(value, dict):
            raise ConfigError(
                f"[profiles].{name} = {value!r}: a profile is a table; write [profiles.{name}]"
                " with its overrides (or just a description) under it"
            )
        description = value.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"[profiles.{name}].description must be a str, not {description!r}")
    return profiles


def profile_names(doc: dict[str, Any]) -> list[str]:
    return sorted(_profiles(doc))


def resolve(doc: dict[str, Any], profile: str | None = None, overrides: dict | None = None) -> Pins:
    """Validate the document and return the pins of one profile with overrides applied."""
    doc = dict(doc)
    profiles = _profiles(doc)
    doc.pop("profiles", None)
    _check_tables(doc, "versions.toml", allow_missing=False)
    name = profile or doc["project"]["default_profile"]
    if name not in profiles:
        raise ConfigError(
            f"unknown profile {name!r}; known profiles: {', '.join(sorted(profiles)) or 'none'}"
        )
    for pname, pdoc in profiles.items():
        _check_tables(pdoc, f"[profiles.{pname}]", allow_missing=True)
    pdoc = dict(profiles[name])
    description = pdoc.pop("description", "")
    merged = _merge(_merge(doc, pdoc), overrides or {})
    arch_override = "torch_cuda_arch_list" in (overrides or {}).get("build", {})
    return _build(name, description, merged, arch_from="--arch-list" if arch_override else None)


def resolve_all(doc: dict[str, Any]) -> dict[str, Pins]:
    """Every profile's pins: one broken profile is refused even when another is asked for."""
    every = {}
    for name in profile_names(doc):
        try:
            every[name] = resolve(doc, name)
        except ConfigError as error:  # say which profile, when another one was asked for
            if f"profile {name}" in error.message or f"profiles.{name}" in error.message:
                raise
            raise ConfigError(f"profile {name}: {error.message}") from None
    return every


def load(path: Path, profile: str | None = None, overrides: dict | None = None) -> Pins:
    return resolve(read_document(path), profile, overrides)


def _choice(value: str, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r}; accepted: {', '.join(repr(a) for a in allowed)}")
    return value


def _version(value: str, key: str) -> str:
    if not _VERSION.match(value):
        raise ConfigError(f"{key} = {value!r} is not an exact version like '2.10.0'")
    return value


def parse_max_jobs(value: str | int, key: str = "[build].max_jobs") -> int | None:
    if value == "auto":
        return None
    try:
        jobs = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} = {value!r}; accepted: 'auto' or a whole number >= 1") from None
    if jobs < 1:
        raise ConfigError(f"{key} = {jobs}; it must be at least 1 (or 'auto')")
    return jobs


def _build(name: str, description: str, d: dict[str, Any], *, arch_from: str | None = None) -> Pins:
    vllm = d["vllm"]
    source = _choice(vllm["source"], ("sdist", "git", "wheel"), "[vllm].source")
    if source == "sdist" and not _SHA256.match(vllm["sdist_sha256"]):
        raise ConfigError(
            "[vllm].source = 'sdist' needs [vllm].sdist_sha256: the sdist's sha256, 64 hex digits"
        )
    if source == "git" and not _GIT_REV.match(vllm["revision"]):
        raise ConfigError(
            "[vllm].source = 'git' needs [vllm].revision: a full 40-hex commit, not a branch or tag"
        )
    fi = d["flashinfer"]
    jit_cache = _choice(fi["jit_cache"], ("source", "none"), "[flashinfer].jit_cache")
    if jit_cache == "source" and not _GIT_REV.match(fi["revision"]):
        raise ConfigError(
            "[flashinfer].jit_cache = 'source' needs [flashinfer].revision: a full 40-hex commit"
        )
    packages = tuple(fi["packages"])
    if not packages or not all(isinstance(p, str) and p.startswith("flashinfer") for p in packages):
        raise ConfigError(
            "[flashinfer].packages must list FlashInfer packages, e.g. 'flashinfer-python'"
        )
    build = d["build"]
    if build["nvcc_threads"] < 1:
        raise ConfigError(f"[build].nvcc_threads = {build['nvcc_threads']}; it must be at least 1")
    if not _SIZE.match(build["ccache_max_size"]):
        raise ConfigError(
            f"[build].ccache_max_size = {build['ccache_max_size']!r}; write e.g. '20G'"
        )
    if not re.match(r"^3\.[0-9]+$", d["python"]["version"]):
        raise ConfigError(f"[python].version = {d['python']['version']!r}; write e.g. '3.12'")
    if not re.match(r"^(x86_64|aarch64)-manylinux_2_[0-9]+$", d["python"]["platform"]):
        raise ConfigError(
            f"[python].platform = {d['python']['platform']!r}; write e.g. 'x86_64-manylinux_2_39'"
        )
    if not re.match(r"^[0-9]+\.[0-9]+$", d["cuda"]["version"]):
        raise ConfigError(f"[cuda].version = {d['cuda']['version']!r}; write e.g. '12.8'")
    epoch = d["project"]["source_date_epoch"]
    if not 0 <= epoch <= _EPOCH_MAX:
        raise ConfigError(
            f"[project].source_date_epoch = {epoch}; it is seconds since 1970-01-01 UTC, 0 or more"
            " (e.g. `git log -1 --format=%ct`)"
        )
    slim_max_gb = d["budget"]["slim_max_gb"]
    if not slim_max_gb > 0:
        raise ConfigError(f"[budget].slim_max_gb = {slim_max_gb}; it must be a size in GB above 0")
    base = None
    if "base" in d:
        base = BaseSpec(
            suite=d["base"]["suite"], image=d["base"]["image"], mirror=d["base"].get("mirror", "")
        )
        ImageRef.parse(base.image, "[base].image")
    devel = ImageRef.parse(d["images"]["devel"], "[images].devel")
    runtime = ImageRef.parse(d["images"]["runtime"], "[images].runtime")
    for ref, key in ((devel, "devel"), (runtime, "runtime")):
        if ref.local and (base is None or ref.raw != base.image):
            raise ConfigError(
                f"[images].{key} = {ref.raw!r} is a localhost/ image, but the profile makes no "
                "such base ([base].image)"
            )
    cuda = d["cuda"]["version"]
    for ref, key in ((devel, "devel"), (runtime, "runtime")):
        if ref.cuda is not None and ref.cuda != cuda:
            raise ConfigError(
                f"profile {name}: [images].{key} is a CUDA {ref.cuda} image ({ref.name}:{ref.tag}),"
                f" but [cuda].version = {cuda!r}: the bases' tags, [cuda].version and torch's CUDA"
                " build must agree; change them together"
            )
    nvcc = _choice(d["toolchain"]["nvcc"], ("image", "index"), "[toolchain].nvcc")
    nvcc_cuda, nvcc_what = _nvcc_cuda(nvcc, d["toolchain"]["nvcc_package"], cuda)
    if source in ("sdist", "git") and nvcc_cuda.split(".")[0] != cuda.split(".")[0]:
        raise ConfigError(
            f"profile {name} compiles vLLM against torch for CUDA {cuda} with CUDA {nvcc_cuda}'s"
            f" nvcc ({nvcc_what}); torch's extension build refuses another CUDA major: use"
            f" [toolchain].nvcc = 'image' or a CUDA {cuda.split('.')[0]} nvcc_package"
        )
    arch_what = arch_from or "[build].torch_cuda_arch_list"
    arch_list = parse_arch_list(build["torch_cuda_arch_list"], what=arch_what)
    check_nvcc_can_build(arch_list, nvcc_cuda, what=arch_what, nvcc=nvcc_what)
    fi_archs = parse_arch_list(fi["cuda_arch_list"], what="[flashinfer].cuda_arch_list")
    check_nvcc_can_build(fi_archs, nvcc_cuda, what="[flashinfer].cuda_arch_list", nvcc=nvcc_what)
    warnings = [w for w in (served_gpu_warning(arch_list, what=arch_what),) if w]
    if source in ("sdist", "git") and jit_cache == "source":
        uncovered = [a for a in arch_list if covers(fi_archs, a.capability) != "sass"]
        if uncovered:
            warnings.append(
                f"FlashInfer's AOT kernels are built for [flashinfer].cuda_arch_list ="
                f" {format_arch_list(fi_archs, sep=' ')!r} only: {arch_what}'s"
                f" {format_arch_list(tuple(uncovered), sep=' ')} gets vLLM's kernels but no"
                " FlashInfer ones; set [flashinfer].cuda_arch_list in versions.toml to add it"
            )
    return Pins(
        profile=name,
        description=description,
        source_date_epoch=epoch,
        cuda_version=d["cuda"]["version"],
        devel=devel,
        runtime=runtime,
        python_version=d["python"]["version"],
        python_platform=d["python"]["platform"],
        torch=TorchPins(
            version=_version(d["torch"]["version"], "[torch].version"),
            torchvision=_version(d["torch"]["torchvision"], "[torch].torchvision"),
            torchaudio=_version(d["torch"]["torchaudio"], "[torch].torchaudio"),
            index_url=d["torch"]["index_url"],
        ),
        flashinfer=FlashInferPins(
            version=_version(fi["version"], "[flashinfer].version"),
            packages=packages,
            jit_cache=jit_cache,
            git_url=fi["git_url"],
            revision=fi["revision"],
            cuda_arch_list=fi_archs,
        ),
        vllm=VllmPins(
            version=_version(vllm["version"], "[vllm].version"),
            source=source,
            sdist_sha256=vllm["sdist_sha256"],
            git_url=vllm["git_url"],
            revision=vllm["revision"],
        ),
        nvcc=nvcc,
        nvcc_package=d["toolchain"]["nvcc_package"],
        build=BuildKnobs(
            arch_list=arch_list,
            max_jobs=parse_max_jobs(build["max_jobs"]),
            nvcc_threads=build["nvcc_threads"],
            ccache_max_size=build["ccache_max_size"],
        ),
        slim_max_gb=float(slim_max_gb),
        base=base,
        nvcc_cuda=nvcc_cuda,
        warnings=tuple(warnings),
        serve=parse_serve(d.get("serve", {})),
    )


def _nvcc_cuda(nvcc: str, package: str, cuda: str) -> tuple[str, str]:
    """(CUDA major.minor of the build's nvcc, where it comes from) for the arch checks."""
    if nvcc == "image":
        return cuda, "from the devel image"
    match = re.search(r"==\s*(?P<major>[0-9]+)\.(?P<minor>[0-9]+)", package)
    if match is None:
        raise ConfigError(
            f"[toolchain].nvcc_package = {package!r}: with nvcc = 'index' it must pin the toolkit"
            " exactly, e.g. 'cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2'"
        )
    return f"{match['major']}.{match['minor']}", f"from {package}"


def lock_torch_cuda(lock_text: str) -> list[tuple[str, str]]:
    """(CUDA major.minor, the pinned requirement) of every CUDA runtime a lock pins: torch's
    build shows there (its wheel requires exactly one)."""
    return [
        (f"{m['major']}.{m['minor']}", m["req"]) for m in _LOCK_CUDA_RUNTIME.finditer(lock_text)
    ]


def check_lock_cuda(pins: Pins, lock_text: str, where: str) -> None:
    """torch's CUDA build (the CUDA runtime the lock pins) must be [cuda].version."""
    found = lock_torch_cuda(lock_text)
    if not found:
        raise ConfigError(
            f"{where} pins no CUDA runtime (nvidia-cuda-runtime*): torch {pins.torch.version} there"
            f" is not a CUDA {pins.cuda_version} build; fix [torch] and run `nox -s lock`"
        )
    for cuda, requirement in found:
        if cuda != pins.cuda_version:
            raise ConfigError(
                f"profile {pins.profile}: torch {pins.torch.version} is a CUDA {cuda} build"
                f" ({requirement} in {where}), but [cuda].version = {pins.cuda_version!r}: the"
                " bases' tags, [cuda].version and torch's CUDA build must agree; change them"
                " together"
            )
