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


def test_a_requested_max_jobs_over_the_memory_guard_is_kept_but_said():
    plan = jobs.plan(cores=2, memory=24 * GIB, nvcc_threads=1, gencode_targets=1, requested=99999)
    assert plan.max_jobs == 99999
    assert plan.reason.startswith("requested, OVER the memory guard: 99999 compile job(s) x 5 GiB")
    assert "(auto would give 2)" in plan.reason
    fine = jobs.plan(cores=2, memory=24 * GIB, nvcc_threads=1, gencode_targets=1, requested=2)
    assert fine.reason == "requested"


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
