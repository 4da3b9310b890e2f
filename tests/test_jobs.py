import fnmatch

from vllm_forge import jobs

GIB = jobs.GIB


def test_32_gib_desktop_with_16_cores_gets_a_job_per_core_and_a_28_gib_budget():
    plan = jobs.plan(cores=16, memory=32 * GIB, nvcc_threads=1, gencode_targets=1)
    # ninja starts 16; the launcher lets them compile while their peaks fit in 32 - 4 GiB.
    assert (plan.ninja_jobs, plan.max_jobs, plan.memory_budget_mib) == (16, 16, 28 * 1024)
    assert "within 28 GiB of 32 GiB (4 GiB reserved)" in plan.reason


def test_more_than_one_compile_job_runs_with_nvcc_threads():
    # setup.py runs MAX_JOBS // NVCC_THREADS ninja jobs: MAX_JOBS must be scaled up with the threads.
    plan = jobs.plan(cores=16, memory=128 * GIB, nvcc_threads=2, gencode_targets=2)
    assert plan.max_jobs // plan.nvcc_threads == plan.ninja_jobs == 16


def test_threads_that_compile_several_targets_at_once_share_the_budget():
    # the table's peaks are for one gencode target; two at once in one nvcc need twice the room
    one = jobs.plan(cores=32, memory=64 * GIB, nvcc_threads=1, gencode_targets=2)
    two = jobs.plan(cores=32, memory=64 * GIB, nvcc_threads=2, gencode_targets=2)
    idle = jobs.plan(cores=32, memory=64 * GIB, nvcc_threads=4, gencode_targets=1)
    assert two.memory_budget_mib * 2 == one.memory_budget_mib == idle.memory_budget_mib


def test_tiny_machine_still_gets_a_job_and_a_budget():
    plan = jobs.plan(cores=1, memory=2 * GIB, nvcc_threads=2, gencode_targets=2)
    assert plan.ninja_jobs == 1 and plan.max_jobs == 2 and plan.memory_budget_mib > 0


def test_requested_value_wins_and_memory_is_still_admitted():
    plan = jobs.plan(cores=64, memory=512 * GIB, nvcc_threads=2, gencode_targets=1, requested=3)
    assert (plan.max_jobs, plan.ninja_jobs) == (3, 1)
    assert plan.reason.startswith("requested; each compile admitted by its expected peak")
    assert plan.memory_budget_mib == 508 * 1024


# --- the admission policy, replayed ------------------------------------------------------------


def test_simulate_runs_light_units_beside_a_heavy_one_within_the_budget():
    units = [(10.0, 100.0)] + [(2.0, 10.0)] * 10
    sim = jobs.simulate(units, jobs=16, budget_gib=16.0)
    # the heavy unit (10 GiB) and three light ones (2 each) at once: 16 GiB, never more
    assert sim.peak_gib == 16.0
    assert sim.seconds == 100.0  # the ten light units (40 s of three lanes) fit beside it


def test_simulate_runs_a_unit_above_the_budget_alone_and_finishes():
    sim = jobs.simulate([(2.0, 10.0), (40.0, 50.0), (2.0, 10.0)], jobs=4, budget_gib=8.0)
    assert sim.peak_gib == 40.0 and sim.seconds == 60.0


def test_simulate_is_bounded_by_the_job_slots():
    sim = jobs.simulate([(1.0, 10.0)] * 8, jobs=2, budget_gib=100.0)
    assert sim.seconds == 40.0 and sim.busy == 1.0


def test_the_report_covers_three_machines_and_names_every_figure_source():
    here = jobs.plan(cores=2, memory=24 * GIB, nvcc_threads=1, gencode_targets=1)
    lines = jobs.report(here)
    kinds = jobs.unit_kinds()
    assert all(k.source.split(":")[0] in ("measured", "estimate") for k in kinds)
    for label in ("16 cores, 32 GB", "24 cores, 64 GB", "this machine (2 jobs)"):
        stages = [line for line in lines if line.strip().startswith(label)]
        assert len(stages) == 2, label  # vLLM's stage, then FlashInfer's
        assert all("expected peak" in line and " min," in line for line in stages)


def test_every_rule_of_the_table_is_reachable():
    """A pattern shadowed by an earlier one would never be used by the launcher: one real path
    per rule (the paths as the compile stages see them), each first matched by its own rule."""
    samples = {
        "flashinfer-fp4-gemm-sm120": "/src/flashinfer/build/aot/generated/fp4_gemm_cutlass_sm120/fp4_gemm_cutlass_sm120.cu",
        "flashinfer-moe-cutlass-instantiations": "/src/flashinfer/build/aot/generated/cutlass_instantiations/120/gemm_grouped/moe_sm120_0.cu",
        "flashinfer-moe-gemm-kernels": "/src/flashinfer/csrc/nv_internal/tensorrt_llm/kernels/cutlass_kernels/moe_gemm/moe_gemm_kernels_fp8_uint4.cu",
        "flashinfer-gemm-sm120": "/src/flashinfer/build/aot/generated/gen_gemm_sm120/gemm_groupwise_e4m3_f16_majortrue_sm120.cu",
        "flashinfer-aot": "/src/flashinfer/build/aot/generated/page/page.cu",
        "cutlass-sm120-fp8-gemm": "/src/vllm/csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm120_fp8.cu",
        "cutlass-sm120-nvfp4-gemm": "/src/vllm/csrc/quantization/fp4/nvfp4_scaled_mm_sm120_kernels.cu",
        "cutlass-sm120-blockwise-fp8-gemm": "/src/vllm/csrc/quantization/w8a8/cutlass/c3x/scaled_mm_blockwise_sm120_fp8.cu",
        "cutlass-nvfp4-blockwise-moe": "/src/vllm/csrc/quantization/fp4/nvfp4_blockwise_moe_kernel.cu",
        "cutlass-sm120-c3x-dispatch": "/src/vllm/csrc/quantization/w8a8/cutlass/scaled_mm_c3x_sm120.cu",
        "cutlass-sm120-other": "/src/vllm/csrc/moe/grouped_mm_c3x_sm120.cu",
        "flash-attention-3": "/src/deps/vllm-flash-attn/hopper/instantiations/flash_fwd_hdim64_bf16_sm90.cu",
        "flash-attention-2": "/src/deps/vllm-flash-attn/csrc/flash_attn/src/flash_fwd_hdim64_fp16_sm80.cu",
        "marlin-generated": "/src/vllm/csrc/quantization/marlin/sm80_kernel_float16_u4.cu",
        "paged-attention": "/src/vllm/csrc/attention/paged_attention_v2.cu",
        "vllm-other": "/src/vllm/csrc/layernorm_kernels.cu",
        "cutlass-mla-sm120": "/src/vllm/csrc/attention/mla/sm100_cutlass_mla_kernel.cu",
        "qutlass-gemm": "/src/deps/qutlass/qutlass/csrc/gemm.cu",
        "cutlass-c2x": "/src/vllm/csrc/quantization/w8a8/cutlass/scaled_mm_c2x.cu",
        "vllm-cpp": "/src/vllm/csrc/torch_bindings.cpp",
    }  # fmt: skip
    kinds = jobs.unit_kinds()
    assert set(samples) == {k.name for k in kinds}, "a rule without a sample path here"
    for name, path in samples.items():
        first = next(k for k in kinds if fnmatch.fnmatch(path, k.pattern))
        assert first.name == name, (name, first.name)


def _machine(tmp_path, memory_max: str):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65536000 kB\n")
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(memory_max)
    return meminfo, cgroup


def test_cgroup_limit_lowers_memory(tmp_path):
    assert jobs.memory_bytes(*_machine(tmp_path, str(8 * GIB))) == 8 * GIB


def test_a_cgroup_without_a_limit_leaves_the_machines_memory(tmp_path):
    assert jobs.memory_bytes(*_machine(tmp_path, "max")) == 65536000 * 1024


def _cgroup_tree(tmp_path, proc_lines: str, files: dict[str, str]):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_lines)
    return root, proc


def test_cgroup_v2_cpu_max_limits_the_cores(tmp_path):
    root, proc = _cgroup_tree(
        tmp_path, "0::/user.slice/build\n", {"user.slice/build/cpu.max": "150000 100000\n"}
    )
    assert jobs.cpu_quota(root, proc) == 2  # 1.5 CPUs: two compile jobs share them
    root, proc = _cgroup_tree(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000\n"})
    assert jobs.cpu_quota(root, proc) is None


def test_cgroup_v1_cfs_quota_limits_the_cores_as_docker_cpus_sets_it(tmp_path):
    files = {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    root, proc = _cgroup_tree(tmp_path, "4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n", files)
    assert jobs.cpu_quota(root, proc) == 1
    unlimited = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    root, proc = _cgroup_tree(tmp_path / "u", "4:cpu:/\n", unlimited)
    assert jobs.cpu_quota(root, proc) is None


def test_plan_here_counts_the_quota_not_the_online_cpus(monkeypatch):
    monkeypatch.setattr(jobs.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(jobs, "cpu_quota", lambda *a: 2)
    monkeypatch.setattr(jobs, "memory_bytes", lambda *a: 128 * GIB)
    plan = jobs.plan_here(nvcc_threads=1, gencode_targets=1, requested=None)
    assert plan.ninja_jobs == 2
    assert "2 cores (cgroup CPU quota; 16 online)" in plan.reason


def test_a_memory_limit_on_the_process_own_cgroup_counts(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65536000 kB\n")
    root, proc = _cgroup_tree(
        tmp_path,
        "1:memory:/process_api/x\n",
        {"memory/process_api/x/memory.limit_in_bytes": str(6 * GIB)},
    )
    assert jobs.memory_bytes(meminfo, root, proc) == 6 * GIB
