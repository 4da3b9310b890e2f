# sourced by the device runs: unpack, find the toolchain, print the machine
set -u
export PYTHONUNBUFFERED=1
D=${DEVTMP:-/tmp/dev}; mkdir -p "$D"
OUT=${OUT:-$D/out}; mkdir -p "$OUT"
if [ ! -d "$D/vpack" ]; then
  tar xJf build/device/vllm-pack.tar.xz -C "$D"
  tar xzf build/device/pack.tar.gz -C "$D"
  mkdir -p "$D/flashinfer/build" && cp -a "$D/pack/fi/." "$D/flashinfer/" && mv "$D/pack/aot" "$D/flashinfer/build/aot"
fi
P=$D/vpack
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
# headers a pip-installed toolkit keeps apart (cuBLAS, cuSPARSE, cuRAND...), only if CUDA_HOME lacks
# them, searched after every directory the commands name (like -isystem, never shadowing nvcc's own)
if [ ! -e "$CUDA_HOME/include/cusparse.h" ]; then
export CPLUS_INCLUDE_PATH=$(python3 - <<'PY'
import glob, site
print(":".join(sorted(glob.glob(f"{site.getsitepackages()[0]}/nvidia/*/include"))))
PY
)
export C_INCLUDE_PATH=$CPLUS_INCLUDE_PATH
fi
PYINC=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
export LD_LIBRARY_PATH=$P/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} CCACHE_DIR=$D/ccache CCACHE_MAXSIZE=30G
CCACHE=$P/bin/ccache
VROOTS="--root vllm=$P/vllm --root src=$P/src --root torch=$P/torch --root cuda_home=$CUDA_HOME --root py_include=$PYINC --root build=$D/build"
FROOTS="--root fi=$D/flashinfer --root aot=$D/flashinfer/build/aot --root cuda_home=$CUDA_HOME --root py_include=$PYINC --root tvm_ffi=$D/pack/tvm_ffi --root cutlass=$D/pack/cutlass"
{ echo "nvcc $NVCC CUDA_HOME $CUDA_HOME"; ls "$CUDA_HOME"/include/cusparse.h "$CUDA_HOME"/include/cublasLt.h "$CUDA_HOME"/include/curand_kernel.h; echo "CPLUS_INCLUDE_PATH ${CPLUS_INCLUDE_PATH:-}"; nproc; free -g | head -2; "$NVCC" --version | tail -2; "$CCACHE" --version | head -1; nvidia-smi -L 2>/dev/null; python3 -c "import torch; print('torch', torch.__version__)"; } 2>&1 | tee "$OUT/machine.txt"
# run NAME ARGS...: one compilebench run; its report and per-unit lines back in $OUT, the
# logs of failed units in one file
bench() {
  local name=$1; shift
  python3 -m vllm_forge.compilebench run "$@" --out "$D/runs" --name "$name" 2>&1 | tee "$OUT/$name.log" | grep -v "^\[" | head -60
  cp "$D/runs/$name/units.jsonl" "$OUT/$name.units.jsonl" 2>/dev/null
  cp "$D/runs/$name/report.json" "$OUT/$name.json" 2>/dev/null
}
