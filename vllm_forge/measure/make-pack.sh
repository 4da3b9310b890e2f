# Make what the measurement runs carry (git-ignored, under build/device/): vLLM's exact compile
# commands from its own configure, and the trees they read, packed. Run where a Python has a
# CUDA build of torch (the build lock's 2.10.0) and the build lock's CMake and ninja:
#   VLLM=<unpacked vLLM 0.19.1 sdist> NVCC=<nvcc 13.x> \
#   CUTLASS=... FA=... QUTLASS=... FLASHMLA=... TRITON_KERNELS=... bash vllm_forge/measure/make-pack.sh
# The five trees are the source pins' (locks/sources-rtx5090.toml) at their commits, with the
# submodules they fetch: `vllm-forge sources` puts them under build/.cache/sources/.
# FlashInfer's side (build/device/pack.tar.gz with fi/, aot/, cutlass/, tvm_ffi/ and
# fi-commands.json): `compilebench flashinfer-ninja` writes its AOT ninja files for 12.0a, and
# `compilebench ninja --prefix DIR=@{fi} ...` turns them into the command list.
set -eu
: "${VLLM:?} ${NVCC:?} ${CUTLASS:?} ${FA:?} ${QUTLASS:?} ${FLASHMLA:?} ${TRITON_KERNELS:?}"
OUTDIR=build/device; B=$(mktemp -d); mkdir -p "$OUTDIR"
TORCH=$(python3 -c "import torch, os; print(os.path.dirname(torch.__file__))")
PYINC=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
python3 -m vllm_forge.compilebench vllm-cmake "$VLLM" --build "$B" --nvcc "$NVCC" \
  --source VLLM_CUTLASS_SRC_DIR="$CUTLASS" --source VLLM_FLASH_ATTN_SRC_DIR="$FA" \
  --source QUTLASS_SRC_DIR="$QUTLASS" --source FLASH_MLA_SRC_DIR="$FLASHMLA" \
  --source TRITON_KERNELS_SRC_DIR="$TRITON_KERNELS" --out "$OUTDIR/vllm-commands.json" \
  --prefix "$VLLM=@{vllm}" --prefix "$CUTLASS=@{src}/cutlass" --prefix "$FA=@{src}/fa" \
  --prefix "$QUTLASS=@{src}/qutlass" --prefix "$TORCH=@{torch}" --prefix "$CUDA_HOME=@{cuda_home}" \
  --prefix "$PYINC=@{py_include}" --prefix "$B=@{build}"
# the trees, only what the commands include (headers, the sources), and ccache for the runs
P=$B/pack/vpack; mkdir -p "$P/vllm" "$P/src/cutlass/tools/util" "$P/src/cutlass/examples" \
  "$P/src/fa/csrc/cutlass/tools/util" "$P/src/qutlass" "$P/torch" "$P/bin" "$P/lib"
cp -a "$VLLM/csrc" "$P/vllm/"
cp -a "$CUTLASS/include" "$P/src/cutlass/"; cp -a "$CUTLASS/tools/util/include" "$P/src/cutlass/tools/util/"
cp -a "$CUTLASS/examples/77_blackwell_fmha" "$CUTLASS/examples/common" "$P/src/cutlass/examples/"
for x in "$FA"/csrc/*; do [ "$(basename "$x")" = cutlass ] || cp -a "$x" "$P/src/fa/csrc/"; done
cp -a "$FA/hopper" "$P/src/fa/"; cp -a "$FA/csrc/cutlass/include" "$P/src/fa/csrc/cutlass/"
cp -a "$FA/csrc/cutlass/tools/util/include" "$P/src/fa/csrc/cutlass/tools/util/"
cp -a "$QUTLASS/qutlass" "$P/src/qutlass/"; cp -a "$TORCH/include" "$P/torch/"
cp "$(command -v ccache)" "$P/bin/"; cp -L "$(ldd "$(command -v ccache)" | awk '/hiredis/ {print $3}')" "$P/lib/"
tar cf - -C "$B/pack" vpack | xz -T0 -6 > "$OUTDIR/vllm-pack.tar.xz"
rm -rf "$B"; ls -la "$OUTDIR"
