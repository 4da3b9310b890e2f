"""Test helpers for the bump: loopback servers, a real registry, small images and wheels."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from vllm_forge import cli

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


# ---------------------------------------------------------------------------- loopback servers
@contextlib.contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run `handler` on 127.0.0.1 (free port) in a thread; yield its base URL; stop it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------- a real registry
@contextlib.contextmanager
def docker_registry(workdir: Path) -> Iterator[str]:
    """Debian's `docker-registry` on loopback; yields `127.0.0.1:PORT`."""
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/", process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("docker-registry did not come up in 15 s")


def _blob(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(base: str, repository: str, data: bytes) -> str:
    digest = _blob(data)
    start = requests.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=10)
    start.raise_for_status()
    location = start.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    done = requests.put(
        f"{location}{sep}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    done.raise_for_status()
    return digest


def _tiny_layer(text: str) -> bytes:
    payload = text.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("etc/cuda-tag")
        info.size, info.mtime = len(payload), 0
        tar.addfile(info, io.BytesIO(payload))
    return raw.getvalue()


def push_image(host: str, repository: str, tag: str, seed: str = "") -> str:
    """Push a one-layer image as a multi-arch OCI index; return the index's digest."""
    base = f"http://{host}"
    layer = _tiny_layer(f"{repository}:{tag} {seed}\n")
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [f"CUDA_TAG={tag}", f"SEED={seed}"]},
            "rootfs": {"type": "layers", "diff_ids": [_blob(gzip.decompress(layer))]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": _push_blob(base, repository, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": OCI_LAYER,
                    "digest": _push_blob(base, repository, layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    _put_manifest(base, repository, _blob(manifest), manifest, OCI_MANIFEST)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _blob(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    return _put_manifest(base, repository, tag, index, OCI_INDEX)


def _put_manifest(base: str, repository: str, reference: str, body: bytes, media: str) -> str:
    response = requests.put(
        f"{base}/v2/{repository}/manifests/{reference}",
        data=body,
        headers={"Content-Type": media},
        timeout=10,
    )
    response.raise_for_status()
    return _blob(body)


# ---------------------------------------------------------------------------- a fake registry
@dataclass
class FakeRegistryState:
    """Behaviour of the paginating server: what it lists, what it refuses, what it saw."""

    tags: list[str]
    digests: dict[str, str] = field(default_factory=dict)  # tag -> digest; others are 404
    page_size: int = 2
    token: str = "t0k3n"
    service: str | None = "fake-registry"
    token_refused: bool = False  # the token service hands out a token the registry rejects
    rate_limited: int = 0  # answer this many requests with `refusal` first
    refusal: int = 429
    retry_after: str = "0"
    raw_tags_body: bytes | None = None  # serve this as tags/list instead
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, auth


def fake_registry_handler(state: FakeRegistryState, base_holder: list[str]) -> type:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

        def _handle(self) -> None:
            url = urlsplit(self.path)
            state.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
            if url.path == "/token":
                return self._token(parse_qs(url.query))
            if state.rate_limited > 0:
                state.rate_limited -= 1
                return self.reply(state.refusal, b"{}", {"Retry-After": state.retry_after})
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                challenge = f'Bearer realm="{base_holder[0]}/token"'
                if state.service:
                    challenge += f',service="{state.service}"'
                challenge += ',scope="repository:nvidia/cuda:pull"'
                return self.reply(401, b"{}", {"WWW-Authenticate": challenge})
            match = re.fullmatch(r"/v2/(.+)/(tags/list|manifests/([^/]+))", url.path)
            if not match:
                return self.reply(404)
            if match.group(2) == "tags/list":
                return self._tags(parse_qs(url.query), match.group(1))
            digest = state.digests.get(match.group(3))
            if digest is None:
                return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return self.reply(200, b"", {"Docker-Content-Digest": digest})

        def _token(self, query: dict[str, list[str]]) -> None:
            if state.service and query.get("service") != [state.service]:
                return self.reply(400)
            if not state.service and "service" in query:
                return self.reply(400)
            token = "wrong" if state.token_refused else state.token
            self.reply(200, json.dumps({"token": token}).encode())

        def _tags(self, query: dict[str, list[str]], name: str) -> None:
            if state.raw_tags_body is not None:
                return self.reply(200, state.raw_tags_body)
            ordered = sorted(state.tags)
            last = query.get("last", [""])[0]
            rest = [t for t in ordered if t > last]
            size = min(int(query.get("n", ["1000"])[0]), state.page_size)
            page, more = rest[:size], rest[size:]
            headers = {"Content-Type": "application/json"}
            if more:
                headers["Link"] = f'</v2/{name}/tags/list?n={size}&last={page[-1]}>; rel="next"'
            self.reply(200, json.dumps({"name": name, "tags": page}).encode(), headers)

    return Handler


@contextlib.contextmanager
def fake_registry(state: FakeRegistryState) -> Iterator[str]:
    """Yield `127.0.0.1:PORT` of a paginating, token-guarded registry."""
    holder: list[str] = []
    with serve(fake_registry_handler(state, holder)) as base:
        holder.append(base)
        yield base.removeprefix("http://")


# ---------------------------------------------------------------------------- wheels and an index
def make_wheel(
    directory: Path,
    name: str,
    version: str,
    tag: str,
    requires: list[str] = (),  # type: ignore[assignment]
    *,
    padding: int = 0,
) -> Path:
    """A wheel with METADATA first, then `padding` incompressible bytes (forces several ranges)."""
    dist = name.replace("-", "_")
    path = directory / f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"
    metadata = "".join(
        [
            "Metadata-Version: 2.1\n",
            f"Name: {name}\n",
            f"Version: {version}\n",
            *(f"Requires-Dist: {r}\n" for r in requires),
        ]
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr(f"{info}/METADATA", metadata)
        if padding:
            data = random.Random(f"{name}{version}").randbytes(padding)
            wheel.writestr(f"{dist}/_blob.bin", data, compress_type=zipfile.ZIP_STORED)
        wheel.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nTag: {tag}\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


@dataclass
class IndexState:
    directory: Path
    yanked: set[str] = field(default_factory=set)
    html_only: bool = False
    unavailable: int = 0  # answer this many requests with 503 first
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # path, Range, status


def _project_of(filename: str) -> str:
    return re.split(r"-\d", filename, maxsplit=1)[0].replace("_", "-").lower()


def index_handler(state: IndexState) -> type:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if state.unavailable > 0:
                state.unavailable -= 1
                self._log(503)
                return self.reply(503)
            if path.startswith("/simple/"):
                return self._project(path.split("/")[2])
            if path.startswith("/files/"):
                return self._file(path.removeprefix("/files/"))
            self._log(404)
            self.reply(404)

        def do_HEAD(self) -> None:  # uv asks whether the file server takes Range requests
            self.do_GET()

        def _log(self, status: int) -> None:
            state.seen.append((self.path, self.headers.get("Range", ""), status))

        def _project(self, project: str) -> None:
            files = sorted(p for p in state.directory.iterdir() if _project_of(p.name) == project)
            if not files:
                self._log(404)
                return self.reply(404)
            self._log(200)
            if not state.html_only and "vnd.pypi.simple.v1+json" in self.headers.get("Accept", ""):
                body = {
                    "meta": {"api-version": "1.1"},
                    "name": project,
                    "files": [
                        {
                            "filename": p.name,
                            "url": f"../../files/{p.name}",
                            "hashes": {"sha256": hashlib.sha256(p.read_bytes()).hexdigest()},
                            "yanked": p.name in state.yanked,
                        }
                        for p in files
                    ],
                }
                return self.reply(
                    200,
                    json.dumps(body).encode(),
                    {"Content-Type": "application/vnd.pypi.simple.v1+json"},
                )
            links = "".join(
                f'<a href="/files/{p.name}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}"'
                + (' data-yanked=""' if p.name in state.yanked else "")
                + f">{p.name}</a>\n"
                for p in files
            )
            self.reply(
                200,
                f"<!DOCTYPE html><html><body>{links}</body></html>".encode(),
                {"Content-Type": "text/html"},
            )

        def _file(self, name: str) -> None:
            path = state.directory / name
            if "/" in name or not path.is_file():
                self._log(404)
                return self.reply(404)
            data = path.read_bytes()
            wanted = self.headers.get("Range", "")
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted)
            if not match:
                self._log(200)
                return self.reply(200, data, {"Accept-Ranges": "bytes"})
            first, last = match.groups()
            if first == "":
                start, end = max(0, len(data) - int(last)), len(data) - 1
            else:
                start, end = int(first), min(len(data) - 1, int(last) if last else len(data) - 1)
            self._log(206)
            self.reply(
                206,
                data[start : end + 1],
                {"Content-Range": f"bytes {start}-{end}/{len(data)}"},
            )

    return Handler


# ---------------------------------------------------------------------------- the bump's world
# A loopback index with a small vLLM/torch/FlashInfer history, a real loopback registry with
# nvidia/cuda tags, and a versions.toml of three profiles pointing at both. Fixtures: `index`,
# `registry`, `pins` (import them into a test module to use them).
TORCH = "cp312-cp312-manylinux_2_28_x86_64"
ANY = "py3-none-any"
CU128 = (
    'nvidia-cuda-runtime-cu12==12.8.90; platform_system == "Linux" and platform_machine == "x86_64"'
)
CU129 = 'nvidia-cuda-runtime-cu12==12.9.79; platform_system == "Linux"'
CU130 = 'cuda-toolkit[cublas,cudart]==13.0.2; platform_system == "Linux"'
PAD = 300 * 1024  # larger than one range chunk: METADATA is fetched by a second range request


def _vllm_requires(torch: str, vision: str, audio: str, flashinfer: str) -> list[str]:
    return [
        "requests",
        f"torch=={torch}",
        f"torchvision=={vision}",
        f"torchaudio=={audio}",
        f'flashinfer-python=={flashinfer}; platform_machine == "x86_64"',
        'flashinfer-python==0.1.0; platform_machine == "aarch64"',
        f"flashinfer-cubin=={flashinfer}",
        'zentorch; extra == "zen"',
    ]


BUILD_TOOLS = (
    ("setuptools", "80.9.0"),
    ("packaging", "25.0"),
    ("wheel", "0.45.1"),
    ("ninja", "1.13.0"),
    ("numpy", "2.2.6"),
    ("nvidia-ml-py", "13.580.82"),
    ("nvidia-nvshmem-cu12", "3.3.20"),
    ("apache-tvm-ffi", "0.1.6"),
    ("build", "1.3.0"),
)


def sdist_bytes(name: str, version: str) -> bytes:
    """A minimal sdist, byte-for-byte the same every time: the files the build lock reads."""
    files = {
        # no FetchContent: the bump's re-reading of the source pins finds nothing to fetch
        "CMakeLists.txt": "cmake_minimum_required(VERSION 3.26)\nproject(vllm LANGUAGES CXX)\n",
        "pyproject.toml": '[build-system]\nrequires = [\n  "setuptools>=77",\n  "torch",\n]\n',
        "requirements/build.txt": "setuptools>=77\nwheel\ntorch\n",
    }
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{relative}")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


def sdist_sha256(name: str, version: str) -> str:
    return hashlib.sha256(sdist_bytes(name, version)).hexdigest()


def make_sdist(directory: Path, name: str, version: str) -> Path:
    path = directory / f"{name}-{version}.tar.gz"
    path.write_bytes(sdist_bytes(name, version))
    return path


def build_index(directory: Path, *, cu129: bool = False) -> IndexState:
    """vLLM 0.20.0 needs a CUDA 13 torch; 0.19.2rc1 is a pre-release; 0.19.3 is yanked.

    `cu129`: also vLLM 0.19.5, whose torch 2.10.1 is a CUDA 12.9 build (what `--allow-minor`
    needs to move the bases from 12.8 to 12.9).
    """
    vllm = "cp38-abi3-manylinux_2_31_x86_64"
    if cu129:
        make_wheel(
            directory,
            "vllm",
            "0.19.5",
            vllm,
            _vllm_requires("2.10.1", "0.25.1", "2.10.1", "0.6.6"),
            padding=PAD,
        )
        make_sdist(directory, "vllm", "0.19.5")
        make_wheel(directory, "torch", "2.10.1", TORCH, ["filelock", CU129], padding=PAD)
        make_wheel(directory, "torchvision", "0.25.1", TORCH, ["torch==2.10.1"])
        make_wheel(directory, "torchaudio", "2.10.1", TORCH, ["torch==2.10.1"])
        make_wheel(
            directory, "nvidia-cuda-runtime-cu12", "12.9.79", "py3-none-manylinux_2_17_x86_64"
        )
    for version, pins in {
        "0.20.0": ("2.11.0", "0.26.0", "2.11.0", "0.6.8"),
        "0.19.3": ("2.10.0", "0.25.0", "2.10.0", "0.6.7"),
        "0.19.2rc1": ("2.10.0", "0.25.0", "2.10.0", "0.6.7"),
        "0.19.1": ("2.10.0", "0.25.0", "2.10.0", "0.6.6"),
        "0.19.0": ("2.10.0", "0.25.0", "2.10.0", "0.6.5"),
        "0.18.0": ("2.9.0", "0.24.0", "2.9.0", "0.6.5"),
    }.items():
        make_wheel(directory, "vllm", version, vllm, _vllm_requires(*pins), padding=PAD)
        make_sdist(directory, "vllm", version)
    make_wheel(directory, "vllm", "0.19.1", "cp38-abi3-manylinux_2_31_aarch64", [])
    for torch, cuda in (("2.11.0", CU130), ("2.10.0", CU128), ("2.9.0", CU128)):
        make_wheel(directory, "torch", torch, TORCH, ["filelock", cuda], padding=PAD)
    for vision, audio, torch in (
        ("0.26.0", "2.11.0", "2.11.0"),
        ("0.25.0", "2.10.0", "2.10.0"),
        ("0.24.0", "2.9.0", "2.9.0"),
    ):
        make_wheel(directory, "torchvision", vision, TORCH, [f"torch=={torch}"])
        make_wheel(directory, "torchaudio", audio, TORCH, [f"torch=={torch}"])
    for version in ("0.6.8", "0.6.6", "0.6.5"):
        make_wheel(directory, "flashinfer-python", version, ANY, ["torch"])
        make_wheel(directory, "flashinfer-cubin", version, ANY, [])
    # What the stack requires besides itself, so that uv can lock it from this index alone.
    for name, version in (("requests", "2.32.0"), ("filelock", "3.13.0")):
        make_wheel(directory, name, version, ANY, [])
    make_wheel(directory, "nvidia-cuda-runtime-cu12", "12.8.90", "py3-none-manylinux_2_17_x86_64")
    # What the compile stages need (the build lock): vLLM's sdist's and flashinfer-jit-cache's.
    for name, version in BUILD_TOOLS:
        make_wheel(directory, name, version, ANY, [])
    return IndexState(directory=directory, yanked={f"vllm-0.19.3-{vllm}.whl"})


@dataclass
class LoopbackIndex:
    url: str
    state: IndexState

    def fetched(self) -> list[str]:
        return [path for path, _, _ in self.state.seen if path.startswith("/files/")]


@contextlib.contextmanager
def loopback_index(directory: Path, *, cu129: bool = False) -> Iterator[LoopbackIndex]:
    state = build_index(directory, cu129=cu129)
    with serve(index_handler(state)) as base:
        yield LoopbackIndex(url=f"{base}/simple", state=state)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LoopbackIndex]:
    state = build_index(tmp_path)
    with serve(index_handler(state)) as base:
        yield LoopbackIndex(url=f"{base}/simple", state=state)
    shutil.rmtree(tmp_path, ignore_errors=True)


# ---------------------------------------------------------------------------- index client

PINS = """\
# versions.toml for the bump's end-to-end test.

[project]
default_profile = "rtx5090"
source_date_epoch = 1764201600

[cuda]
version = "12.8"

[images]
# Builder and runtime, by tag AND digest.
devel = "{devel}"
runtime = "{runtime}"  # re-pushed upstream

[python]
version = "3.12"
platform = "x86_64-manylinux_2_39"

[torch]
version = "2.9.0"
torchvision = "0.24.0"
torchaudio = "2.9.0"
index_url = "{index}"

[flashinfer]
version = "0.6.5"
packages = ["flashinfer-python", "flashinfer-cubin"]
jit_cache = "source"
git_url = "https://example.invalid/flashinfer.git"
revision = "{revision}"  # tag v0.6.5
cuda_arch_list = "12.0a"

[vllm]
version = "0.18.0"
source = "sdist"
sdist_sha256 = "{old_sha}"
git_url = "https://example.invalid/vllm.git"
revision = ""

[toolchain]
nvcc = "image"
nvcc_package = ""

[build]
torch_cuda_arch_list = "12.0"
max_jobs = "auto"
nvcc_threads = 1
ccache_max_size = "20G"

[budget]
slim_max_gb = 20

[profiles.rtx5090]
description = "default"

[profiles.cudnn.images]
devel = "{cudnn}"

[profiles.local]
description = "bases made here"

[profiles.local.images]
devel = "localhost/vllm-forge/debian:bookworm"
runtime = "localhost/vllm-forge/debian:bookworm"

[profiles.local.base]
suite = "bookworm"
image = "localhost/vllm-forge/debian:bookworm"
"""

REVISION = "70b142b75b46aa56e7f675a8e6ec1a977352c91f"
PROFILES = ("rtx5090", "cudnn", "local")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
    workdir = tmp_path_factory.mktemp("registry")
    digests: dict[str, str] = {}
    with docker_registry(workdir) as host:
        for version in ("12.8.0", "12.8.1", "12.9.0", "13.0.1"):
            for suffix in ("-devel-ubuntu24.04", "-cudnn-devel-ubuntu24.04", "-base-ubuntu24.04"):
                digests[version + suffix] = push_image(host, "nvidia/cuda", version + suffix)
        digests["old-base"] = digests["12.8.1-base-ubuntu24.04"]
        digests["12.8.1-base-ubuntu24.04"] = push_image(
            host, "nvidia/cuda", "12.8.1-base-ubuntu24.04", seed="re-pushed"
        )
        yield host, digests
    shutil.rmtree(workdir, ignore_errors=True)


def write_pins(
    tmp_path: Path, host: str, digests: dict[str, str], index_url: str, monkeypatch
) -> Path:
    """PINS for the registry at `host` and the index at `index_url`, in tmp_path/project."""
    text = PINS.format(
        devel=f"{host}/nvidia/cuda:12.8.0-devel-ubuntu24.04@{digests['12.8.0-devel-ubuntu24.04']}",
        runtime=f"{host}/nvidia/cuda:12.8.1-base-ubuntu24.04@{digests['old-base']}",
        cudnn=f"{host}/nvidia/cuda:12.8.0-cudnn-devel-ubuntu24.04@"
        + digests["12.8.0-cudnn-devel-ubuntu24.04"],
        index=index_url,
        revision=REVISION,
        old_sha=sdist_sha256("vllm", "0.18.0"),
    )
    project = tmp_path / "project"
    project.mkdir()
    path = project / "versions.toml"
    path.write_text(text)
    # The re-lock after a write: uv resolves from the loopback index alone (pip's index is the
    # user's pip configuration: here only the environment), with a cache of its own.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index_url)
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    return path


@pytest.fixture
def pins(
    tmp_path: Path, index: LoopbackIndex, registry, monkeypatch
) -> tuple[Path, str, dict[str, str]]:
    host, digests = registry
    return write_pins(tmp_path, host, digests, index.url, monkeypatch), host, digests


def bump(path: Path, *args: str) -> int:
    return cli.main(["bump", "--pins", str(path), *args])
