# Rendered by vllm-forge for profile "debian-pypi". Do not edit: change versions.toml and re-render.
# Builds from Debian's archive and the Python package index only: a Debian base made here, vLLM/torch/FlashInfer wheels from the index, the kernel probe compiled by the index's CUDA 13 nvcc

###############################################################################################
# toolchain: compilers, Python venv, ccache, nvcc from the package index
###############################################################################################
FROM localhost/vllm-forge/debian:bookworm AS toolchain
ARG DEBIAN_FRONTEND=noninteractive
ARG SOURCE_DATE_EPOCH=1764201600
RUN --mount=type=cache,id=vllm-forge-apt-debian-pypi-toolchain,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=vllm-forge-apt-lists-debian-pypi-toolchain,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev build-essential ccache make ca-certificates \
    && rm -rf /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
        /var/cache/ldconfig/aux-cache /var/lib/dpkg/*-old /var/cache/debconf/*-old
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CCACHE_DIR=/root/.ccache \
    CCACHE_MAXSIZE=20G \
    CCACHE_COMPILERCHECK=content \
    FORGE_CCACHE_STATS="direct_cache_hit|preprocessed_cache_hit|cache_miss|files_in_cache|cache_size_kibibyte"
RUN python3.11 -m venv /opt/venv
RUN --mount=type=cache,id=vllm-forge-pip,target=/root/.cache/pip \
    --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    pip install --target /opt/cuda-toolkit "cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2" \
    && ln -s /opt/cuda-toolkit/nvidia/cu13 /usr/local/cuda \
    && ln -s lib /usr/local/cuda/lib64
ENV CUDA_HOME=/usr/local/cuda \
    PATH=/opt/venv/bin:/usr/local/cuda/bin:$PATH

###############################################################################################
# kernel-probe: our own CUDA program, compiled with the same arch flags as vLLM. It launches a
# kernel on every visible GPU and says whether this image has a kernel for it.
###############################################################################################
FROM toolchain AS kernel-probe
# FORGE_MEM_BUDGET_MIB: what the compiles running at once may expect to use together; each one
# waits in scripts/compile_admit.py until its own expected peak (compile_memory.toml) fits. 0 (a
# plain `docker build`): no waiting.
ARG FORGE_MEM_BUDGET_MIB=0
# MAX_JOBS: parallel compile jobs. `vllm-forge build` passes one per core, memory being the
# budget's business (`vllm-forge jobs` prints both); a plain `docker build` of this file gets 1:
# slow, never out of memory.
ARG MAX_JOBS=1
ARG NVCC_THREADS=1
COPY probe/ /src/kernel-probe/
RUN --mount=type=cache,id=vllm-forge-ccache,target=/root/.ccache \
    ccache --zero-stats >/dev/null \
    && jobs=$(( MAX_JOBS / NVCC_THREADS )) \
    && make -C /src/kernel-probe -j"$(( jobs < 1 ? 1 : jobs > 64 ? 64 : jobs ))" \
        NVCC="ccache nvcc" NVCC_THREADS="$NVCC_THREADS" CUDA_HOME=/usr/local/cuda \
        GENCODE="-gencode=arch=compute_120,code=sm_120" BUILD_DIR=/out \
    && ccache --print-stats | grep -E "^(${FORGE_CCACHE_STATS})\s" | sed 's/^/vllm-forge-ccache kernel-probe /'

###############################################################################################
# probe: the kernel probe alone on the runtime base, a one-second pre-flight image:
#   docker run --gpus all IMAGE   -> exit 0 kernel ran, 2 no kernel image, 3 no GPU/driver
###############################################################################################
FROM localhost/vllm-forge/debian:bookworm AS probe
COPY --from=kernel-probe /out/kernel-probe /usr/local/bin/kernel-probe
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
ENTRYPOINT ["/usr/local/bin/kernel-probe"]

###############################################################################################
# vllm-build: the package index's prebuilt vLLM wheel (it carries sm_120 kernels), in /wheels
###############################################################################################
FROM toolchain AS vllm-build
COPY lock/vllm.txt /lock/vllm.txt
RUN --mount=type=cache,id=vllm-forge-pip,target=/root/.cache/pip \
    --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    pip download --no-deps --require-hashes --dest /wheels -r /lock/vllm.txt

###############################################################################################
# builder: every compiled artifact in one image (`nox -s build`)
###############################################################################################
FROM toolchain AS builder
COPY --from=vllm-build /wheels/ /wheels/
COPY --from=kernel-probe /out/kernel-probe /usr/local/bin/kernel-probe
LABEL io.github.vllm-forge.base.devel="localhost/vllm-forge/debian:bookworm" \
      io.github.vllm-forge.base.runtime="localhost/vllm-forge/debian:bookworm" \
      io.github.vllm-forge.cuda="12.8" \
      io.github.vllm-forge.flashinfer="0.6.6" \
      io.github.vllm-forge.flashinfer.jit-cache="none" \
      io.github.vllm-forge.flashinfer.packages="flashinfer-python,flashinfer-cubin" \
      io.github.vllm-forge.nvcc="cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2" \
      io.github.vllm-forge.profile="debian-pypi" \
      io.github.vllm-forge.python="3.11" \
      io.github.vllm-forge.torch="2.10.0" \
      io.github.vllm-forge.torch-cuda-arch-list="12.0" \
      io.github.vllm-forge.torchaudio="2.10.0" \
      io.github.vllm-forge.torchvision="0.25.0" \
      io.github.vllm-forge.vllm="0.19.1" \
      io.github.vllm-forge.vllm.source="wheel vllm==0.19.1" \
      org.opencontainers.image.base.name="localhost/vllm-forge/debian:bookworm" \
      org.opencontainers.image.version="0.19.1"
ARG VCS_REF=unknown
LABEL org.opencontainers.image.revision="${VCS_REF}"

###############################################################################################
# runtime: the slim serving image. The venv is installed in one layer from the hash-locked
# requirements and the builder's wheels (bind-mounted, never copied in). No compiler caches,
# pip caches, build trees or CUDA toolkit; gcc and Python's headers stay: Triton compiles its
# small launcher stub with them at the first kernel launch.
# In the same layer, the files no GPU of TORCH_CUDA_ARCH_LIST=12.0 loads are
# deleted (vllm_forge/prune.toml); package metadata stays, and `pip check` runs after.
###############################################################################################
FROM localhost/vllm-forge/debian:bookworm AS runtime
ARG DEBIAN_FRONTEND=noninteractive
ARG SOURCE_DATE_EPOCH=1764201600
RUN --mount=type=cache,id=vllm-forge-apt-debian-pypi-runtime,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=vllm-forge-apt-lists-debian-pypi-runtime,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev gcc libc6-dev ca-certificates \
    && rm -rf /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
        /var/cache/ldconfig/aux-cache /var/lib/dpkg/*-old /var/cache/debconf/*-old
# The script's hash is in the command: podman 4.3 keys no layer on a bind mount's content.
RUN --mount=type=bind,source=scripts/create_user.sh,target=/run/create_user.sh \
    : "create_user.sh sha256:44178aa8526900a7043931ec61327410649e1cf61a48aed38e22909bd29da03f" \
    && sh /run/create_user.sh vllm 1000 \
    && mkdir -p /var/cache/vllm-forge/cuda && chmod 1777 /var/cache/vllm-forge /var/cache/vllm-forge/cuda
# No interpreter in this stage writes bytecode on its own: .pth files import modules at every
# start-up, and those .pyc files would be timestamp-based, i.e. carry this build's clock.
# Every .pyc in the image comes from the one compileall below, hash-based, forced.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN --mount=type=cache,id=vllm-forge-pip,target=/root/.cache/pip \
    --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,source=lock,target=/lock \
    python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-deps --require-hashes --no-compile -r /lock/deps.txt \
    && /opt/venv/bin/pip install --no-deps --no-compile /wheels/*.whl \
    && site=/opt/venv/lib/python3.11/site-packages \
    && prune() { name=$1; total=0; shift; \
        while [ $# -gt 1 ]; do \
            if [ -e "$site/$1" ]; then \
                bytes=$(find "$site/$1" -path "$site/$2" -prune -exec sh -c 'find "$@" -type f -printf "%s\n"' sh {} + | awk '{s += $1} END {print s + 0}'); \
                find "$site/$1" -path "$site/$2" -prune -exec rm -rf {} + || return 1; \
                total=$((total + bytes)); \
            fi; \
            shift 2; \
        done; \
        echo "vllm-forge-prune $name $total" | tee -a /usr/local/share/vllm-forge/pruned.txt; } \
    && mkdir -p /usr/local/share/vllm-forge \
    && prune flashinfer-cubins-sm100 "flashinfer_cubin/cubins" "flashinfer_cubin/cubins/*.cubin" \
    && prune vllm-fa3-sm90 "vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so" "vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so" \
    && prune vllm-flashmla "vllm/_flashmla_C.abi3.so" "vllm/_flashmla_C.abi3.so" "vllm/_flashmla_extension_C.abi3.so" "vllm/_flashmla_extension_C.abi3.so" \
    && prune vllm-fa4-cute "vllm/vllm_flash_attn/cute" "vllm/vllm_flash_attn/cute" \
    && prune triton-ptxas-pre-sm100 "triton/backends/nvidia/bin/ptxas" "triton/backends/nvidia/bin/ptxas" \
    && prune cuda-bindings-cython-sources "cuda/bindings" "cuda/bindings/*.cpp" \
    && prune triton-cupti-static-archives "triton/backends/nvidia/lib/cupti" "triton/backends/nvidia/lib/cupti/*.a" \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall -y -q pip \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -W ignore -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
        /opt/venv/lib
COPY --from=kernel-probe /out/kernel-probe /usr/local/bin/kernel-probe
# FLASHINFER_CUDA_ARCH_LIST: the profile's FlashInfer arches, stated (this image has no nvcc, so
# FlashInfer cannot JIT here; at 0.6.6 it names the workspace folder, and from 0.6.8 an explicit
# list is what keeps FlashInfer from refusing SM12x next to an nvcc older than 12.9).
# CUDA_CACHE_*: the driver JIT-compiles the PTX-only kernels (FlashAttention 2, the fp16/bf16
# Marlin kernels: `8.0+PTX` upstream, even for a 12.0 list) at their first use; its cache
# (in ~/.nv by default, 256 MiB to 1 GiB by driver) goes to a directory any user can write, up to
# 4 GiB, the driver's maximum. The other run-time caches go under the same root (vLLM's
# torch.compile and Triton kernels, Hugging Face downloads, Triton's own cache, FlashInfer's
# workspace): one volume at /var/cache/vllm-forge keeps all of it (`nox -s serve` mounts one).
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    FLASHINFER_CUDA_ARCH_LIST="12.0a" \
    CUDA_CACHE_PATH=/var/cache/vllm-forge/cuda \
    CUDA_CACHE_MAXSIZE=4294967296 \
    XDG_CACHE_HOME=/var/cache/vllm-forge \
    HF_HOME=/var/cache/vllm-forge/huggingface \
    TRITON_CACHE_DIR=/var/cache/vllm-forge/triton \
    FLASHINFER_WORKSPACE_BASE=/var/cache/vllm-forge/flashinfer
LABEL io.github.vllm-forge.base.devel="localhost/vllm-forge/debian:bookworm" \
      io.github.vllm-forge.base.runtime="localhost/vllm-forge/debian:bookworm" \
      io.github.vllm-forge.cuda="12.8" \
      io.github.vllm-forge.flashinfer="0.6.6" \
      io.github.vllm-forge.flashinfer.jit-cache="none" \
      io.github.vllm-forge.flashinfer.packages="flashinfer-python,flashinfer-cubin" \
      io.github.vllm-forge.nvcc="cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2" \
      io.github.vllm-forge.profile="debian-pypi" \
      io.github.vllm-forge.python="3.11" \
      io.github.vllm-forge.torch="2.10.0" \
      io.github.vllm-forge.torch-cuda-arch-list="12.0" \
      io.github.vllm-forge.torchaudio="2.10.0" \
      io.github.vllm-forge.torchvision="0.25.0" \
      io.github.vllm-forge.vllm="0.19.1" \
      io.github.vllm-forge.vllm.source="wheel vllm==0.19.1" \
      org.opencontainers.image.base.name="localhost/vllm-forge/debian:bookworm" \
      org.opencontainers.image.version="0.19.1"
ARG VCS_REF=unknown
LABEL org.opencontainers.image.revision="${VCS_REF}"
EXPOSE 8000
ENTRYPOINT ["vllm", "serve"]
