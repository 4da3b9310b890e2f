"""The checks: a pytest-testinfra module, run by `vllm_forge.verify.runner` (not by `nox -s tests`).

Each test is one check. The runner hands a VerifyConfig over through `config.stash`; the session
starts one container from the image (`sleep infinity`, root, no GPU), execs into it through
testinfra, and removes it at the end, also on failure. A check fails with `pytest.fail(...)`
naming what was expected, what was found and what to do; numbers go out through record_property.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest
import testinfra

from .. import prune
from ..build import default_tag
from ..cuda_arch import sass_targets
from ..errors import ForgeError
from . import archcheck, expect, leaks, scripts
from .config import VerifyConfig, gpu_visible, public_bundles
from .container import Container, client_first_on_path, run_once, saved_image

CONFIG_KEY = pytest.StashKey[VerifyConfig]()
GROUPS = {"pins": "1 pins", "arch": "2 arch", "slim": "3 slim", "metadata": "4 metadata"}
GROUPS |= {"size": "5 size", "gpu": "6 gpu"}
SLOW = 900  # seconds for anything that imports vllm (30-60 s on 2 cores, more under load)
CACHE_DIRS = (
    "/root/.ccache",
    "/root/.cache/ccache",
    "/root/.cache/pip",
    "/root/.cache/uv",
    "/home/vllm/.ccache",
    "/home/vllm/.cache/pip",
    "/home/vllm/.cache/uv",
)
BUILD_TREES = ("/src", "/wheels", "/build", "/opt/cuda-toolkit", "/usr/local/cuda")
STUB_LIBCUDA_DIR = "/tmp/vllm-forge-libcuda"
PROBE = "/usr/local/bin/kernel-probe"
ORDER = [
    "pins_versions",
    "pins_flashinfer_agree",
    "pins_torch_cuda",
    "arch_coverage",
    "arch_pruned_files_gone",
    "arch_pruned_not_looked_up",
    "slim_no_caches",
    "slim_no_build_trees",
    "slim_no_nvcc",
    "slim_no_secrets_in_layers",
    "slim_triton_compiles_launcher",
    "slim_bytecode_hash_based",
    "metadata_labels",
    "metadata_entrypoint",
    "metadata_vllm_version",
    "metadata_vllm_serve_help",
    "metadata_nonroot_user",
    "size_within_budget",
    "gpu_probe_without_gpu_exits_3",
    "gpu_probe_ok",
    "gpu_torch_sees_gpu",
    "gpu_vllm_generates",
]


def group_of(check_id: str) -> str:
    return GROUPS.get(check_id.split("_")[0], "?")


def fail(*lines: str) -> None:
    pytest.fail("\n".join(lines), pytrace=False)


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cfg(request) -> VerifyConfig:
    return request.config.stash[CONFIG_KEY]


@pytest.fixture(scope="session")
def box(cfg):
    with client_first_on_path(cfg.engine):
        container = Container.start(cfg.engine, cfg.image)
        try:
            yield container
        finally:
            container.remove()


@pytest.fixture(scope="session")
def infra(box):
    """testinfra's view of the container, as root."""
    return testinfra.get_host(box.hostspec())


@pytest.fixture(scope="session")
def venv(infra) -> str:
    """The serving venv: $VIRTUAL_ENV of the image, else /opt/venv."""
    return infra.run('echo "${VIRTUAL_ENV:-/opt/venv}"').stdout.strip()


@pytest.fixture(scope="session")
def site(infra, venv) -> str:
    """The serving venv's site-packages."""
    out = infra.run("ls -d %s/lib/python3*/site-packages 2>/dev/null", venv)
    paths = out.stdout.split()
    if not paths:
        fail(
            "expected a Python venv at $VIRTUAL_ENV or /opt/venv (lib/python3*/site-packages), "
            "found none; the image is not a vllm-forge runtime image: build it with `nox -s slim`"
        )
    return paths[0]


@pytest.fixture(scope="session")
def installed(infra, site) -> dict[str, str]:
    """{canonical name: version} from every dist-info METADATA (what importlib.metadata reads)."""
    out = infra.run(
        "for f in %s/*.dist-info/METADATA; do sed -n '/^Name:/p;/^Version:/p;/^$/q' \"$f\"; done",
        site,
    )
    return expect.parse_metadata_headers(out.stdout)


def _timed(infra, command: str, *args: str, timeout: int = SLOW):
    return infra.run(f"timeout {timeout} " + command, *args)


def _output(result) -> str:
    text = (result.stdout + result.stderr).strip()
    return text[-800:] if text else "no output"


# --- 1 pins ----------------------------------------------------------------------------------


def test_pins_versions(cfg, installed, record_property):
    expected = expect.expected_versions(cfg.pins)
    record_property("expected", expected)
    record_property("found", {n: installed.get(n, "not installed") for n in expected})
    if problems := expect.version_problems(expected, installed):
        fail(*problems)


def test_pins_flashinfer_agree(cfg, installed, record_property):
    fi = {n: v for n, v in installed.items() if n.startswith("flashinfer")}
    record_property("flashinfer", fi)
    if not fi:
        fail(
            f"expected FlashInfer ({', '.join(cfg.pins.flashinfer.packages)}) at "
            f"{cfg.pins.flashinfer.version}, found no FlashInfer package; {expect.REBUILD}"
        )
    if problems := expect.flashinfer_agreement(installed):
        fail(*problems)


def test_pins_torch_cuda(cfg, infra, site, record_property):
    version_py = infra.run("cat %s/torch/version.py", site)
    if version_py.rc != 0:
        fail(f"expected torch with CUDA {cfg.pins.cuda_version}, found no torch in {site}")
    found = expect.parse_torch_cuda(version_py.stdout)
    record_property("torch.version.cuda", found)
    if problems := expect.cuda_problems(found, cfg.pins.cuda_version):
        fail(*problems)


# --- 2 arch coverage -------------------------------------------------------------------------


def test_arch_coverage(cfg, box, infra, site, record_property):
    listing = infra.run(
        'for d in %s/vllm %s/flashinfer_jit_cache; do [ -d "$d" ] && find "$d" -type f '
        "-name '*.so*'; done; true",
        site,
        site,
    )
    paths = sorted(listing.stdout.split())
    if not any("/vllm/" in p for p in paths):
        fail(f"expected vLLM's CUDA libraries (vllm/_C.abi3.so, ...) under {site}, found none")
    required = sass_targets(cfg.pins.build.arch_list)
    try:
        cuobjdump = archcheck.ensure_cuobjdump(cfg.cache_dir)
    except ForgeError as err:
        fail(f"expected cuobjdump on the host to read the libraries, found none: {err}")
    with tempfile.TemporaryDirectory(prefix="vllm-forge-verify-so-") as tmp:
        local = {}
        for path in paths:
            rel = path.removeprefix(site + "/")
            dest = Path(tmp, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            local[rel] = box.copy_out(path, dest)
        report = archcheck.CoverageReport(
            frozenset(required),
            tuple(
                archcheck.file_coverage(
                    Path(rel), archcheck.list_contents(p, cuobjdump), frozenset(required)
                )
                for rel, p in local.items()
            ),
        )
        sizes = {rel: p.stat().st_size for rel, p in local.items()}
    rows, binding, extra = [], [], []
    for f in report.files:
        why = expect.arch_exemption(str(f.path))
        rows.append({**f.to_dict(), "bytes": sizes[str(f.path)], "exempt": why})
        if why is None:
            binding.append(f)
        if f.extra and why is None:
            extra.append(f"{f.path}: {' '.join(archcheck.sorted_targets(f.extra))}")
    record_property("required", archcheck.sorted_targets(required))
    record_property("files", rows)
    record_property("table", _arch_table(report, rows))
    if extra and cfg.pins.compiles_vllm:
        record_property(
            "warning",
            "code for arches outside the list is wasted size: "
            + "; ".join(extra)
            + " (check TORCH_CUDA_ARCH_LIST in the build)",
        )
    jit = [f for f in binding if f.missing and expect.ptx_serves(f.contents.ptx, f.missing)]
    if jit:
        record_property(
            "warning",
            "no SASS, only PTX the driver compiles at first load (slower start, still runs): "
            + "; ".join(
                f"{f.path}: {' '.join(archcheck.sorted_targets(f.contents.ptx))} for "
                f"{' '.join(archcheck.sorted_targets(f.missing))}"
                for f in jit
            ),
        )
    binding = [f for f in binding if f not in jit]
    failing = archcheck.CoverageReport(frozenset(required), tuple(binding))
    if not failing.ok:
        fail(failing.failure_message())


def _arch_table(report: archcheck.CoverageReport, rows: list[dict]) -> str:
    lines = report.table().splitlines()
    notes = [f"  {r['path']}: {r['bytes'] / 1e6:.0f} MB" for r in rows]
    notes += [f"  {r['path']}: not required ({r['exempt']})" for r in rows if r["exempt"]]
    return "\n".join(["  " + line for line in lines] + notes)


def _image_record(infra) -> dict[str, int]:
    """The image's own record of what its runtime stage pruned (prune.RECORD)."""
    return prune.parse_lines(
        infra.run("cat %s 2>/dev/null; true", prune.RECORD).stdout.splitlines()
    )


def test_arch_pruned_files_gone(cfg, infra, site, record_property):
    """The entries of vllm_forge/prune.toml that no GPU of the arch list loads are gone, the
    image's record names them, and the package metadata still holds (`pip check`)."""
    pruned = prune.select(cfg.pins.build.arch_list)
    left, kept = [], {}
    for entry in prune.packaged():
        hits = []
        for path in entry.paths:
            root, pattern = prune.find_args(path)
            found = infra.run(
                "[ -e %s ] && find %s -path %s -prune -print | head -3; true",
                f"{site}/{root}", f"{site}/{root}", f"{site}/{pattern}",
            )  # fmt: skip
            hits += found.stdout.split()
        if entry in pruned and hits:
            left.append(f"{entry.name}: {', '.join(hits)}")
        elif entry not in pruned:
            kept[entry.name] = "present" if hits else "not in this image's wheels"
    record = _image_record(infra)
    record_property("arch_list", [str(a) for a in cfg.pins.build.arch_list])
    record_property("pruned", record)
    record_property("pruned_gb", round(sum(record.values()) / 1e9, 3))
    record_property("kept", kept)
    if matched_nothing := expect.prune_matched_nothing(record):
        # the image still works, only bigger: an upgrade renamed or dropped what the entry names
        record_property(
            "warning",
            f"pruned nothing for {', '.join(matched_nothing)}: check their paths in "
            "vllm_forge/prune.toml against the installed wheels",
        )
    result = _timed(infra, "python -c %s", scripts.REQUIREMENTS, timeout=300)
    problems = [
        f"expected the pruned files gone (no GPU of the arch list loads them), found {what}; "
        f"{expect.REBUILD}"
        for what in left
    ]
    problems += expect.prune_record_problems([e.name for e in pruned], record)
    if result.rc != 0:
        problems.append(
            f"expected to read the package metadata, found exit {result.rc}: {_output(result)}"
        )
    else:
        found = json.loads(result.stdout.strip().splitlines()[-1])
        record_property("metadata", found)
        problems += [
            f"pip check: {p}; never prune *.dist-info (vllm_forge/prune.toml)"
            for p in found["problems"]
        ]
    if problems:
        fail(*problems)


def test_arch_pruned_not_looked_up(cfg, infra, site, record_property):
    """For every GPU the arch list targets, vLLM's and FlashInfer's own selection code does not
    reach for what was pruned: asked with the capability patched in (no GPU needed), FlashInfer
    looks up no cubin, the trtllm-gen, FA3, FA4 and FlashMLA gates say "not supported" (and the
    availability checks answer rather than raise), Triton picks ptxas-blackwell. The same
    questions for a GPU each entry serves must say "use it", or the probe proves nothing."""
    pruned = prune.select(cfg.pins.build.arch_list)
    probed = [e for e in pruned if e.probe]
    targets = prune.targets(cfg.pins.build.arch_list)
    if not probed:
        pytest.skip("the arch list keeps every entry that a GPU loads: nothing to ask about")
    stub = infra.run("sh -c %s stub %s %s", scripts.STUB_LIBCUDA, STUB_LIBCUDA_DIR, site)
    if stub.rc != 0:
        fail(
            "expected to build a stand-in libcuda.so.1 in the image (gcc, readelf, nm), found "
            f"exit {stub.rc}: {_output(stub)}"
        )
    caps = sorted(set(targets) | {e.control for e in probed if e.control}, reverse=True)
    spec = {
        "imports": sorted({m for e in prune.packaged() for m in e.imports}),
        "capabilities": [expect.capability_text(c) for c in caps],
    }
    result = _timed(
        infra,
        "env LD_LIBRARY_PATH=%s python -c %s %s",
        STUB_LIBCUDA_DIR, scripts.PRUNE_PROBE, json.dumps(spec),
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    if result.rc != 0 or not lines:
        fail(f"expected the in-image probe to answer, found exit {result.rc}: {_output(result)}")
    found = json.loads(lines[-1])
    record_property("targets", [expect.capability_text(c) for c in targets])
    record_property("imports", found.get("imports"))
    record_property(
        "answers",
        {
            cap: {
                "used": {p: a.get("used", a.get("error")) for p, a in run["probes"].items()},
                "as_found": run.get("as_found"),
                "attention_backends": run.get("attention_backends"),
                "cubin_lookups": run.get("cubin_lookups"),
            }
            for cap, run in found.get("runs", {}).items()
        },
    )
    if problems := expect.prune_probe_problems(pruned, targets, found):
        fail(*problems)


# --- 3 slim hygiene --------------------------------------------------------------------------


def _leftovers(infra, paths: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(non-empty paths with their size, empty directories) among `paths`."""
    full, empty = [], []
    for path in paths:
        if not infra.file(path).exists:
            continue
        files = infra.run("find %s -type f | wc -l; du -sh %s | cut -f1", path, path)
        count, size = (files.stdout.split() + ["0", "?"])[:2]
        (full if int(count) else empty).append(
            f"{path} ({count} files, {size})" if int(count) else path
        )
    return full, empty


def test_slim_no_caches(infra, record_property):
    full, empty = _leftovers(infra, CACHE_DIRS)
    record_property("found", full + empty)
    if empty:
        record_property("warning", f"empty cache directories: {', '.join(empty)}")
    if full:
        fail(
            f"expected no compiler or package caches in the slim image, found {', '.join(full)}; "
            "use `RUN --mount=type=cache` for them (never a plain directory) and rebuild"
        )


def test_slim_no_build_trees(infra, record_property):
    full, empty = _leftovers(infra, BUILD_TREES)
    record_property("found", full + empty)
    if empty:
        record_property("warning", f"empty build directories: {', '.join(empty)}")
    if full:
        fail(
            f"expected no build trees in the slim image, found {', '.join(full)}; "
            "copy only the venv and the probe into the runtime stage and rebuild"
        )


def test_slim_no_nvcc(cfg, infra, record_property):
    """No profile needs nvcc at run time: FlashInfer's SM12x kernels come ahead of time (nvcc
    12.8 cannot JIT them), and Triton brings its own ptxas."""
    found = infra.run("find / -xdev -name nvcc -type f 2>/dev/null; command -v nvcc; true")
    hits = sorted(set(found.stdout.split()))
    record_property("nvcc", hits)
    if hits:
        fail(
            f"expected no nvcc in the slim image (profile {cfg.pins.profile} needs none at run "
            f"time), found {', '.join(hits)}; keep the CUDA toolkit in the builder stages"
        )


def test_slim_no_secrets_in_layers(cfg, infra, record_property):
    needles: list[leaks.Needle] = []
    if cfg.host_bundle is not None:
        image_bundle = infra.run("cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null").stdout
        public = [image_bundle.encode(), *(p.read_bytes() for p in public_bundles())]
        cas = leaks.custom_cas(cfg.host_bundle.read_bytes(), *public)
        needles += [leaks.ca_needle(der) for der in cas]
        record_property("custom_cas", [leaks.fingerprint(der) for der in cas])
    for path in cfg.needles:
        needles.append(leaks.text_needle(f"secret needle {path.name}", path.read_bytes()))
    if not needles:
        pytest.skip("nothing to search for: no custom CA on the host and no --secret-needle")
    start = time.monotonic()
    with saved_image(cfg.engine, cfg.image) as archive:
        hits, layers = leaks.scan_image_archive(archive, needles)
    record_property("layers", layers)
    record_property("needles", [n.name for n in needles])
    record_property("scan_seconds", round(time.monotonic() - start, 1))
    if layers == 0:
        fail(f"expected image layers in `{cfg.engine.name} save {cfg.image}`, found none")
    if hits:
        fail(
            f"expected no CA certificate or secret in any of {layers} layers, found: "
            f"{leaks.describe(hits)}",
            "deleting a file in a later layer does not remove it from the image: pass secrets "
            "with `RUN --mount=type=secret` (never COPY, ARG or ENV) and rebuild",
        )


def test_slim_triton_compiles_launcher(infra, record_property):
    result = _timed(infra, "python -c %s", scripts.TRITON_LAUNCHER, timeout=300)
    if result.rc != 0:
        fail(
            "expected Triton to compile its launcher stub (cc + Python.h + cuda.h) without a GPU, "
            f"found exit {result.rc}: {_output(result)}",
            "the slim image needs gcc, libc6-dev and python3-dev (Python.h) for Triton's first "
            "kernel launch: install them in the runtime stage",
        )
    record_property("triton", json.loads(result.stdout.strip().splitlines()[-1]))


def test_slim_bytecode_hash_based(infra, venv, record_property):
    result = _timed(infra, "python3 -S -c %s %s", scripts.PYC_FLAGS, venv, timeout=300)
    if result.rc != 0:
        fail(
            f"expected to read the .pyc headers under {venv}, found exit {result.rc}: "
            f"{_output(result)}"
        )
    counts, examples = expect.parse_pyc_flags(result.stdout)
    record_property("pyc", {expect.PYC_MODES.get(k, str(k)): v for k, v in counts.items()})
    if not counts:
        record_property("warning", f"no .pyc under {venv}: every first import compiles")
    problems = expect.bytecode_problems(counts, examples)
    if problems:
        fail(
            f"expected only hash-based .pyc files under {venv} (they do not carry the build's "
            f"clock), found {'; '.join(problems)}",
            "an interpreter started during the build wrote them (.pth files import modules at "
            "start-up): set PYTHONDONTWRITEBYTECODE=1 for the install and compile once with "
            "`compileall -f --invalidation-mode unchecked-hash`",
        )


# --- 4 metadata ------------------------------------------------------------------------------


def test_metadata_labels(cfg, record_property):
    found = cfg.engine.labels(cfg.image)
    record_property("labels", found)
    if problems := expect.label_problems(cfg.pins.labels(), found):
        fail(*problems)


def test_metadata_entrypoint(cfg, record_property):
    config = cfg.engine.inspect(cfg.image).get("Config") or {}
    entrypoint = config.get("Entrypoint")
    record_property("entrypoint", entrypoint)
    if entrypoint != ["vllm", "serve"]:
        fail(
            f'expected ENTRYPOINT ["vllm", "serve"], found {entrypoint!r}; '
            "set it in the runtime stage and rebuild"
        )


def _vllm_cli(infra, record_property, *args: str):
    """`vllm ARGS`; where vLLM cannot infer a device (no GPU), the same CLI with CUDA chosen."""
    result = _timed(infra, "vllm" + " %s" * len(args), *args)
    if result.rc != 0 and scripts.NO_DEVICE in result.stdout + result.stderr:
        record_property(
            "warning",
            f"`vllm {' '.join(args)}` cannot infer a device without a GPU; ran the same CLI "
            "with vLLM's CPU platform chosen up front (on a GPU host it runs as is)",
        )
        result = _timed(infra, "python -c %s" + " %s" * len(args), scripts.VLLM_CLI_NO_GPU, *args)
    return result


def test_metadata_vllm_version(cfg, infra, record_property):
    result = _vllm_cli(infra, record_property, "--version")
    text = result.stdout.strip().splitlines()
    found = text[-1] if text else ""
    record_property("vllm --version", found)
    if result.rc != 0 or not expect.same_version(found, cfg.pins.vllm.version):
        fail(
            f"expected `vllm --version` to print {cfg.pins.vllm.version} and exit 0, found exit "
            f"{result.rc}: {_output(result)}; {expect.REBUILD}"
        )


def test_metadata_vllm_serve_help(infra, record_property):
    result = _vllm_cli(infra, record_property, "serve", "--help")
    if result.rc != 0:
        fail(f"expected `vllm serve --help` to exit 0, found exit {result.rc}: {_output(result)}")


def test_metadata_nonroot_user(box, infra, record_property):
    user = infra.user("vllm")
    if not user.exists or (user.uid, user.gid) != (1000, 1000):
        found = f"uid {user.uid}, gid {user.gid}" if user.exists else "no such user"
        fail(
            f"expected a non-root user vllm with uid and gid 1000, found {found}; the runtime "
            f"stage runs scripts/create_user.sh vllm 1000; {expect.REBUILD}"
        )
    as_vllm = testinfra.get_host(box.hostspec("vllm"))
    result = _timed(as_vllm, "python -c %s", "import vllm; print(vllm.__version__)")
    record_property("import as vllm", result.stdout.strip()[-80:])
    if result.rc != 0:
        fail(f"expected user vllm to import vllm, found exit {result.rc}: {_output(result)}")


# --- 5 size ----------------------------------------------------------------------------------


def test_size_within_budget(cfg, infra, site, record_property):
    slim = cfg.engine.image_size(cfg.image)
    builder_tag = default_tag(cfg.pins.profile, "builder")
    builder = cfg.engine.image_size(builder_tag) if cfg.engine.image_exists(builder_tag) else None
    record_property("slim_gb", round(slim / 1e9, 2))
    record_property("budget_gb", cfg.pins.slim_max_gb)
    record_property("builder", builder_tag)
    record_property("builder_gb", round(builder / 1e9, 2) if builder else "not built")
    record_property("table", _size_breakdown(cfg, infra, site, slim, record_property))
    if slim > cfg.pins.slim_max_gb * 1e9:
        fail(
            f"expected the slim image within [budget].slim_max_gb = {cfg.pins.slim_max_gb} GB, "
            f"found {slim / 1e9:.2f} GB; find what grew (`{cfg.engine.name} history "
            f"{cfg.image}`) or raise the budget in versions.toml"
        )


def _size_breakdown(cfg, infra, site, slim: int, record_property) -> str:
    """Where the image's bytes are: by package (du in the image), by layer (image history),
    and what the runtime stage pruned (the image's record)."""
    # two du runs: one du counts a file once, so /opt/venv after site/* would show ~0
    du = infra.run("du -sb %s/* 2>/dev/null; du -sb /usr /opt/venv 2>/dev/null; true", site)
    sizes = []
    for line in du.stdout.splitlines():
        size, _, path = line.partition("\t")
        if size.isdigit():
            sizes.append((int(size), path.removeprefix(site + "/")))
    packages = sorted((s for s in sizes if not s[1].startswith("/")), reverse=True)
    history = cfg.engine.run(cfg.engine.history_argv(cfg.image), check=False)
    layers = expect.layer_sizes(cfg.engine.name, history.stdout) if history.returncode == 0 else []
    pruned = _image_record(infra)
    record_property("by_package_mb", {p: round(b / 1e6, 1) for b, p in packages[:20]})
    record_property("by_layer_mb", [[round(b / 1e6, 1), what[:120]] for b, what in layers])
    lines = [f"  image {slim / 1e9:.2f} GB; budget {cfg.pins.slim_max_gb} GB", "  by layer:"]
    lines += [f"    {b / 1e9:7.3f} GB  {what[:90] or '(base image)'}" for b, what in layers]
    lines.append("  by package (site-packages; /usr and /opt/venv in all):")
    lines += [f"    {b / 1e9:7.3f} GB  {p}" for b, p in packages[:15]]
    lines += [f"    {b / 1e9:7.3f} GB  {p}" for b, p in sizes if p.startswith("/")]
    lines.append(f"  pruned by arch list: {sum(pruned.values()) / 1e9:.3f} GB")
    lines += [f"    {b / 1e9:7.3f} GB  {n}" for n, b in sorted(pruned.items(), key=lambda i: -i[1])]
    return "\n".join(lines)


# --- 6 GPU -----------------------------------------------------------------------------------


def test_gpu_probe_without_gpu_exits_3(infra, record_property):
    """The probe in a container without a GPU must say so (3): an `ok` there checked nothing."""
    result = infra.run(f"{PROBE} --json")
    record_property("exit", result.rc)
    record_property("probe", result.stdout.strip()[-400:])
    if result.rc != 3:
        fail(
            f"expected {PROBE} without a GPU to exit 3 (no GPU / no driver), found exit "
            f"{result.rc}: {_output(result)}",
            "a probe that passes without a GPU checked nothing: rebuild the kernel probe",
        )


@pytest.fixture(scope="session")
def gpu(cfg) -> list[str]:
    """The engine flags that pass the GPU in; skips the GPU checks where none is visible."""
    why = gpu_visible()
    if why is None and not cfg.force_gpu:
        pytest.skip("no GPU visible here (no /dev/nvidia0, no nvidia-smi); --gpu forces")
    return cfg.engine.gpu_flags()


def test_gpu_probe_ok(cfg, gpu, record_property):
    result = run_once(cfg.engine, cfg.image, ["--json"], entrypoint=PROBE, extra=gpu)
    record_property("exit", result.returncode)
    record_property("probe", result.stdout.strip()[-800:])
    if result.returncode != 0:
        hint = {
            2: "the image has no kernel for this GPU: add its arch to TORCH_CUDA_ARCH_LIST",
            3: "no GPU or driver in the container: install the NVIDIA container toolkit (CDI)",
        }.get(result.returncode, "see the probe's message")
        fail(
            f"expected the kernel probe to run on every GPU (exit 0), found exit "
            f"{result.returncode}: {(result.stdout + result.stderr).strip()[-600:]}; {hint}"
        )


def test_gpu_torch_sees_gpu(cfg, gpu, record_property):
    result = run_once(
        cfg.engine, cfg.image, ["-c", scripts.TORCH_GPU], entrypoint="python", extra=gpu
    )
    if result.returncode != 0:
        fail(
            f"expected torch to start with the GPU, found exit {result.returncode}: "
            f"{(result.stdout + result.stderr).strip()[-600:]}"
        )
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    record_property("torch", seen)
    if not seen["available"] or not seen["count"]:
        fail("expected torch.cuda.is_available() with at least one GPU, found none")
    caps = [tuple(c) for c in seen["capabilities"]]
    if problems := expect.gpu_arch_problems(caps, seen["arch_list"]):
        fail(*problems)


def test_gpu_vllm_generates(cfg, gpu, record_property):
    if cfg.model_dir is None or not cfg.model:
        pytest.skip("no --model-dir/--model given: no local model to generate with")
    extra = [*gpu, "-v", f"{cfg.model_dir}:/models:ro"]
    env = {"HF_HOME": "/models", "HF_HUB_OFFLINE": "1"}
    result = run_once(
        cfg.engine,
        cfg.image,
        ["-c", scripts.VLLM_GENERATE, cfg.model],
        entrypoint="python",
        extra=extra,
        env=env,
        timeout=1800,
    )
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("FORGE-RESULT ")]
    if result.returncode != 0 or not lines:
        fail(
            f"expected vLLM to generate with {cfg.model} from {cfg.model_dir}, found exit "
            f"{result.returncode}: {(result.stdout + result.stderr).strip()[-800:]}"
        )
    text = json.loads(lines[-1].removeprefix("FORGE-RESULT "))["text"]
    record_property("generated", text)
    if not text.strip():
        fail(f"expected generated text from {cfg.model}, found an empty string")
