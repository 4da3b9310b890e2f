"""Small Python programs the checks run inside the image (as `python -c`), each printing JSON."""

from __future__ import annotations

# Triton compiles a C launcher stub (cuda.h + Python.h, built with the system cc) at a kernel's
# first launch. This compiles a stub of that shape with Triton's own helper, without a GPU:
# linking libcuda is left out because the driver's libcuda.so.1 only arrives with the GPU.
TRITON_LAUNCHER = r"""
import inspect, json, os, sys, tempfile
os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="forge-triton-"))
import triton
from triton.runtime import build
inc = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "include")
SRC = '''
#include <cuda.h>
#include <Python.h>
static PyObject *cuda_version(PyObject *self, PyObject *args) { return PyLong_FromLong(CUDA_VERSION); }
static PyMethodDef methods[] = {{"cuda_version", cuda_version, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "forge_launcher_stub", NULL, -1, methods};
PyMODINIT_FUNC PyInit_forge_launcher_stub(void) { return PyModule_Create(&mod); }
'''
if hasattr(build, "compile_module_from_src"):
    api = "triton.runtime.build.compile_module_from_src"
    module = build.compile_module_from_src(SRC, "forge_launcher_stub", include_dirs=[inc])
else:
    import importlib.util
    api = "triton.runtime.build._build"
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "forge_launcher_stub.c")
    open(src, "w").write(SRC)
    args = ["forge_launcher_stub", src, tmp, [], [inc], []]
    if "ccflags" in inspect.signature(build._build).parameters:
        args.append([])
    so = build._build(*args)
    spec = importlib.util.spec_from_file_location("forge_launcher_stub", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
print(json.dumps({"triton": triton.__version__, "api": api, "cuda_h": module.cuda_version()}))
"""

TORCH_GPU = r"""
import json, torch
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(json.dumps({
    "available": torch.cuda.is_available(),
    "count": n,
    "names": [torch.cuda.get_device_name(i) for i in range(n)],
    "capabilities": [list(torch.cuda.get_device_capability(i)) for i in range(n)],
    "arch_list": torch.cuda.get_arch_list(),
    "cuda": torch.version.cuda,
}))
"""

VLLM_GENERATE = r"""
import json, os, sys
from vllm import LLM, SamplingParams
name = sys.argv[1]
path = os.path.join("/models", name)
llm = LLM(model=path if os.path.isdir(path) else name, max_model_len=512,
          gpu_memory_utilization=0.5, enforce_eager=True)
out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=8, temperature=0))
print("FORGE-RESULT " + json.dumps({"text": out[0].outputs[0].text}))
"""

# vLLM's CLI builds every subcommand's defaults at start, and those infer the device: without a
# GPU (no NVML) it stops with "Failed to infer device type" before printing anything, and its CUDA
# platform cannot load without the driver's libcuda.so.1. This runs the same CLI entry point with
# vLLM's CPU platform chosen up front: enough to prove the CLI and its arguments load.
VLLM_CLI_NO_GPU = r"""
import sys
import vllm.platforms
from vllm.platforms.cpu import CpuPlatform
vllm.platforms._current_platform = CpuPlatform()
from vllm.entrypoints.cli.main import main
sys.argv = ["vllm", *sys.argv[1:]]
sys.exit(main())
"""
NO_DEVICE = "Failed to infer device type"

# Counts the .pyc files under a directory by the flags word of their header (PEP 552).
PYC_FLAGS = r"""
import json, os, sys
counts, examples = {}, {}
for top, _, names in os.walk(sys.argv[1]):
    for name in names:
        if name.endswith(".pyc"):
            path = os.path.join(top, name)
            with open(path, "rb") as handle:
                head = handle.read(8)
            flags = int.from_bytes(head[4:8], "little") if len(head) == 8 else -1
            counts[flags] = counts.get(flags, 0) + 1
            if len(examples.setdefault(flags, [])) < 5:
                examples[flags].append(path)
print(json.dumps({"counts": counts, "examples": examples}))
"""

# --- pruning by architecture (vllm_forge/prune.toml) ------------------------------------------

# A stand-in libcuda.so.1 for a container without a GPU: vLLM's `_C` (which vllm.platforms.cuda
# imports) links the driver, so without one nothing of vLLM's CUDA platform imports. Every driver
# function the venv's vLLM libraries name returns CUDA_ERROR_STUB_LIBRARY (34), as the CUDA
# toolkit's own stub does. Built with the image's gcc (Triton needs it anyway). Args: DIR SITE.
STUB_LIBCUDA = r"""
set -e
mkdir -p "$1"
for so in $(find "$2/vllm" -name '*.so'); do
    if readelf -d "$so" | grep -q 'libcuda\.so\.1'; then nm -D --undefined-only "$so"; fi
done | awk '$2 ~ /^cu[A-Z]/ { sub(/@.*/, "", $2); print $2 }' > "$1/names"
printf '%s\n' cuInit cuDriverGetVersion cuDeviceGetCount cuGetProcAddress cuGetProcAddress_v2 \
    >> "$1/names"
sort -u "$1/names" | awk '{ print "int " $1 "(void) { return 34; }" }' > "$1/stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$1/libcuda.so.1" "$1/stub.c"
echo "$(wc -l < "$1/stub.c") driver functions stubbed"
"""

# Asks vLLM's and FlashInfer's own selection code, for GPUs of given capabilities, whether they
# would use what vllm_forge/prune.toml names (no GPU needed: the capability is patched into
# torch.cuda and vLLM's platform). Each probe answers with "gates": the upstream functions that
# decide, and what each says. Availability flags are forced on while asking (as if the files were
# there), so the answer shows the capability decides, not the deleted file. FlashInfer's cubin
# loader is watched: any cubin looked up (or a download tried) while asking is recorded. argv[1]:
# {"imports": [module, ...], "capabilities": ["12.0", ...]}. Prints one JSON line.
PRUNE_PROBE = r"""
import importlib, json, sys, traceback, types
spec = json.loads(sys.argv[1])
CAP = [0, 0]
out = {"imports": {}, "runs": {}}
def error(exc):
    return f"{type(exc).__name__}: {exc}".strip()[:600]
try:
    import torch
    torch.cuda.get_device_capability = lambda device=None: tuple(CAP)
    import vllm.platforms
    from vllm.platforms import cuda as vllm_cuda
    from vllm.platforms.interface import DeviceCapability
    class Patched(vllm_cuda.NonNvmlCudaPlatform):
        @classmethod
        def get_device_capability(cls, device_id=0):
            return DeviceCapability(*CAP)
    vllm.platforms._current_platform = Patched()
except Exception as exc:
    out["setup"] = error(exc)
    out["trace"] = traceback.format_exc()[-1500:]
    print(json.dumps(out))
    sys.exit(0)
for name in spec["imports"]:
    try:
        importlib.import_module(name)
        out["imports"][name] = "ok"
    except Exception as exc:
        out["imports"][name] = error(exc)
LOOKED = []
try:
    from flashinfer.jit import cubin_loader
    load_cubin, download_file = cubin_loader.load_cubin, cubin_loader.download_file
    def watched_load(path, sha256):
        LOOKED.append(str(path))
        return load_cubin(path, sha256)
    def watched_download(source, destination, **kw):
        LOOKED.append("download " + str(source))
        return False
    cubin_loader.load_cubin, cubin_loader.download_file = watched_load, watched_download
except Exception as exc:
    out["watch"] = error(exc)

class forced:
    # Set module attributes for the duration of a block.
    def __init__(self, module, **values):
        self.module, self.values, self.saved = module, values, {}
    def __enter__(self):
        for key, value in self.values.items():
            self.saved[key] = getattr(self.module, key)
            setattr(self.module, key, value)
    def __exit__(self, *exc):
        for key, value in self.saved.items():
            setattr(self.module, key, value)

MOE = [
    "vllm.model_executor.layers.fused_moe.experts.trtllm_fp8_moe",
    "vllm.model_executor.layers.fused_moe.experts.trtllm_nvfp4_moe",
    "vllm.model_executor.layers.fused_moe.experts.trtllm_mxfp4_moe",
    "vllm.model_executor.layers.fused_moe.flashinfer_trtllm_moe",
]
def moe_gate(name):
    module = importlib.import_module(name)
    gate = getattr(module, "_supports_current_device", None)
    for value in vars(module).values():
        if gate is None and isinstance(value, type) and value.__module__ == name:
            gate = getattr(value, "_supports_current_device", None)
    if gate is None:
        raise LookupError(f"{name} has no _supports_current_device")
    return bool(gate())

def probe_flashinfer_trtllm():
    from vllm.utils import flashinfer as vfi
    import flashinfer.utils as fiu
    vfi.supports_trtllm_attention.cache_clear()
    fiu.get_compute_capability.cache_clear()
    gates = {"vllm.utils.flashinfer.supports_trtllm_attention()": vfi.supports_trtllm_attention()}
    for name in MOE:
        gates[name.rpartition(".")[2] + "._supports_current_device()"] = moe_gate(name)
    gates["flashinfer.utils.is_sm100a_supported()"] = fiu.is_sm100a_supported(torch.device("cuda", 0))
    return gates

def probe_fa3():
    from vllm.vllm_flash_attn import flash_attn_interface as fai
    from vllm.v1.attention.backends import fa_utils
    with forced(fai, FA3_AVAILABLE=True):
        return {
            "is_fa_version_supported(3) [FA3 present]": fai.is_fa_version_supported(3),
            "fa_utils.get_flash_attn_version() == 3 [FA3 present]": fa_utils.get_flash_attn_version() == 3,
            "fa_utils.flash_attn_supports_mla() [FA3 present]": fa_utils.flash_attn_supports_mla(),
        }

def probe_fa4():
    from vllm.vllm_flash_attn import flash_attn_interface as fai
    from vllm.v1.attention.backends import fa_utils
    with forced(fai, FA4_AVAILABLE=True):
        return {
            "is_fa_version_supported(4) [FA4 present]": fai.is_fa_version_supported(4),
            "fa_utils.get_flash_attn_version() == 4 [FA4 present]": fa_utils.get_flash_attn_version() == 4,
        }

def probe_flashmla():
    from vllm.v1.attention.ops import flashmla
    with forced(flashmla, _flashmla_C_AVAILABLE=True, _flashmla_extension_C_AVAILABLE=True):
        return {
            "is_flashmla_dense_supported() [FlashMLA present]": flashmla.is_flashmla_dense_supported()[0],
            "is_flashmla_sparse_supported() [FlashMLA present]": flashmla.is_flashmla_sparse_supported()[0],
        }

def probe_triton_ptxas():
    from triton.backends.nvidia import compiler
    names = types.SimpleNamespace(nvidia=types.SimpleNamespace(ptxas="ptxas", ptxas_blackwell="ptxas-blackwell"))
    with forced(compiler, knobs=names):
        return {"triton get_ptxas(arch) is ptxas": compiler.get_ptxas(CAP[0] * 10 + CAP[1]) == "ptxas"}

def as_found():
    # What the image answers as it is (nothing forced): must not raise.
    from vllm.vllm_flash_attn import flash_attn_interface as fai
    from vllm.v1.attention.ops import flashmla
    from vllm.v1.attention.backends import fa_utils
    return {
        "fa_version_unsupported_reason(3)": fai.fa_version_unsupported_reason(3),
        "fa_version_unsupported_reason(4)": fai.fa_version_unsupported_reason(4),
        "get_flash_attn_version()": fa_utils.get_flash_attn_version(),
        "is_flashmla_dense_supported()": list(flashmla.is_flashmla_dense_supported()),
        "is_flashmla_sparse_supported()": list(flashmla.is_flashmla_sparse_supported()),
    }

def backends():
    from vllm.v1.attention.selector import AttentionSelectorConfig
    config = AttentionSelectorConfig(head_size=128, dtype=torch.bfloat16, kv_cache_dtype="auto", block_size=None)
    valid, invalid = Patched.get_valid_backends(DeviceCapability(*CAP), config)
    return [b.name for b, _ in sorted(valid, key=lambda v: v[1])]

PROBES = {
    "flashinfer-trtllm": probe_flashinfer_trtllm,
    "fa3": probe_fa3,
    "fa4": probe_fa4,
    "flashmla": probe_flashmla,
    "triton-ptxas": probe_triton_ptxas,
}
for cap in spec["capabilities"]:
    CAP[:] = [int(n) for n in cap.split(".")]
    del LOOKED[:]
    run = {"probes": {}}
    for name, probe in PROBES.items():
        try:
            gates = probe()
            run["probes"][name] = {"used": any(gates.values()), "gates": gates}
        except Exception as exc:
            run["probes"][name] = {"error": error(exc)}
    for key, ask in (("as_found", as_found), ("attention_backends", backends)):
        try:
            run[key] = ask()
        except Exception as exc:
            run[key] = {"error": error(exc)}
    run["cubin_lookups"] = list(LOOKED)
    out["runs"][cap] = run
print(json.dumps(out))
"""

# `pip check` for an image without pip: every installed distribution's requirements (markers
# evaluated, extras left out) are installed at a version they accept. One JSON line.
REQUIREMENTS = r"""
import json
from importlib import metadata
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
problems = []
for dist in metadata.distributions():
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        have = installed.get(canonicalize_name(req.name))
        if have is None:
            problems.append(f"{dist.metadata['Name']} requires {req}, which is not installed")
        elif not req.specifier.contains(have, prereleases=True):
            problems.append(f"{dist.metadata['Name']} requires {req}, found {req.name} {have}")
vllm = {canonicalize_name(Requirement(t).name): str(Requirement(t).specifier)
        for t in (metadata.requires("vllm") or []) if "extra" not in t} if "vllm" in installed else {}
print(json.dumps({"problems": sorted(set(problems)), "distributions": len(installed),
                  "vllm_requires_flashinfer_cubin": vllm.get("flashinfer-cubin"),
                  "flashinfer_cubin": installed.get("flashinfer-cubin")}))
"""
