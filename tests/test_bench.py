"""bench's pure parts: reading `du`, and the compile derivation it prints (no engine)."""

from __future__ import annotations

from vllm_forge import bench, jobs


def test_du_lines_become_names_and_bytes_and_noise_is_skipped():
    text = "1048576\tnvidia\n524288\ttorch\nsh: warning\n2000000\tall of site-packages\n"
    assert bench.parse_du(text) == [
        ("nvidia", 1024**3),
        ("torch", 512 * 1024**2),
        ("all of site-packages", 2000000 * 1024),
    ]


def test_the_compile_derivation_adds_the_stages_of_the_table():
    kinds = [
        jobs.UnitKind(name="a", pattern="*", gib=2.0, seconds=60, count=32, source="measured: x",
                      stage="vllm"),
        jobs.UnitKind(name="b", pattern="*", gib=1.0, seconds=30, count=64, source="estimate: y",
                      stage="flashinfer"),
    ]  # fmt: skip
    c = bench.desktop_compile(kinds)
    assert c["machine"] == "16 cores, 32 GB" and c["budget_gib"] == 28
    # 32 units of 2 GiB: 14 fit in 28 GiB at once -> 3 rounds of 60 s
    assert c["stages"]["vllm"] == {
        "units": 32, "units_of_measured_kinds": 32, "serial_s": 1920, "seconds": 180.0,
        "peak_gib": 28.0,
    }  # fmt: skip
    # 64 units of 1 GiB: 16 cores bound them -> 4 rounds of 30 s
    assert c["stages"]["flashinfer"]["seconds"] == 120.0
    lines = bench.describe_compile(c)
    assert lines[-1].startswith("    compiling, one stage after the other: ~5 min")
