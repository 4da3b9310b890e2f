#!/bin/bash
# nvcc_ccache.sh ARGS...: nvcc through ccache, for FlashInfer's AOT build (FLASHINFER_NVCC).
#
# FlashInfer's ninja rule passes `--generate-dependencies-with-compile --dependency-output FILE`.
# ccache (4.7.5 here; upstream reports the same with 4.12) reads FILE as a second input file and
# caches nothing ("multiple source files"). nvcc's short spellings of the same two options, -MD and
# -MF FILE, are ones ccache knows: rewritten to those, every compile is cacheable.
# The nvcc run is $NVCC_REAL, else $CUDA_HOME/bin/nvcc, else /usr/local/cuda/bin/nvcc; with
# FORGE_ADMIT set (scripts/compile_admit.py), the compile first waits until its memory fits.
set -euo pipefail
args=()
while (($#)); do
    case $1 in
        --generate-dependencies-with-compile) args+=(-MD) ;;
        --dependency-output) args+=(-MF "$2"); shift ;;
        --dependency-output=*) args+=(-MF "${1#*=}") ;;
        *) args+=("$1") ;;
    esac
    shift
done
nvcc=${NVCC_REAL:-${CUDA_HOME:-/usr/local/cuda}/bin/nvcc}
if [ -n "${FORGE_ADMIT:-}" ]; then
    exec python3 "$FORGE_ADMIT" ccache "$nvcc" "${args[@]}"
fi
exec ccache "$nvcc" "${args[@]}"
