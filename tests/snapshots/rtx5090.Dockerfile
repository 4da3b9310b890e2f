# Rendered by vllm-forge for profile "rtx5090". Do not edit: change versions.toml and re-render.
# RTX 5090 (sm_120): NVIDIA CUDA 12.8 bases by digest, vLLM compiled from source for 12.0

###############################################################################################
# toolchain: compilers, Python venv, ccache
###############################################################################################
FROM nvidia/cuda:12.8.1-devel-ubuntu24.04@sha256:4b9ed5fa8361736996499f64ecebf25d4ec37ff56e4d11323ccde10aa36e0c43 AS toolchain
ARG DEBIAN_FRONTEND=noninteractive
ARG SOURCE_DATE_EPOCH=1764201600
RUN --mount=type=cache,id=vllm-forge-apt-rtx5090-toolchain,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=vllm-forge-apt-lists-rtx5090-toolchain,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.12 python3.12-venv python3.12-dev build-essential ccache make ca-certificates \
    && rm -rf /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
        /var/cache/ldconfig/aux-cache /var/lib/dpkg/*-old /var/cache/debconf/*-old
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CCACHE_DIR=/root/.ccache \
    CCACHE_MAXSIZE=20G \
    CCACHE_COMPILERCHECK=content \
    FORGE_CCACHE_STATS="direct_cache_hit|preprocessed_cache_hit|cache_miss|files_in_cache|cache_size_kibibyte"
RUN python3.12 -m venv /opt/venv
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
FROM nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:133c78a0575303be34164d0b90137a042172bdf60696af01a3c424ab402d86e2 AS probe
COPY --from=kernel-probe /out/kernel-probe /usr/local/bin/kernel-probe
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
ENTRYPOINT ["/usr/local/bin/kernel-probe"]

###############################################################################################
# torch: the pinned CUDA 12.8 build vLLM compiles against
###############################################################################################
FROM toolchain AS torch
COPY lock/deps.txt /lock/deps.txt
RUN --mount=type=cache,id=vllm-forge-pip,target=/root/.cache/pip \
    --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    pip install --no-deps --require-hashes -r /lock/deps.txt
# Both compiles' build tools (vLLM's requirements/build.txt and pyproject, FlashInfer's jit-cache
# build requirements, `build`), hash-locked against the runtime lock's versions (`nox -s lock`):
# nothing is resolved at build time. Its own step, so a change here does not reinstall torch.
COPY lock/build.txt /lock/build.txt
RUN --mount=type=cache,id=vllm-forge-pip,target=/root/.cache/pip \
    --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    pip install --no-deps --require-hashes -r /lock/build.txt

###############################################################################################
# vllm-source: vLLM's source, pinned by the sdist's sha256
###############################################################################################
FROM torch AS vllm-source
COPY scripts/fetch_sdist.py /usr/local/bin/fetch-sdist
RUN --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    python /usr/local/bin/fetch-sdist vllm 0.19.1 9fb88ce6b50991eba41d183584f65f51d7f6015d86a42cdabf79c1c8bd5d66fa /src/vllm.tar.gz \
    && mkdir -p /src/vllm \
    && tar -xzf /src/vllm.tar.gz -C /src/vllm --strip-components=1 \
    && rm /src/vllm.tar.gz

###############################################################################################
# vllm-build: vLLM compiled for TORCH_CUDA_ARCH_LIST=12.0, wheels in /wheels
###############################################################################################
FROM vllm-source AS vllm-build
# FORGE_MEM_BUDGET_MIB: what the compiles running at once may expect to use together; each one
# waits in scripts/compile_admit.py until its own expected peak (compile_memory.toml) fits. 0 (a
# plain `docker build`): no waiting.
ARG FORGE_MEM_BUDGET_MIB=0
# MAX_JOBS: parallel compile jobs. `vllm-forge build` passes one per core, memory being the
# budget's business (`vllm-forge jobs` prints both); a plain `docker build` of this file gets 1:
# slow, never out of memory.
ARG MAX_JOBS=1
ARG NVCC_THREADS=1
# VLLM_MAIN_CUDA_VERSION: vLLM's setup.py appends `+cu128` to the version when nvcc's CUDA is not
# this (its default is 12.9); the image's vLLM is then `0.19.1+cu128`, not the pinned version.
ENV TORCH_CUDA_ARCH_LIST="12.0" \
    VLLM_TARGET_DEVICE=cuda \
    VLLM_MAIN_CUDA_VERSION=12.8 \
    CMAKE_BUILD_TYPE=Release \
    SETUPTOOLS_SCM_PRETEND_VERSION=0.19.1
# vLLM's git dependencies (CUTLASS, its FlashAttention fork, ...): fetched and verified on the
# host by commit (`vllm-forge sources`; offline: `--from DIR`), bind-mounted into the compile
# below, never fetched here. FETCHCONTENT_FULLY_DISCONNECTED with policy CMP0170 NEW (CMake >=
# 3.30; vLLM's own minimum leaves it unset, which only warns) makes a dependency nobody pinned
# fail the build instead of reaching out. VLLM_FORGE_SOURCES names the commits: podman 4.3
# keys no layer cache on a bind mount's content, so the pins themselves are part of the step.
ENV VLLM_CUTLASS_SRC_DIR=/src/deps/cutlass \
    FLASH_MLA_SRC_DIR=/src/deps/flashmla \
    QUTLASS_SRC_DIR=/src/deps/qutlass \
    TRITON_KERNELS_SRC_DIR=/src/deps/triton_kernels/python/triton_kernels/triton_kernels \
    VLLM_FLASH_ATTN_SRC_DIR=/src/deps/vllm-flash-attn \
    CMAKE_ARGS="-DFETCHCONTENT_FULLY_DISCONNECTED=ON -DCMAKE_POLICY_DEFAULT_CMP0170=NEW -DCMAKE_CUDA_COMPILER_LAUNCHER=python3;/opt/forge/compile_admit.py;ccache -DCMAKE_CXX_COMPILER_LAUNCHER=python3;/opt/forge/compile_admit.py;ccache" \
    VLLM_FORGE_SOURCES="cutlass@f3fde58372d33e9a5650ba7b80fc48b3b49d40c8 flashmla@692917b1cda61b93ac9ee2d846ec54e75afe87b1 qutlass@830d2c4537c7396e14a02a46fbddd18b5d107c65 triton_kernels@7c56a5e40f7fd928dfd5c72902d5def0097db73a vllm-flash-attn@29210221863736a08f71a866459e368ad1ac4a95"
WORKDIR /src/vllm
# use_existing_torch.py drops vLLM's torch pins: the lock's torch is the one it builds against.
RUN python use_existing_torch.py
# The compile admission launcher and its unit table (copied, so that a change to either is a
# change to this stage on both engines; podman 4.3 keys no layer on a bind mount's content).
COPY scripts/compile_admit.py scripts/compile_memory.toml /opt/forge/
RUN --mount=type=cache,id=vllm-forge-pip,target=/root/.cache/pip \
    --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    --mount=type=cache,id=vllm-forge-ccache,target=/root/.ccache \
    --mount=type=bind,source=sources/cutlass,target=/src/deps/cutlass \
    --mount=type=bind,source=sources/flashmla,target=/src/deps/flashmla \
    --mount=type=bind,source=sources/qutlass,target=/src/deps/qutlass \
    --mount=type=bind,source=sources/triton_kernels,target=/src/deps/triton_kernels \
    --mount=type=bind,source=sources/vllm-flash-attn,target=/src/deps/vllm-flash-attn \
    ccache --zero-stats >/dev/null \
    && MAX_JOBS="$MAX_JOBS" NVCC_THREADS="$NVCC_THREADS" \
        pip wheel --no-build-isolation --no-deps --wheel-dir /wheels . \
    && ccache --print-stats | grep -E "^(${FORGE_CCACHE_STATS})\s" | sed 's/^/vllm-forge-ccache vllm /' \
    && python3 /opt/forge/compile_admit.py --summary | sed 's/^vllm-forge-compile /vllm-forge-compile vllm /'

###############################################################################################
# flashinfer-jit-cache: FlashInfer's kernels compiled ahead of time for 12.0a
# (~270 modules, ~1,500 nvcc units), so the runtime image needs no nvcc: without them FlashInfer
# would JIT-compile at first use, and the slim image has no CUDA compiler to do it with.
###############################################################################################
FROM torch AS flashinfer-jit-cache
# FORGE_MEM_BUDGET_MIB: what the compiles running at once may expect to use together; each one
# waits in scripts/compile_admit.py until its own expected peak (compile_memory.toml) fits. 0 (a
# plain `docker build`): no waiting.
ARG FORGE_MEM_BUDGET_MIB=0
# MAX_JOBS: parallel compile jobs. `vllm-forge build` passes one per core, memory being the
# budget's business (`vllm-forge jobs` prints both); a plain `docker build` of this file gets 1:
# slow, never out of memory.
ARG MAX_JOBS=1
# FlashInfer's source with its submodules, from the host's verified source cache (commit
# 70b142b75b46aa56e7f675a8e6ec1a977352c91f). Copied, not mounted: its build writes into the tree.
COPY sources/flashinfer/ /src/flashinfer/
COPY scripts/compile_admit.py scripts/compile_memory.toml scripts/nvcc_ccache.sh /opt/forge/
# The bind mount of vllm-build's wheels is the order: this compile starts only once vLLM's has
# ended, so the two never hold MAX_JOBS compiles each at the same time (BuildKit would otherwise
# run the two stages in parallel, both FROM torch).
# Every nvcc and c++ of its ninja goes through ccache (FLASHINFER_NVCC, CXX: see
# scripts/nvcc_ccache.sh for why nvcc needs a wrapper), and every nvcc through the admission
# launcher; a rebuild after a change elsewhere compiles nothing; the build trees go in the step.
RUN --mount=type=cache,id=vllm-forge-pip,target=/root/.cache/pip \
    --mount=type=secret,id=pip-ca,target=/run/secrets/pip-ca \
    --mount=type=secret,id=pip-conf,target=/etc/pip.conf \
    --mount=type=cache,id=vllm-forge-ccache,target=/root/.ccache \
    --mount=type=bind,from=vllm-build,source=/wheels,target=/run/after-vllm-build \
    ccache --zero-stats >/dev/null \
    && cd /src/flashinfer/flashinfer-jit-cache \
    && FLASHINFER_CUDA_ARCH_LIST="12.0a" MAX_JOBS="$MAX_JOBS" \
        FLASHINFER_NVCC="bash /opt/forge/nvcc_ccache.sh" FORGE_ADMIT=/opt/forge/compile_admit.py \
        CXX="ccache c++" python -m build --no-isolation --wheel --outdir /wheels . \
    && rm -rf /src/flashinfer/build /src/flashinfer/flashinfer-jit-cache/build \
        /src/flashinfer/flashinfer-jit-cache/flashinfer_jit_cache/jit_cache \
    && ccache --print-stats | grep -E "^(${FORGE_CCACHE_STATS})\s" | sed 's/^/vllm-forge-ccache flashinfer /' \
    && python3 /opt/forge/compile_admit.py --summary | sed 's/^vllm-forge-compile /vllm-forge-compile flashinfer /'

###############################################################################################
# builder: every compiled artifact in one image (`nox -s build`)
###############################################################################################
FROM toolchain AS builder
COPY --from=vllm-build /wheels/ /wheels/
COPY --from=flashinfer-jit-cache /wheels/ /wheels/
COPY --from=kernel-probe /out/kernel-probe /usr/local/bin/kernel-probe
LABEL io.github.vllm-forge.base.devel="nvidia/cuda:12.8.1-devel-ubuntu24.04@sha256:4b9ed5fa8361736996499f64ecebf25d4ec37ff56e4d11323ccde10aa36e0c43" \
      io.github.vllm-forge.base.runtime="nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:133c78a0575303be34164d0b90137a042172bdf60696af01a3c424ab402d86e2" \
      io.github.vllm-forge.cuda="12.8" \
      io.github.vllm-forge.flashinfer="0.6.6" \
      io.github.vllm-forge.flashinfer.jit-cache="source" \
      io.github.vllm-forge.flashinfer.packages="flashinfer-python,flashinfer-cubin" \
      io.github.vllm-forge.nvcc="image" \
      io.github.vllm-forge.profile="rtx5090" \
      io.github.vllm-forge.python="3.12" \
      io.github.vllm-forge.torch="2.10.0" \
      io.github.vllm-forge.torch-cuda-arch-list="12.0" \
      io.github.vllm-forge.torchaudio="2.10.0" \
      io.github.vllm-forge.torchvision="0.25.0" \
      io.github.vllm-forge.vllm="0.19.1" \
      io.github.vllm-forge.vllm.source="sdist sha256:9fb88ce6b50991eba41d183584f65f51d7f6015d86a42cdabf79c1c8bd5d66fa" \
      org.opencontainers.image.base.name="nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:133c78a0575303be34164d0b90137a042172bdf60696af01a3c424ab402d86e2" \
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
FROM nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:133c78a0575303be34164d0b90137a042172bdf60696af01a3c424ab402d86e2 AS runtime
ARG DEBIAN_FRONTEND=noninteractive
ARG SOURCE_DATE_EPOCH=1764201600
RUN --mount=type=cache,id=vllm-forge-apt-rtx5090-runtime,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=vllm-forge-apt-lists-rtx5090-runtime,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.12 python3.12-venv python3.12-dev gcc libc6-dev ca-certificates \
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
    python3.12 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-deps --require-hashes --no-compile -r /lock/deps.txt \
    && /opt/venv/bin/pip install --no-deps --no-compile /wheels/*.whl \
    && site=/opt/venv/lib/python3.12/site-packages \
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
LABEL io.github.vllm-forge.base.devel="nvidia/cuda:12.8.1-devel-ubuntu24.04@sha256:4b9ed5fa8361736996499f64ecebf25d4ec37ff56e4d11323ccde10aa36e0c43" \
      io.github.vllm-forge.base.runtime="nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:133c78a0575303be34164d0b90137a042172bdf60696af01a3c424ab402d86e2" \
      io.github.vllm-forge.cuda="12.8" \
      io.github.vllm-forge.flashinfer="0.6.6" \
      io.github.vllm-forge.flashinfer.jit-cache="source" \
      io.github.vllm-forge.flashinfer.packages="flashinfer-python,flashinfer-cubin" \
      io.github.vllm-forge.nvcc="image" \
      io.github.vllm-forge.profile="rtx5090" \
      io.github.vllm-forge.python="3.12" \
      io.github.vllm-forge.torch="2.10.0" \
      io.github.vllm-forge.torch-cuda-arch-list="12.0" \
      io.github.vllm-forge.torchaudio="2.10.0" \
      io.github.vllm-forge.torchvision="0.25.0" \
      io.github.vllm-forge.vllm="0.19.1" \
      io.github.vllm-forge.vllm.source="sdist sha256:9fb88ce6b50991eba41d183584f65f51d7f6015d86a42cdabf79c1c8bd5d66fa" \
      org.opencontainers.image.base.name="nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:133c78a0575303be34164d0b90137a042172bdf60696af01a3c424ab402d86e2" \
      org.opencontainers.image.version="0.19.1"
ARG VCS_REF=unknown
LABEL org.opencontainers.image.revision="${VCS_REF}"
EXPOSE 8000
ENTRYPOINT ["vllm", "serve"]
