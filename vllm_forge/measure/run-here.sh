# The same measurement on an ordinary machine (here: 2 cores, 24 GiB): exact vLLM command lines,
# a few units of each light kind, the heavy CUTLASS units under this machine's admission budget,
# ccache cold then warm, 1 and 2 jobs. NVCC: the index's CUDA 13 nvcc (cuda-toolkit[nvcc,...]
# from pip, with lib64 and stub libraries beside it); HEADERS: directories with cuBLAS/cuSPARSE/
# cuRAND headers when that toolkit lacks them (a CUDA torch venv's nvidia/*/include).
export DEVTMP=${DEVTMP:-/tmp/devrun} OUT=${OUT:-/tmp/devrun/out-here} NVCC=${NVCC:?the nvcc to measure with}
. vllm_forge/measure/common.sh
export CPLUS_INCLUDE_PATH=${HEADERS:-${CPLUS_INCLUDE_PATH:-}} C_INCLUDE_PATH=
C=build/device/vllm-commands.json S="$VROOTS --sample stratified"
rm -rf "$CCACHE_DIR"; "$CCACHE" -z >/dev/null
bench here-ccache-cold $C $S --per-kind "flash-attention-3=2,vllm-other=2" --phase 0 -j 2 --launcher "$CCACHE"
"$CCACHE" -s > "$OUT/here-ccache-cold.txt"; "$CCACHE" -z >/dev/null; rm -rf "$D/build"
bench here-ccache-warm $C $S --per-kind "flash-attention-3=2,vllm-other=2" --phase 0 -j 2 --launcher "$CCACHE"
"$CCACHE" -s > "$OUT/here-ccache-warm.txt"
for j in 1 2; do bench here-j$j $C $S --per-kind "flash-attention-3=4" --phase 0.25 -j $j; done
bench here-light $C $S --per-kind "flash-attention-3=4,default=2,vllm-other=2" -j 2
bench here-heavy $C $S -j 2 --budget-gib 19.5 --per-kind \
  "cutlass-sm120-fp8-gemm=1,cutlass-sm120-nvfp4-gemm=1,cutlass-sm120-blockwise-fp8-gemm=1,cutlass-nvfp4-blockwise-moe=1,cutlass-sm120-c3x-dispatch=1,paged-attention=1,flash-attention-2=1,marlin-generated=1"
bench here-more $C $S --per-kind "flash-attention-2=3,vllm-other=4,marlin-generated=2" --phase 0 \
  -j 2 --budget-gib 19.5 --stop-after 600 --kill-after 900
