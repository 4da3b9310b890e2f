"""Pruning by architecture: which entries an arch list leaves dead, the table's rules, and the
runtime stage's prune step run by a real engine (an arch list with 10.0 keeps the sm100 cubins)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from conftest import engine_or_skip

from vllm_forge import pins, prune, render
from vllm_forge.cuda_arch import parse_arch_list
from vllm_forge.engines import BuildRequest
from vllm_forge.errors import ConfigError
from vllm_forge.project import Project

ROOT = Path(__file__).resolve().parents[1]
PROJECT = Project.at(ROOT / "versions.toml")
SITE = "/opt/venv/lib/python3.11/site-packages"
BASE = "localhost/vllm-forge/debian:bookworm"
ARCHLESS = {"cuda-bindings-cython-sources", "triton-cupti-static-archives"}
EVERY = {e.name for e in prune.packaged()}


def names(arch_list: str) -> set[str]:
    return {e.name for e in prune.select(parse_arch_list(arch_list))}


# --- selection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch_list", ["12.0", "12.0a", "12.0f", "12.1", "12.0 12.1a"])
def test_an_sm12x_arch_list_prunes_every_entry(arch_list):
    assert names(arch_list) == EVERY


def test_an_arch_list_with_10_0_keeps_what_10_x_loads():
    pruned = names("10.0a 12.0")
    assert "flashinfer-cubins-sm100" not in pruned  # sm100f/sm100a cubins run there
    assert "vllm-flashmla" not in pruned and "vllm-fa4-cute" not in pruned
    assert pruned == {"vllm-fa3-sm90", "triton-ptxas-pre-sm100"} | ARCHLESS
    assert "flashinfer-cubins-sm100" not in names("10.3a")  # sm_103a cubins, sm_100f family


def test_hopper_keeps_fa3_flashmla_fa4_and_the_old_ptxas():
    assert names("9.0a") == {"flashinfer-cubins-sm100"} | ARCHLESS
    assert names("8.6") == EVERY - {"triton-ptxas-pre-sm100"}  # Triton's ptxas serves 8.x


def test_ptx_serves_every_newer_gpu_so_it_keeps_every_gpu_entry():
    assert names("8.9+PTX") == ARCHLESS
    # arch-specific PTX is tied to its own GPU: it does not reach 10.0
    assert "flashinfer-cubins-sm100" in names("9.0a+PTX")


@pytest.mark.parametrize(
    ("arch", "serves", "does_not_serve"),
    [
        ("12.0", [(12, 0), (12, 1)], [(11, 0), (13, 0), (10, 0)]),  # SASS runs on later minors
        ("12.0a", [(12, 0)], [(12, 1)]),  # arch-specific: its own GPU only
        ("10.0f", [(10, 0), (10, 3)], [(11, 0), (12, 0)]),  # family: 10.x
        ("8.0+PTX", [(8, 0), (8, 6), (9, 0), (12, 0)], [(7, 5)]),  # PTX: every newer GPU
        ("9.0a+PTX", [(9, 0)], [(10, 0), (12, 0)]),  # arch-specific PTX is not forward
        ("10.0f+PTX", [(10, 0), (10, 3)], [(11, 0), (12, 0)]),  # nor is family PTX
    ],
)
def test_which_gpus_an_arch_serves(arch, serves, does_not_serve):
    gpus = prune.devices(parse_arch_list(arch))
    assert all(g in gpus for g in serves) and not any(g in gpus for g in does_not_serve)


def test_entries_without_arches_are_pruned_for_every_list_and_have_no_probe():
    for entry in prune.packaged():
        assert (entry.name in ARCHLESS) == (entry.arches == ())
        assert bool(entry.probe) == bool(entry.arches)
        assert entry.probe in (*prune.PROBES, "")
    for arch_list in ("5.0+PTX", "12.0", "9.0a 10.0a 12.0"):
        assert names(arch_list) >= ARCHLESS


def test_targets_and_controls_are_the_gpus_verify_asks_about():
    assert prune.targets(parse_arch_list("12.0 12.0a+PTX 10.0f")) == ((12, 0), (10, 0))
    controls = {e.name: e.control for e in prune.packaged()}
    assert controls["flashinfer-cubins-sm100"] == (10, 0)
    assert controls["vllm-fa3-sm90"] == (9, 0)
    assert controls["cuda-bindings-cython-sources"] is None


# --- the table ---------------------------------------------------------------------------------

GOOD = """
[[entry]]
name = "x"
paths = ["pkg/sub/*.cubin"]
arches = ["10.0a"]
probe = "fa3"
imports = ["pkg"]
reason = "r"
absent = "a"
evidence = ["pkg/mod.py: f"]
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"pkg/sub/*.cubin"', '"pkg-1.0.dist-info/RECORD"'), "package metadata"),
        (('"pkg/sub/*.cubin"', '"*/sub/*.cubin"'), "package metadata"),
        (('"pkg/sub/*.cubin"', '"/opt/venv/x"'), "relative to site-packages"),
        (('"pkg/sub/*.cubin"', '"pkg/../etc"'), "without `..`"),
        (('"pkg/sub/*.cubin"', '"pkg/$(reboot)"'), "only letters"),
        (('probe = "fa3"', 'probe = "guess"'), "not one verify knows"),
        (('arches = ["10.0a"]', "arches = []"), 'takes probe = ""'),
        (('arches = ["10.0a"]', 'arches = ["sm_100"]'), "accepted forms"),
        (('name = "x"', 'name = "X Y"'), "lower-case"),
        (('reason = "r"', 'reason = "r"\nextra = 1'), "unknown key(s) extra"),
        (('evidence = ["pkg/mod.py: f"]', "evidence = []"), "`evidence` is empty"),
    ],
)
def test_a_bad_entry_is_one_error_naming_the_entry_and_key(change, message):
    with pytest.raises(ConfigError, match="prune.toml entry") as err:
        prune.load_table(GOOD.replace(*change))
    assert message in str(err.value)


def test_entry_names_are_unique():
    with pytest.raises(ConfigError, match="unique, found x twice"):
        prune.load_table(GOOD + GOOD)


def test_the_packaged_table_names_evidence_and_keeps_package_metadata():
    for entry in prune.packaged():
        assert entry.evidence and entry.reason and entry.absent and entry.imports
        assert not any("dist-info" in p for p in entry.paths)
    cubins = next(e for e in prune.packaged() if e.name == "flashinfer-cubins-sm100")
    assert cubins.paths == ("flashinfer_cubin/cubins/*.cubin",)  # headers, checksums.txt stay


def test_find_starts_at_the_literal_folders_of_a_pattern():
    assert prune.find_args("flashinfer_cubin/cubins/*.cubin") == (
        "flashinfer_cubin/cubins",
        "flashinfer_cubin/cubins/*.cubin",
    )
    assert prune.find_args("vllm/_flashmla_C.abi3.so") == ("vllm/_flashmla_C.abi3.so",) * 2


def test_prune_lines_are_read_from_buildkit_and_podman_output():
    lines = [
        "#16 212.4 vllm-forge-prune flashinfer-cubins-sm100 1104639896",
        "vllm-forge-prune vllm-fa3-sm90 146709536\n",
        "#16 212.4 echo vllm-forge-prune $name $total",  # the command, not a result
        "vllm-forge-ccache vllm cache_miss 3",
    ]
    assert prune.parse_lines(lines) == {
        "flashinfer-cubins-sm100": 1104639896,
        "vllm-fa3-sm90": 146709536,
    }
    assert prune.describe_pruned({"a": 2_000_000_000, "b": 5_000_000}).startswith(
        "2.00 GB in 2 entries (a 2000.0 MB, b 5.0 MB)"
    )


# --- the template ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["debian-pypi", "rtx5090"])
def test_pruning_runs_in_the_layer_that_installs_the_venv_before_pip_check(profile):
    doc = pins.read_document(ROOT / "versions.toml")
    resolved = pins.resolve(doc, profile)
    text = render.render_dockerfile(
        resolved, PROJECT.templates, render.source_pins_for(resolved, PROJECT)
    )
    runtime = text[text.index("AS runtime") :]
    install = runtime.index("pip install --no-deps --no-compile /wheels/*.whl")
    check = runtime.index("/opt/venv/bin/pip check")
    step = runtime[install:check]
    assert "\nRUN " not in step  # one layer: the deleted bytes never reach the image
    for entry in prune.packaged():  # 12.0 in both profiles: every entry goes
        assert f"&& prune {entry.name} " in step
    assert '"flashinfer_cubin/cubins/*.cubin"' in step


def test_an_arch_list_override_reaches_the_prune_step():
    doc = pins.read_document(ROOT / "versions.toml")
    resolved = pins.resolve(doc, "debian-pypi", {"build": {"torch_cuda_arch_list": "10.0a 12.0"}})
    text = render.render_dockerfile(resolved, PROJECT.templates)
    assert "&& prune vllm-fa3-sm90 " in text
    assert "flashinfer-cubins-sm100" not in text


# --- the prune step in a real engine -----------------------------------------------------------

# A site-packages with a few files at the real paths: what each entry names, and what must stay.
FAKE_TREE = {
    "flashinfer_cubin/__init__.py": 40,
    "flashinfer_cubin/cubins/f1ed/fmha/trtllm-gen/FmhaSm100fKernel_QkvBfloat16.cubin": 3000,
    "flashinfer_cubin/cubins/f1ed/fmha/trtllm-gen/FmhaSm103aKernel_QkvE4m3.cubin": 2000,
    "flashinfer_cubin/cubins/a72d/deep-gemm/kernel.fp8_m_grouped_gemm.0074.cubin": 1000,
    "flashinfer_cubin/cubins/f1ed/fmha/trtllm-gen/checksums.txt": 10,
    "flashinfer_cubin/cubins/f1ed/fmha/trtllm-gen/include/flashInferMetaInfo.h": 20,
    "flashinfer_cubin-0.6.6.dist-info/RECORD": 30,
    "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so": 700,
    "vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so": 500,
    "vllm/vllm_flash_attn/cute/interface.py": 60,
    "vllm/_flashmla_C.abi3.so": 300,
    "vllm/_flashmla_extension_C.abi3.so": 30,
    "triton/backends/nvidia/bin/ptxas": 400,
    "triton/backends/nvidia/bin/ptxas-blackwell": 450,
    "triton/backends/nvidia/lib/cupti/libcupti_static.a": 200,
    "triton/backends/nvidia/lib/cupti/libcupti.so": 70,
    "cuda/bindings/driver.cpp": 100,
    "cuda/bindings/_bindings/cydriver.cpp": 50,
    "cuda/bindings/driver.cpython-311-x86_64-linux-gnu.so": 80,
}


def _prune_dockerfile() -> str:
    """Two stages over one fake site-packages, each pruned by the template's own prune step
    (the `prune_venv` macro), one for 12.0 and one for 10.0a + 12.0."""
    resolved = pins.load(ROOT / "versions.toml", "debian-pypi")
    template = render._environment(PROJECT.templates).get_template(render.TEMPLATE)
    macros = template.make_module(render.template_context(resolved))
    record_dir = prune.RECORD.rpartition("/")[0]
    make = " && ".join(
        f"mkdir -p {SITE}/{Path(p).parent} && head -c {n} /dev/zero > {SITE}/{p}"
        for p, n in FAKE_TREE.items()
    )
    lines = [f"FROM {BASE} AS fake", f"RUN {make}"]
    for stage, arch_list in (("sm120", "12.0"), ("sm100", "10.0a 12.0")):
        entries = prune.template_values(parse_arch_list(arch_list))
        step = macros.prune_venv(SITE, prune.RECORD, record_dir, entries)
        lines += [f"FROM fake AS {stage}", f"RUN {step}"]
    return "\n".join(lines) + "\n"


def _files(engine, tag: str) -> set[str]:
    argv = engine.run_argv(tag, ["-c", f"cd {SITE} && find . -type f"], entrypoint="sh")
    return {line.removeprefix("./") for line in engine.run(argv).stdout.split()}


@pytest.mark.engine
def test_the_prune_step_keeps_the_sm100_cubins_for_an_arch_list_with_10_0(tmp_path):
    engine = engine_or_skip("docker")
    if not engine.image_exists(BASE):
        pytest.skip(f"{BASE} is not in docker: make it with `nox -s base -- --profile debian-pypi`")
    (tmp_path / "Dockerfile").write_text(_prune_dockerfile())
    start, found, printed = time.monotonic(), {}, {}
    try:
        for stage in ("sm120", "sm100"):
            tag = f"localhost/vllm-forge-test/prune-{stage}"
            request = BuildRequest(
                context=tmp_path, dockerfile=tmp_path / "Dockerfile", tag=tag, target=stage,
                no_cache=True,
            )  # fmt: skip
            build = engine.run(engine.build_argv(request))
            printed[stage] = prune.parse_lines((build.stdout + build.stderr).splitlines())
            found[stage] = _files(engine, tag)
            record = engine.run(engine.run_argv(tag, [prune.RECORD], entrypoint="cat")).stdout
            assert prune.parse_lines(record.splitlines()) == printed[stage]
    finally:
        for stage in ("sm120", "sm100"):
            engine.remove_image(f"localhost/vllm-forge-test/prune-{stage}")
    cubins = {p for p in FAKE_TREE if p.endswith(".cubin")}
    assert not cubins & found["sm120"]
    assert cubins <= found["sm100"]  # 10.0a in the list: every sm100/sm103 cubin stays
    for stage in ("sm120", "sm100"):  # never pruned: metadata, headers, what 12.x loads
        assert {
            "flashinfer_cubin-0.6.6.dist-info/RECORD",
            "flashinfer_cubin/cubins/f1ed/fmha/trtllm-gen/checksums.txt",
            "flashinfer_cubin/cubins/f1ed/fmha/trtllm-gen/include/flashInferMetaInfo.h",
            "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so",
            "triton/backends/nvidia/bin/ptxas-blackwell",
            "triton/backends/nvidia/lib/cupti/libcupti.so",
            "cuda/bindings/driver.cpython-311-x86_64-linux-gnu.so",
        } <= found[stage]
        assert "vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so" not in found[stage]
        assert "cuda/bindings/driver.cpp" not in found[stage]
    assert "vllm/_flashmla_C.abi3.so" in found["sm100"] - found["sm120"]
    # the bytes each entry reports are the bytes its files held
    assert printed["sm120"]["flashinfer-cubins-sm100"] == 6000
    assert printed["sm120"]["vllm-flashmla"] == 330
    assert printed["sm120"]["cuda-bindings-cython-sources"] == 150
    assert printed["sm120"]["vllm-fa4-cute"] == 60  # a folder: its files' bytes, not its inodes
    assert "flashinfer-cubins-sm100" not in printed["sm100"]
    assert printed["sm100"]["vllm-fa3-sm90"] == 500
    print(f"prune step: two builds and checks in {time.monotonic() - start:.1f} s")


def test_entry_is_frozen_data():
    entry = prune.packaged()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "other"  # type: ignore[misc]


def test_an_entry_that_pruned_nothing_is_named():
    """An upgrade that renames a pruned file leaves the build green but bigger: verify warns."""
    from vllm_forge.verify import expect

    record = {"flashinfer-cubins-sm100": 1104639896, "vllm-fa3-sm90": 0}
    assert expect.prune_matched_nothing(record) == ["vllm-fa3-sm90"]
    assert expect.prune_matched_nothing({"x": 1}) == []
