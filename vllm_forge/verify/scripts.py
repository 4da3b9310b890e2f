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
