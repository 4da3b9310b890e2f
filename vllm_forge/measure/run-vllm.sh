# vLLM 0.19.1's exact CMake command lines (TORCH_CUDA_ARCH_LIST=12.0), a stratified sample, under
# the plan of a 16-core / 32 GB desktop (16 jobs, admission budget 28 GiB), through ccache (cold),
# then the same units again with the ccache warm.
. vllm_forge/measure/common.sh
PER=${PER:-"flash-attention-3=8,vllm-other=8,flash-attention-2=4,marlin-generated=3,default=2,paged-attention=1,cutlass-sm120-c3x-dispatch=1,cutlass-sm120-fp8-gemm=1,cutlass-sm120-blockwise-fp8-gemm=1,cutlass-sm120-nvfp4-gemm=1,cutlass-nvfp4-blockwise-moe=1"}
"$CCACHE" -z >/dev/null
bench vllm-cold build/device/vllm-commands.json $VROOTS --sample stratified --per-kind "$PER" \
  -j ${JOBS:-16} --budget-gib ${BUDGET:-28} --launcher "$CCACHE" --stop-after ${STOP:-330} --kill-after ${KILL:-470}
"$CCACHE" -s > "$OUT/ccache-cold.txt"; "$CCACHE" -z >/dev/null
rm -rf "$D/build"
bench vllm-warm build/device/vllm-commands.json $VROOTS --sample stratified --per-kind "$PER" \
  -j ${JOBS:-16} --budget-gib ${BUDGET:-28} --launcher "$CCACHE" --kill-after ${WARMKILL:-60}
"$CCACHE" -s > "$OUT/ccache-warm.txt"; cat "$OUT/ccache-warm.txt" | head -8
for f in "$D"/runs/*/logs/*.log; do grep -q -i "error" "$f" && { echo "== $f"; grep -i -m5 "error" "$f"; }; done > "$OUT/errors.txt" 2>&1; head -c 3000 "$OUT/errors.txt"
