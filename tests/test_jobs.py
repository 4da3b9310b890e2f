from vllm_forge import jobs

GIB = jobs.GIB


def test_32_gib_desktop_with_16_cores_is_limited_by_memory_not_cores():
    plan = jobs.plan(cores=16, memory=32 * GIB, nvcc_threads=1, gencode_targets=1)
    # (32 - 4) // 5 = 5 concurrent nvcc compiles, not 16.
    assert plan.ninja_jobs == 5 and plan.max_jobs == 5
    assert "limited by memory" in plan.reason


def test_big_machine_is_limited_by_cores():
    plan = jobs.plan(cores=8, memory=256 * GIB, nvcc_threads=1, gencode_targets=1)
    assert plan.ninja_jobs == 8 and "limited by cores" in plan.reason


def test_more_than_one_compile_job_runs_with_nvcc_threads():
    # setup.py runs MAX_JOBS // NVCC_THREADS ninja jobs: MAX_JOBS must be scaled up with the threads.
    plan = jobs.plan(cores=16, memory=128 * GIB, nvcc_threads=2, gencode_targets=2)
    assert plan.max_jobs // plan.nvcc_threads == plan.ninja_jobs > 1


def test_threads_beyond_the_gencode_targets_cost_no_memory():
    one = jobs.plan(cores=32, memory=64 * GIB, nvcc_threads=1, gencode_targets=1)
    four = jobs.plan(cores=32, memory=64 * GIB, nvcc_threads=4, gencode_targets=1)
    assert one.ninja_jobs == four.ninja_jobs


def test_tiny_machine_still_gets_one_job():
    plan = jobs.plan(cores=1, memory=2 * GIB, nvcc_threads=2, gencode_targets=2)
    assert plan.ninja_jobs == 1 and plan.max_jobs == 2


def test_requested_value_wins():
    plan = jobs.plan(cores=64, memory=512 * GIB, nvcc_threads=2, gencode_targets=1, requested=3)
    assert (plan.max_jobs, plan.ninja_jobs, plan.reason) == (3, 1, "requested")


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
