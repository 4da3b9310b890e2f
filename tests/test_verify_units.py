"""vllm_forge.verify's pure parts: layer scanning over in-memory tars, custom-CA extraction,
expectations (versions, labels, arches) and report rendering. No engine, no network."""

from __future__ import annotations

import gzip
import io
import json
import os
import py_compile
import ssl
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from vllm_forge import cli, pins
from vllm_forge.verify import expect, leaks, scripts
from vllm_forge.verify.report import FAIL, PASS, SKIP, CheckResult, Report, table, write

TOKEN = b"forge-fake-token-0123456789abcdef"


def _pem(der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(der).encode()


PUBLIC = [bytes([i]) * 300 for i in range(1, 4)]  # stand-ins: the parser only decodes base64
CORP = b"\x30\x82" + bytes(range(256)) * 3


def _tar(files: dict[str, bytes], fmt=tarfile.USTAR_FORMAT, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if gz else buf.getvalue()


def _archive(layers: list[bytes], config: bytes = b"{}") -> io.BytesIO:
    """An `engine save`-shaped archive: manifest, config, one tar per layer."""
    files = {f"layer{i}/layer.tar": layer for i, layer in enumerate(layers)}
    files["config.json"] = config
    files["manifest.json"] = json.dumps([{"Layers": list(files)}]).encode()
    return io.BytesIO(_tar(files))


def test_custom_cas_are_host_certificates_the_image_bundle_lacks():
    host = b"".join(_pem(d) for d in [*PUBLIC, CORP, CORP])
    image = b"".join(_pem(d) for d in PUBLIC)
    assert leaks.custom_cas(host, image) == [CORP]  # once, though listed twice
    assert leaks.custom_cas(host, image, _pem(CORP)) == []  # a public bundle holds it
    assert leaks.custom_cas(image, image) == []
    assert leaks.pem_certificates(b"junk\n" + _pem(CORP) + b"trailing") == [CORP]


def test_a_secret_deleted_in_a_later_layer_is_still_found_in_its_layer():
    needle = leaks.text_needle("token", TOKEN + b"\n")
    archive = _archive([_tar({"root/.token": b"x" + TOKEN}), _tar({"root/.wh..token": b""})])
    hits, layers = leaks.scan_image_archive(archive, [needle])
    assert layers == 2
    assert hits == [leaks.Hit("token", "layer0/layer.tar", "root/.token")]


def test_a_ca_is_found_as_pem_in_a_bundle_and_as_der_in_a_gzip_layer():
    needle = leaks.ca_needle(CORP)
    bundle = b"".join(_pem(d) for d in PUBLIC) + _pem(CORP)
    archive = _archive(
        [
            _tar({"etc/ssl/certs/ca-certificates.crt": bundle}),
            _tar({"opt/corp.der": b"\0" * 100 + CORP}, gz=True),
            _tar({"etc/other.pem": _pem(PUBLIC[0])}),
        ]
    )
    hits, layers = leaks.scan_image_archive(archive, [needle])
    assert layers == 3
    assert [(h.layer, h.path) for h in hits] == [
        ("layer0/layer.tar", "etc/ssl/certs/ca-certificates.crt"),
        ("layer1/layer.tar", "opt/corp.der"),
    ]
    assert hits[0].needle == f"custom CA {leaks.fingerprint(CORP)}"


def test_a_needle_split_across_read_chunks_is_found(monkeypatch):
    monkeypatch.setattr(leaks, "_CHUNK", 16)
    data = b"a" * 10 + TOKEN + b"b" * 50
    hits, _ = leaks.scan_image_archive(
        _archive([_tar({"f": data})]), [leaks.text_needle("t", TOKEN)]
    )
    assert [h.path for h in hits] == ["f"]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_paths_are_reported_whole(fmt):
    path = "opt/venv/" + "deep/" * 40 + "secret.txt"
    layer = _tar({"short": b"nothing", path: TOKEN, "after": b"nothing"}, fmt=fmt)
    hits, _ = leaks.scan_image_archive(_archive([layer]), [leaks.text_needle("t", TOKEN)])
    assert [h.path for h in hits] == [path]


def test_the_image_config_is_searched_too():
    archive = _archive([_tar({"f": b"clean"})], config=b'{"Env": ["TOKEN=' + TOKEN + b'"]}')
    hits, _ = leaks.scan_image_archive(archive, [leaks.text_needle("t", TOKEN)])
    assert [(h.layer, h.path) for h in hits] == [("(image metadata)", "config.json")]


def test_a_clean_image_has_no_hits_and_short_needles_are_refused():
    hits, layers = leaks.scan_image_archive(
        _archive([_tar({"a": b"hello"})]), [leaks.ca_needle(CORP)]
    )
    assert (hits, layers) == ([], 1)
    with pytest.raises(ValueError, match="at least 8 bytes"):
        leaks.text_needle("short", b" abc \n")


# --- expectations -----------------------------------------------------------------------------


PINS_FILE = Path(__file__).resolve().parents[1] / "versions.toml"


def _pins() -> pins.Pins:
    return pins.load(PINS_FILE, "debian-pypi")


METADATA = """\
Name: vllm
Version: 0.0.1
Name: torch
Version: 2.10.0+cu128
Name: Flashinfer_Python
Version: 0.6.6
Name: flashinfer-cubin
Version: 0.6.5
"""


def test_versions_name_each_wrong_or_missing_pin_and_accept_local_labels():
    found = expect.parse_metadata_headers(METADATA)
    assert found["flashinfer-python"] == "0.6.6"
    problems = expect.version_problems(expect.expected_versions(_pins()), found)
    text = "\n".join(problems)
    assert "vllm: expected 0.19.1, found 0.0.1" in text
    assert "torch:" not in text  # 2.10.0+cu128 is the pin 2.10.0
    assert "torchvision: expected 0.25.0, found not installed" in text
    assert "flashinfer-cubin: expected 0.6.6, found 0.6.5" in text
    (disagree,) = expect.flashinfer_agreement(found)
    assert "flashinfer-cubin==0.6.5, flashinfer-python==0.6.6" in disagree


def test_torch_cuda_is_read_from_version_py():
    assert (
        expect.parse_torch_cuda("__version__ = '2.10.0'\ncuda: Optional[str] = '12.8'\n") == "12.8"
    )
    assert expect.parse_torch_cuda("cuda: Optional[str] = None\n") is None
    assert expect.cuda_problems("12.8", "12.8") == []
    assert "expected 12.8, found a CPU-only torch" in expect.cuda_problems(None, "12.8")[0]


def test_labels_must_equal_the_pins_and_carry_a_revision():
    wanted = _pins().labels()
    assert (
        expect.label_problems(wanted, {**wanted, "org.opencontainers.image.revision": "ab12"}) == []
    )
    problems = expect.label_problems(
        wanted, {**wanted, "io.github.vllm-forge.torch": "2.9.0"} | {"extra": "ignored"}
    )
    assert "label io.github.vllm-forge.torch: expected '2.10.0', found '2.9.0'" in problems
    assert any("revision: expected the source commit, found 'no such label'" in p for p in problems)
    unknown = {**wanted, "org.opencontainers.image.revision": "unknown"}
    assert any("found 'unknown'" in p for p in expect.label_problems(wanted, unknown))


def test_a_dropped_label_is_named_though_another_label_has_the_same_value():
    """torch and torchaudio are both 2.10.0: a comparison of values would miss this."""
    wanted = _pins().labels()
    assert wanted["io.github.vllm-forge.torch"] == wanted["io.github.vllm-forge.torchaudio"]
    found = {**wanted, "org.opencontainers.image.revision": "ab12"}
    del found["io.github.vllm-forge.torchaudio"]
    found["io.github.vllm-forge.torchvision"] = wanted["io.github.vllm-forge.torch"]
    problems = expect.label_problems(wanted, found)
    assert problems[:2] == [
        "label io.github.vllm-forge.torchaudio: expected '2.10.0', found no such label",
        "label io.github.vllm-forge.torchvision: expected '0.25.0', found '2.10.0'",
    ]
    assert len(problems) == 3 and problems[2].startswith("the image was not built from these")


def test_only_hopper_only_libraries_are_exempt_from_the_arch_list():
    assert expect.arch_exemption("vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so")
    assert expect.arch_exemption("vllm/_flashmla_C.abi3.so")
    assert expect.arch_exemption("vllm/_C.abi3.so") is None
    assert expect.arch_exemption("vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so") is None


def test_torch_arch_list_must_name_the_gpu():
    assert expect.gpu_arch_problems([(12, 0)], ["sm_90", "sm_120"]) == []
    assert expect.gpu_arch_problems([(12, 0)], ["sm_120a"]) == []
    (problem,) = expect.gpu_arch_problems([(12, 0)], ["sm_90", "sm_100"])
    assert "expected sm_120 in torch.cuda.get_arch_list()" in problem


# --- report and command line ------------------------------------------------------------------


def test_report_table_json_and_text(tmp_path):
    report = Report(
        image="localhost/x:y",
        engine="docker 20.10",
        profile="debian-pypi",
        seconds=3,
        checks=[
            CheckResult("pins_versions", "1 pins", PASS, seconds=0.5),
            CheckResult(
                "arch_coverage",
                "2 arch",
                FAIL,
                "vllm/_C.abi3.so: no SASS for sm_120\nsecond line",
                numbers={"table": "  file  SASS"},
            ),
            CheckResult("gpu_probe_ok", "6 gpu", SKIP, "no GPU visible here"),
            CheckResult("size_within_budget", "5 size", PASS, warnings=["close to budget"]),
        ],
    )
    assert not report.ok and report.counts() == {PASS: 2, FAIL: 1, SKIP: 1}
    lines = table(report).splitlines()
    assert lines[0].split()[:4] == ["group", "check", "result", "time"]
    assert lines[2].split()[:5] == ["2", "arch", "arch_coverage", "FAIL", "0.0s"]
    assert "no SASS for sm_120" in lines[2] and "second line" not in lines[2]
    assert "warning: close to budget" in lines[4]
    assert lines[-1].startswith("2 passed, 1 failed, 1 skipped")
    as_json, as_text = write(report, tmp_path, "t")
    data = json.loads(as_json.read_text())
    assert data["ok"] is False and data["checks"][1]["outcome"] == "fail"
    assert "FAIL arch_coverage:\n  vllm/_C.abi3.so: no SASS for sm_120\n  second line" in (
        as_text.read_text()
    )


def test_bad_input_is_one_line_and_exit_2_without_traceback(capsys):
    assert cli.main(["verify", "--pins", str(PINS_FILE), "--profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vllm-forge: error: unknown profile 'nope'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["verify", "--pins", str(PINS_FILE), "--model", "x"]) == 2
    assert "--model-dir and --model go together" in capsys.readouterr().err


def test_plain_ptx_of_an_older_arch_serves_a_newer_gpu_by_jit_but_arch_specific_ptx_does_not():
    assert expect.ptx_serves(frozenset({"compute_80"}), frozenset({"sm_120"}))
    assert not expect.ptx_serves(frozenset({"compute_90a"}), frozenset({"sm_120"}))
    assert not expect.ptx_serves(frozenset(), frozenset({"sm_120"}))
    assert not expect.ptx_serves(frozenset({"compute_120"}), frozenset({"sm_90"}))


def test_a_pax_size_record_overrides_the_header_size(monkeypatch):
    """Go's archive/tar (docker save) gives members over 8 GiB their size in a pax record."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big/layer.tar")
        info.size = 1024
        info.pax_headers = {"size": "1024"}
        tar.addfile(info, io.BytesIO(b"z" * 1024))
        tail = tarfile.TarInfo("after")
        tail.size = len(TOKEN)
        tar.addfile(tail, io.BytesIO(TOKEN))
    raw = bytearray(buf.getvalue())
    first = raw.index(b"big/layer.tar", 512)  # the member's own ustar header, after the pax one
    raw[first + 124 : first + 136] = b"00000000000\0"  # as if the size did not fit
    members = [(name, body.read()) for name, _, body in leaks.iter_tar(io.BytesIO(bytes(raw)))]
    assert [(n, len(d)) for n, d in members] == [("big/layer.tar", 1024), ("after", len(TOKEN))]


def _pyc_flags(root) -> tuple[dict[int, int], dict[int, list[str]]]:
    """Run the check's own script (as verify does inside the image) over `root`."""
    out = subprocess.run(
        [sys.executable, "-S", "-c", scripts.PYC_FLAGS, str(root)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return expect.parse_pyc_flags(out)


def test_bytecode_written_by_an_import_is_timestamp_based_and_named(tmp_path):
    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    for name in ("hashed", "checked", "imported"):
        (site / f"{name}.py").write_text(f"NAME = {name!r}\n")
    mode = py_compile.PycInvalidationMode
    py_compile.compile(str(site / "hashed.py"), invalidation_mode=mode.UNCHECKED_HASH)
    py_compile.compile(str(site / "checked.py"), invalidation_mode=mode.CHECKED_HASH)
    assert expect.bytecode_problems(*_pyc_flags(tmp_path)) == []
    # What a .pth file does at every interpreter start during a build: an import, which
    # writes a timestamp-based .pyc (whatever SOURCE_DATE_EPOCH says).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import imported"], cwd=site, env=env, check=True)
    counts, examples = _pyc_flags(tmp_path)
    assert counts == {0: 1, 1: 1, 3: 1}
    (problem,) = expect.bytecode_problems(counts, examples)
    assert problem.startswith("1 timestamp .pyc file(s), e.g. ")
    assert "__pycache__/imported.cpython-" in problem


def test_unknown_pyc_flags_are_problems_and_hash_modes_are_not():
    assert expect.bytecode_problems({1: 9000, 3: 2}, {}) == []
    assert expect.bytecode_problems({-1: 1}, {-1: ["/v/x.pyc"]}) == [
        "1 unknown header flags -1 .pyc file(s), e.g. /v/x.pyc"
    ]


# --- pruning by architecture -------------------------------------------------------------------


def _answers(used: dict[str, dict[str, bool]], lookups: dict[str, list[str]] | None = None) -> dict:
    """A scripts.PRUNE_PROBE result: capability -> probe -> used."""
    return {
        "imports": {"flashinfer": "ok", "vllm.vllm_flash_attn": "ok"},
        "runs": {
            cap: {
                "probes": {p: {"used": u, "gates": {f"{p} gate": u}} for p, u in probes.items()},
                "as_found": {"get_flash_attn_version()": 2},
                "cubin_lookups": (lookups or {}).get(cap, []),
            }
            for cap, probes in used.items()
        },
    }


def _pruned(*names: str):
    from vllm_forge import prune

    return [e for e in prune.packaged() if e.name in names]


def test_a_pruned_entry_unused_on_the_target_and_used_on_its_control_passes():
    pruned = _pruned("flashinfer-cubins-sm100", "vllm-fa3-sm90", "cuda-bindings-cython-sources")
    found = _answers(
        {
            "12.0": {"flashinfer-trtllm": False, "fa3": False},
            "10.0": {"flashinfer-trtllm": True, "fa3": False},
            "9.0": {"flashinfer-trtllm": False, "fa3": True},
        }
    )
    assert expect.prune_probe_problems(pruned, [(12, 0)], found) == []


def test_a_gate_that_would_use_a_pruned_file_on_the_target_gpu_fails():
    pruned = _pruned("flashinfer-cubins-sm100")
    found = _answers({"12.0": {"flashinfer-trtllm": True}, "10.0": {"flashinfer-trtllm": True}})
    (problem,) = expect.prune_probe_problems(pruned, [(12, 0)], found)
    assert problem.startswith("flashinfer-cubins-sm100: pruned, yet for a 12.0 GPU")
    assert "flashinfer-trtllm gate says it would be used" in problem


def test_a_probe_that_cannot_tell_gpus_apart_fails_on_its_control():
    pruned = _pruned("vllm-fa3-sm90")
    found = _answers({"12.0": {"fa3": False}, "9.0": {"fa3": False}})
    (problem,) = expect.prune_probe_problems(pruned, [(12, 0)], found)
    assert "a 9.0 GPU (one the entry serves) would not use it either" in problem
    assert "vllm/vllm_flash_attn/flash_attn_interface.py" in problem


def test_cubin_lookups_import_errors_and_a_failed_setup_fail():
    pruned = _pruned("flashinfer-cubins-sm100")
    found = _answers(
        {"12.0": {"flashinfer-trtllm": False}, "10.0": {"flashinfer-trtllm": True}},
        lookups={"12.0": ["/x/flashinfer_cubin/cubins/f1ed/fmha/k.cubin"]},
    )
    found["imports"]["vllm.vllm_flash_attn"] = "ImportError: _vllm_fa2_C"
    problems = expect.prune_probe_problems(pruned, [(12, 0)], found)
    assert "import vllm.vllm_flash_attn: expected it to import" in problems[0]
    assert (
        problems[1]
        == "FlashInfer looked up cubins for a 12.0 GPU: /x/flashinfer_cubin/cubins/f1ed/fmha/k.cubin"
    )
    (setup,) = expect.prune_probe_problems(pruned, [(12, 0)], {"setup": "OSError: libcuda.so.1"})
    assert "vLLM's CUDA platform to import" in setup and "libcuda.so.1" in setup


def test_the_image_record_must_name_what_the_pins_prune():
    assert expect.prune_record_problems(["a", "b"], {"a": 1, "b": 0}) == []
    (problem,) = expect.prune_record_problems(["a", "b"], {})
    assert "expected a, b for this arch list, found no record" in problem
    assert "found a" in expect.prune_record_problems(["a", "b"], {"a": 1})[0]


def test_layer_sizes_from_docker_and_podman_history():
    docker = "\n".join(
        json.dumps(row)
        for row in [
            {"CreatedBy": 'ENTRYPOINT ["vllm" "serve"]', "Size": "0B"},
            {"CreatedBy": "/bin/sh -c python3.11 -m venv /opt/venv", "Size": "9.4GB"},
            {"CreatedBy": "", "Size": "173MB"},
        ]
    )
    assert expect.layer_sizes("docker", docker) == [
        (173_000_000, ""),
        (9_400_000_000, "python3.11 -m venv /opt/venv"),
    ]
    podman = json.dumps([{"createdBy": "RUN x", "size": 12345}, {"createdBy": "", "size": 0}])
    assert expect.layer_sizes("podman", podman) == [(12345, "RUN x")]


def test_the_in_image_scripts_compile():
    for name in ("PRUNE_PROBE", "REQUIREMENTS"):
        compile(getattr(scripts, name), name, "exec")
    assert "libcuda.so.1" in scripts.STUB_LIBCUDA


@pytest.mark.parametrize(
    ("found", "ok"),
    [
        ("0.19.1", True),  # built with VLLM_MAIN_CUDA_VERSION = nvcc's CUDA, or the index wheel
        ("0.19.1+cu128", True),  # setup.py's suffix when they differ: the same release
        ("0.19.2", False),
        ("0.19.1rc1", False),
        ("", False),  # `vllm --version` printed nothing
        ("Traceback (most recent call last):", False),
    ],
)
def test_vllm_version_compares_the_public_version(found, ok):
    assert expect.same_version(found, "0.19.1") is ok
