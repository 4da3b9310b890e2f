"""Each verify check FAILS on a deliberately broken image, and passes on the real slim image.

The broken images are a few MB, FROM the locally made Debian base, built with the real engine
(`localhost/vllm-forge-test/broken-*`) and removed at the end. verify runs as the command line
does (`python -m vllm_forge.cli verify --check ...`) and the test reads its JSON report.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_forge import engines
from vllm_forge.engines import BuildRequest
from vllm_forge.errors import ForgeError, IndexError_
from vllm_forge.verify import leaks
from vllm_forge.verify.archcheck import pip_install_target
from vllm_forge.verify.config import public_bundles

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[1]
BASE = "localhost/vllm-forge/debian:bookworm"
SITE = "/opt/venv/lib/python3.11/site-packages"
TOKEN_HALVES = ("forge-fake-", "token-5f3a9c0d1e")  # joined only inside the layer
TOKEN = "".join(TOKEN_HALVES)

DOCKERFILES = {
    "pins": f"""
FROM {BASE} AS broken
RUN set -e; for pv in vllm:0.0.1 torch:2.0.0 torchvision:0.25.0 torchaudio:2.10.0 \\
      flashinfer_python:0.6.6 flashinfer_cubin:0.6.5; do \\
      d={SITE}/${{pv%%:*}}-${{pv#*:}}.dist-info; mkdir -p "$d"; \\
      printf 'Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n\\n' "${{pv%%:*}}" "${{pv#*:}}" \\
        > "$d/METADATA"; done; \\
    mkdir -p {SITE}/torch; printf "cuda: Optional[str] = '12.1'\\n" > {SITE}/torch/version.py
""",
    "arch": f"""
FROM {BASE} AS broken
COPY libsm90.so {SITE}/vllm/_C.abi3.so
""",
    "cache": f"""
FROM {BASE} AS broken
RUN mkdir -p {SITE} /root/.ccache/3/a /root/.cache/pip/http \\
    && echo object > /root/.ccache/3/a/f.o && echo wheel > /root/.cache/pip/http/w
""",
    "secret": f"""
FROM {BASE} AS broken
COPY corp-ca.crt /usr/local/share/ca-certificates/corp-ca.crt
RUN printf '%s%s\\n' {" ".join(TOKEN_HALVES)} > /root/.token
RUN rm /root/.token /usr/local/share/ca-certificates/corp-ca.crt
""",
    # What a .pth file does at every interpreter start of a build: import a module, which
    # writes a timestamp-based .pyc (the build's clock) next to a properly hashed one.
    "bytecode": f"""
FROM {BASE} AS broken
RUN apt-get update && apt-get install -y --no-install-recommends python3 \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
RUN mkdir -p {SITE} && cd {SITE} && echo "import forge_startup" > forge.pth \\
    && echo "X = 1" > forge_startup.py && echo "Y = 2" > hashed.py \\
    && python3 -c "import site; site.addsitedir('{SITE}')" \\
    && SOURCE_DATE_EPOCH=0 python3 -m py_compile hashed.py
""",
    # What an unpruned venv leaves for a 12.0 arch list: an sm100 cubin and FlashAttention 3;
    # no record of a prune step, no interpreter to read the metadata, no compiler for a stub.
    "prune": f"""
FROM {BASE} AS broken
RUN d={SITE}/flashinfer_cubin/cubins/f1ed/fmha/trtllm-gen && mkdir -p $d {SITE}/vllm/vllm_flash_attn \\
    && echo cubin > $d/FmhaSm100fKernel.cubin && echo h > $d/checksums.txt \\
    && echo so > {SITE}/vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so
""",
    "meta": f"""
FROM {BASE} AS broken
RUN mkdir -p {SITE} && printf '#!/bin/sh\\necho ok: every GPU ran the kernel\\nexit 0\\n' \\
      > /usr/local/bin/kernel-probe && chmod +x /usr/local/bin/kernel-probe
LABEL io.github.vllm-forge.vllm="0.0.1"
ENTRYPOINT ["sh"]
""",
}


@pytest.fixture(scope="module")
def engine() -> engines.Engine:
    try:
        found = engines.detect("docker")
    except ForgeError as err:
        pytest.skip(f"no usable docker engine: {err}")
    if not found.image_exists(BASE):
        pytest.skip(f"{BASE} is not in docker: make it with `nox -s base -- --profile debian-pypi`")
    return found


@pytest.fixture(scope="module")
def sm90_library(tmp_path_factory) -> Path:
    """A tiny CUDA shared object with SASS for sm_90 only, built by the index's CUDA 13 nvcc."""
    try:
        toolkit = pip_install_target(
            ["cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2"],
            ROOT / "build" / ".cache" / "cuda-toolkit-13.0.2",
        )
    except IndexError_ as err:
        pytest.skip(f"cannot install the CUDA 13 toolkit: {err}")
    cuda = sorted(toolkit.glob("nvidia/*/bin/nvcc"))[0].parent.parent
    out = tmp_path_factory.mktemp("so")
    (out / "k.cu").write_text("__global__ void k(float *x) { x[threadIdx.x] *= 2.f; }\n")
    subprocess.run(
        [str(cuda / "bin/nvcc"), "-shared", "-Xcompiler", "-fPIC",
         "-gencode=arch=compute_90,code=sm_90", f"-L{cuda / 'lib'}",
         str(out / "k.cu"), "-o", str(out / "libsm90.so")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out / "libsm90.so"


@pytest.fixture(scope="module")
def corp_ca(engine) -> bytes | None:
    """A custom CA of this host's bundle (not in the image's), or None where there is none."""
    host = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    if not host.is_file():
        return None
    argv = engine.run_argv(BASE, ["cat", "/etc/ssl/certs/ca-certificates.crt"])
    image_bundle = engine.run(argv).stdout.encode()
    public = [p.read_bytes() for p in public_bundles()]
    cas = leaks.custom_cas(host.read_bytes(), image_bundle, *public)
    return cas[-1] if cas else None


@pytest.fixture(scope="module")
def broken(engine, sm90_library, corp_ca, tmp_path_factory):
    """kind -> tag of each broken image; all removed at the end of the module."""
    tags = {}
    try:
        for kind, text in DOCKERFILES.items():
            ctx = tmp_path_factory.mktemp(f"broken-{kind}")
            (ctx / "Dockerfile").write_text(text)
            (ctx / "libsm90.so").write_bytes(sm90_library.read_bytes())
            pem = ssl.DER_cert_to_PEM_cert(corp_ca) if corp_ca else "not a certificate\n"
            (ctx / "corp-ca.crt").write_text(pem)
            tag = f"localhost/vllm-forge-test/broken-{kind}"
            request = BuildRequest(
                context=ctx, dockerfile=ctx / "Dockerfile", tag=tag, target="broken"
            )
            engine.run(engine.build_argv(request))
            tags[kind] = tag
        yield tags
    finally:
        for tag in tags.values():
            engine.remove_image(tag)


def verify(engine, image, checks, tmp_path, *extra) -> tuple[int, dict, str]:
    argv = [sys.executable, "-m", "vllm_forge.cli", "verify", "--profile", "debian-pypi"]
    argv += ["--engine", engine.name, "--image", image, "--report-dir", str(tmp_path)]
    for check in checks:
        argv += ["--check", check]
    proc = subprocess.run([*argv, *extra], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    reports = list(tmp_path.glob("verify-*.json"))
    data = json.loads(reports[0].read_text()) if reports else {}
    results = {c["id"]: c for c in data.get("checks", [])}
    leftover = engine.run(
        [engine.client, "ps", "-aq", "--filter", f"ancestor={image}"], check=False
    ).stdout.strip()
    assert not leftover, f"verify left its container behind: {leftover}"
    return proc.returncode, results, proc.stdout + proc.stderr


def _failed(results: dict, check: str) -> str:
    assert results[check]["outcome"] == "fail", results[check]
    return results[check]["message"]


def test_wrong_pins_fail_the_pins_checks(engine, broken, tmp_path):
    rc, results, out = verify(
        engine, broken["pins"], ["pins_versions", "pins_flashinfer_agree", "pins_torch_cuda"],
        tmp_path,
    )  # fmt: skip
    assert rc == 8, out
    versions = _failed(results, "pins_versions")
    assert "vllm: expected 0.19.1, found 0.0.1" in versions
    assert "torch: expected 2.10.0, found 2.0.0" in versions
    assert "flashinfer-cubin: expected 0.6.6, found 0.6.5" in versions
    assert "FlashInfer packages disagree" in _failed(results, "pins_flashinfer_agree")
    assert "expected 12.8, found CUDA 12.1" in _failed(results, "pins_torch_cuda")
    assert "vllm-forge: error:" in out and "Traceback" not in out


def test_a_library_without_sm120_fails_arch_coverage(engine, broken, tmp_path):
    rc, results, out = verify(engine, broken["arch"], ["arch_coverage"], tmp_path)
    assert rc == 8, out
    message = _failed(results, "arch_coverage")
    assert "vllm/_C.abi3.so: no SASS for sm_120 (found: sm_90; required: sm_120)" in message
    (row,) = results["arch_coverage"]["numbers"]["files"]
    assert row["sass"] == ["sm_90"] and row["missing"] == ["sm_120"]


def test_leftover_caches_fail_slim_hygiene(engine, broken, tmp_path):
    rc, results, out = verify(engine, broken["cache"], ["slim_no_caches"], tmp_path)
    assert rc == 8, out
    message = _failed(results, "slim_no_caches")
    assert "/root/.ccache (1 files" in message and "/root/.cache/pip (1 files" in message


def test_a_secret_deleted_in_a_later_layer_fails_the_layer_scan(engine, broken, corp_ca, tmp_path):
    needle = tmp_path / "token.txt"
    needle.write_text(TOKEN + "\n")
    reports = tmp_path / "reports"
    rc, results, out = verify(
        engine, broken["secret"], ["slim_no_secrets_in_layers"], reports,
        "--secret-needle", str(needle),
    )  # fmt: skip
    assert rc == 8, out
    message = _failed(results, "slim_no_secrets_in_layers")
    assert "secret needle token.txt in layer" in message and "root/.token" in message
    assert "(image metadata)" not in message  # the token is in a layer, not in the history
    if corp_ca is not None:
        assert f"custom CA {leaks.fingerprint(corp_ca)} in layer" in message
        assert "usr/local/share/ca-certificates/corp-ca.crt" in message


def test_bytecode_an_import_wrote_during_the_build_fails(engine, broken, tmp_path):
    rc, results, out = verify(engine, broken["bytecode"], ["slim_bytecode_hash_based"], tmp_path)
    assert rc == 8, out
    message = _failed(results, "slim_bytecode_hash_based")
    assert "found 1 timestamp .pyc file(s), e.g. " in message, message
    assert f"{SITE}/__pycache__/forge_startup.cpython-311.pyc" in message
    assert results["slim_bytecode_hash_based"]["numbers"]["pyc"] == {
        "timestamp": 1,
        "checked-hash": 1,
    }


def test_an_unpruned_venv_fails_the_prune_checks(engine, broken, tmp_path):
    checks = ["arch_pruned_files_gone", "arch_pruned_not_looked_up"]
    rc, results, out = verify(engine, broken["prune"], checks, tmp_path)
    assert rc == 8, out
    gone = _failed(results, "arch_pruned_files_gone")
    cubin = f"{SITE}/flashinfer_cubin/cubins/f1ed/fmha/trtllm-gen/FmhaSm100fKernel.cubin"
    assert f"found flashinfer-cubins-sm100: {cubin}" in gone
    assert f"found vllm-fa3-sm90: {SITE}/vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so" in gone
    assert "found no record (/usr/local/share/vllm-forge/pruned.txt)" in gone
    assert "checksums.txt" not in gone  # the headers and checksums stay
    assert "expected to read the package metadata, found exit 127" in gone
    looked = _failed(results, "arch_pruned_not_looked_up")
    assert "expected to build a stand-in libcuda.so.1 in the image" in looked


def test_metadata_size_triton_and_a_probe_that_passes_without_gpu_fail(engine, broken, tmp_path):
    pins_file = tmp_path / "versions.toml"
    text = (ROOT / "versions.toml").read_text()
    pins_file.write_text(text.replace("slim_max_gb = 10.0", "slim_max_gb = 0.01"))
    checks = [
        "metadata_labels",
        "metadata_entrypoint",
        "metadata_vllm_version",
        "metadata_vllm_serve_help",
        "metadata_nonroot_user",
        "size_within_budget",
        "slim_triton_compiles_launcher",
        "slim_no_nvcc",
        "gpu_probe_without_gpu_exits_3",
    ]
    rc, results, out = verify(
        engine, broken["meta"], checks, tmp_path / "r", "--pins", str(pins_file)
    )
    assert rc == 8, out
    labels = _failed(results, "metadata_labels")
    assert "label io.github.vllm-forge.vllm: expected '0.19.1', found '0.0.1'" in labels
    # every other label is missing, each named on its own (torchaudio's too: torch has its value)
    assert "label io.github.vllm-forge.torchaudio: expected '2.10.0', found no such label" in labels
    assert "found ['sh']" in _failed(results, "metadata_entrypoint")
    assert "expected `vllm --version` to print 0.19.1" in _failed(results, "metadata_vllm_version")
    assert "exit 127" in _failed(results, "metadata_vllm_serve_help")
    assert "found no such user" in _failed(results, "metadata_nonroot_user")
    assert "slim_max_gb = 0.01 GB" in _failed(results, "size_within_budget")
    assert "Python.h" in _failed(results, "slim_triton_compiles_launcher")
    assert "found exit 0" in _failed(results, "gpu_probe_without_gpu_exits_3")
    assert results["slim_no_nvcc"]["outcome"] == "pass"  # nvcc is absent: the check can pass


def test_unknown_image_and_check_are_one_line_errors(engine, tmp_path):
    rc, _, out = verify(engine, "localhost/vllm-forge-test/absent:none", [], tmp_path)
    assert (
        rc == 2 and "vllm-forge: error: image localhost/vllm-forge-test/absent:none is not" in out
    )
    rc, _, out = verify(engine, BASE, ["no_such_check"], tmp_path)
    assert rc == 2 and "unknown check 'no_such_check'" in out and "Traceback" not in out


def test_podman_layer_scan_finds_the_secret_too(sm90_library, tmp_path):
    """podman's `save` archive has its own layout; the same scan must find the same leak."""
    try:
        podman = engines.detect("podman")
    except ForgeError as err:
        pytest.skip(f"no usable podman: {err}")
    if not podman.image_exists(BASE):
        pytest.skip(f"{BASE} is not in podman")
    (tmp_path / "Dockerfile").write_text(DOCKERFILES["secret"])
    (tmp_path / "corp-ca.crt").write_text("not a certificate\n")
    tag = "localhost/vllm-forge-test/broken-secret"
    request = BuildRequest(
        context=tmp_path, dockerfile=tmp_path / "Dockerfile", tag=tag, target="broken"
    )
    podman.run(podman.build_argv(request))
    try:
        needle = tmp_path / "token.txt"
        needle.write_text(TOKEN)
        rc, results, out = verify(
            podman,
            tag,
            ["slim_no_secrets_in_layers"],
            tmp_path / "r",
            "--secret-needle",
            str(needle),
        )
        assert rc == 8, out
        assert "root/.token" in _failed(results, "slim_no_secrets_in_layers")
    finally:
        podman.remove_image(tag)
