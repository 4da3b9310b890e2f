# FlashInfer 0.6.6's AOT units for 12.0a (its own ninja files' command lines): the heavy kinds,
# a stratified sample with no admission budget (each unit's own peak; the machine has 128 GiB),
# then one light set at 16 and at 8 jobs.
. vllm_forge/measure/common.sh
bench fi-heavy build/device/fi-commands.json $FROOTS --sample stratified \
  --per-kind "flashinfer-fp4-gemm-sm120=3,flashinfer-moe-cutlass-instantiations=5,flashinfer-moe-gemm-kernels=5,flashinfer-gemm-sm120=3" \
  -j 16 --kill-after ${KILL:-330}
for j in 16 8; do
  bench fi-light-j$j build/device/fi-commands.json $FROOTS --sample stratified --per-kind "flashinfer-aot=${LIGHT:-32}" -j $j --kill-after ${LKILL:-150}
done
for f in "$D"/runs/fi-*/logs/*.log; do grep -q -i "error" "$f" && { echo "== $f"; grep -i -m5 "error" "$f"; }; done > "$OUT/fi-errors.txt" 2>&1; head -c 3000 "$OUT/fi-errors.txt"
