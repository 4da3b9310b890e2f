"""One small abstraction over docker (BuildKit) and podman. Every engine quirk lives here.

- docker: BuildKit is required (cache and secret mounts). A client with the buildx plugin uses
  `docker buildx build --load`; a classic client older than 23 builds with `DOCKER_BUILDKIT=1`;
  a newer client without buildx cannot (it refuses BuildKit builds), so it is skipped with a reason.
- podman: `podman build` supports cache and secret mounts; `podman run` needs explicit ulimits on
  machines that withhold CAP_SYS_RESOURCE ("error setting rlimit type 7").

Other modules ask an `Engine` what to run (argument lists, built here without running anything)
and what it can do (properties); none of them looks at the engine's name or mode to decide.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EngineCommandError, EngineError

ENGINE_NAMES = ("docker", "podman")
# podman's (buildah's) RUN --mount=type=cache storage: one plain directory per cache id.
BUILDAH_CACHE = Path("/var/tmp/buildah-cache")
# Where the NVIDIA Container Toolkit writes CDI specs (podman reads both), and the names of the
# hook docker's `--gpus` runs.
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
NVIDIA_HOOKS = ("nvidia-container-runtime-hook", "nvidia-container-toolkit")


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    context: Path
    dockerfile: Path
    tag: str
    target: str
    build_args: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Path] = field(default_factory=dict)  # id -> file on the host
    no_cache: bool = False
    timestamp: int | None = None  # podman --timestamp / SOURCE_DATE_EPOCH


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    """One entry of `image history`: the instruction, and whether it made a layer."""

    created_by: str
    empty: bool  # ENV, LABEL, ... : no layer of its own


@dataclass(frozen=True, kw_only=True)
class Engine:
    name: str  # "docker" | "podman"
    client: str  # absolute path of the client binary
    mode: str  # "buildx" | "buildkit-classic" | "podman"
    version: str
    env: dict[str, str] = field(default_factory=dict)

    # ---- what the engine can do ------------------------------------------------------------

    @property
    def timestamp_option(self) -> str | None:
        """How a build stamps SOURCE_DATE_EPOCH on layers and config (reproducible IDs), or None.

        podman/buildah: `--timestamp`. Docker: BuildKit honours SOURCE_DATE_EPOCH from v0.11
        (Docker Engine 23), with buildx's `rewrite-timestamp` output; the classic client on
        Engine 20.10 predates it.
        """
        if self.mode == "podman":
            return "--timestamp"
        if self.mode == "buildx" and _docker_major(self.version) >= 23:
            return "rewrite-timestamp"
        return None

    @property
    def fixes_timestamps(self) -> bool:
        """Whether a build can stamp SOURCE_DATE_EPOCH on layers and config (reproducible IDs)."""
        return self.timestamp_option is not None

    @property
    def cache_mount_dir(self) -> Path | None:
        """The host directory that holds RUN --mount=type=cache storage, one folder per cache id
        (podman); None where the builder keeps it in its own store (docker's BuildKit)."""
        return BUILDAH_CACHE if self.name == "podman" else None

    @property
    def no_cache_builds_get_fresh_cache_mounts(self) -> bool:
        """Whether a --no-cache build starts with empty cache mounts (docker 20.10's classic
        BuildKit); elsewhere they keep what earlier builds put there."""
        return self.mode == "buildkit-classic"

    # ---- argument lists (pure) -------------------------------------------------------------

    def build_argv(self, req: BuildRequest) -> list[str]:
        if self.mode == "buildx":
            argv = [self.client, "buildx", "build", "--progress=plain"]
            if req.timestamp is not None and self.fixes_timestamps:
                argv += ["--output", "type=docker,rewrite-timestamp=true"]
            else:
                argv.append("--load")
        elif self.mode == "buildkit-classic":
            argv = [self.client, "build", "--progress=plain"]
        else:
            # OCI format (podman's default): the docker format's config carries the build
            # container's ID and hostname, so no two builds would share an image ID.
            argv = [self.client, "build", "--layers", "--format", "oci"]
            if req.timestamp is not None:
                argv += ["--timestamp", str(req.timestamp)]
        argv += ["--file", str(req.dockerfile), "--target", req.target, "--tag", req.tag]
        if req.no_cache:
            argv.append("--no-cache")
        build_args = dict(req.build_args)
        if req.timestamp is not None:
            build_args.setdefault("SOURCE_DATE_EPOCH", str(req.timestamp))
        for key, value in sorted(build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        for sid, path in sorted(req.secrets.items()):
            argv += ["--secret", f"id={sid},src={path}"]
        argv.append(str(req.context))
        return argv

    def run_argv(
        self,
        image: str,
        command: list[str],
        *,
        entrypoint: str | None = None,
        user: str | None = None,
        env: dict[str, str] | None = None,
        detach: bool = False,
        name: str | None = None,
        extra: list[str] | None = None,
    ) -> list[str]:
        argv = [self.client, "run"]
        argv += ["-d"] if detach else ["--rm"]
        if name:
            argv += ["--name", name]
        argv += self._run_quirks()
        if entrypoint is not None:
            argv += ["--entrypoint", entrypoint]
        if user:
            argv += ["--user", user]
        for key, value in sorted((env or {}).items()):
            argv += ["--env", f"{key}={value}"]
        argv += extra or []
        return argv + [image, *command]

    def gpu_flags(self) -> list[str]:
        """`run` options that hand every NVIDIA GPU in (see gpu_device_flags)."""
        return self.gpu_device_flags("all")

    def gpu_device_flags(self, devices: str) -> list[str]:
        """`run` options that hand NVIDIA GPUs in: "all", device indexes ("0,1"), or "none".

        docker: `--gpus` (the NVIDIA container toolkit's hook; a list goes as `"device=0,1"`,
        quotes included, or docker's CSV parser splits it); podman: one CDI device each
        (`nvidia.com/gpu=N`, from the spec `nvidia-ctk cdi generate` writes)."""
        if devices == "none":
            return []
        if self.name == "docker":
            return ["--gpus", "all" if devices == "all" else f'"device={devices}"']
        return [
            flag for index in devices.split(",") for flag in ("--device", f"nvidia.com/gpu={index}")
        ]

    def label_flags(self) -> list[str]:
        """podman: SELinux separation off for the container, so CDI devices and bind-mounted host
        folders (the HF cache) are usable without relabelling the user's files; docker: none."""
        return ["--security-opt=label=disable"] if self.name == "podman" else []

    def ipc_host_flags(self) -> list[str]:
        """The host's IPC namespace: PyTorch's and NCCL's shared memory need more than the
        64 MiB /dev/shm a container gets."""
        return ["--ipc=host"]

    def publish_flags(self, host: str, port: int, container_port: int) -> list[str]:
        return ["--publish", f"{host}:{port}:{container_port}"]

    def volume_flags(self, source: str, target: str, *, read_only: bool = False) -> list[str]:
        """A named volume (`source` a name) or a host folder (`source` a path) at `target`."""
        return ["--volume", f"{source}:{target}" + (":ro" if read_only else "")]

    def env_name_flags(self, names: list[str]) -> list[str]:
        """`--env NAME` without a value: the engine copies the value from its own environment,
        so a secret never appears on a command line."""
        return [flag for name in names for flag in ("--env", name)]

    def no_network_flags(self) -> list[str]:
        return ["--network=none"]

    def container_state_argv(self, name: str) -> list[str]:
        return [
            self.client, "container", "inspect", "--format",
            "{{.State.Status}} {{.State.ExitCode}}", name,
        ]  # fmt: skip

    def container_state(self, name: str) -> tuple[str, int] | None:
        """(status, exit code) of a container: ("running", 0), ("exited", 1), ...; None if there
        is no such container."""
        result = self.run(self.container_state_argv(name), check=False)
        if result.returncode != 0:
            return None
        status, _, code = result.stdout.strip().partition(" ")
        # podman 4.3 says "stopped" for a moment after the process ended, then "exited"
        status = "exited" if status == "stopped" else status
        try:
            return status, int(code or 0)
        except ValueError:
            return status, -1

    def container_logs_argv(
        self, name: str, *, tail: int | None = None, follow: bool = False
    ) -> list[str]:
        argv = [self.client, "logs"]
        if tail is not None:
            argv += ["--tail", str(tail)]
        if follow:
            argv.append("--follow")
        return [*argv, name]

    def start_logs(self, name: str, *, tail: int | None = None) -> subprocess.Popen[str]:
        """`logs --follow` of a container, stdout and stderr on one pipe, in a session of its own
        (a terminal's Ctrl-C reaches vllm-forge, which ends it) and dying with vllm-forge."""
        return self._start_piped(self.container_logs_argv(name, tail=tail, follow=True))

    def gpu_runtime_problem(self, cdi_dirs: tuple[Path, ...] = CDI_DIRS) -> str | None:
        """Why this engine cannot hand an NVIDIA GPU to a container here, with how to set it up;
        None when it can (as far as can be seen without starting one).

        docker's `--gpus` needs the NVIDIA Container Toolkit's hook (`nvidia-container-runtime-hook`
        on the daemon's PATH) or an `nvidia` runtime; podman's CDI devices need a spec naming
        `nvidia.com/gpu` in /etc/cdi or /var/run/cdi."""
        if self.name == "docker":
            info = self.run([self.client, "info", "--format", "{{json .Runtimes}}"], check=False)
            if '"nvidia"' in info.stdout or any(shutil.which(h) for h in NVIDIA_HOOKS):
                return None
            return (
                "docker cannot hand a GPU to a container here: the NVIDIA Container Toolkit is not"
                " installed (no nvidia-container-runtime-hook on PATH, no `nvidia` runtime in"
                " `docker info`); install nvidia-container-toolkit from NVIDIA's repository, run"
                " `nvidia-ctk runtime configure --runtime=docker` and restart dockerd"
            )
        for folder in cdi_dirs:
            for spec in sorted(folder.glob("*.*")) if folder.is_dir() else ():
                if spec.suffix in (".yaml", ".yml", ".json") and _names_nvidia_gpu(spec):
                    return None
        where = " or ".join(str(d) for d in cdi_dirs)
        return (
            f"podman cannot hand a GPU to a container here: no CDI spec for nvidia.com/gpu in"
            f" {where}; install nvidia-container-toolkit from NVIDIA's repository and run"
            " `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` (again after each driver"
            " update)"
        )

    def remove_container_argv(self, name: str) -> list[str]:
        argv = [self.client, "rm", "-f"]
        if self.name == "podman":
            # podman stops with SIGTERM first and waits 10 s; a PID 1 that ignores it (`sleep`)
            # would hold every removal up that long.
            argv += ["-t", "0"]
        return [*argv, name]

    def copy_out_argv(self, container: str, path: str, dest: Path) -> list[str]:
        """`cp CONTAINER:path dest`: a file of a container onto the host."""
        return [self.client, "cp", f"{container}:{path}", str(dest)]

    def save_argv(self, ref: str, dest: Path | None = None) -> list[str]:
        """`save` to a file, or (dest None) as a stream on stdout."""
        return [self.client, "save", *(["-o", str(dest)] if dest is not None else []), ref]

    def history_argv(self, ref: str) -> list[str]:
        # docker: one JSON object a line; podman: one JSON array.
        fmt = "{{json .}}" if self.name == "docker" else "json"
        return [self.client, "image", "history", "--no-trunc", "--format", fmt, ref]

    def parse_history(self, stdout: str) -> list[HistoryEntry]:
        """`history_argv`'s output -> its entries, bottom (oldest) first.

        docker prints `CreatedBy` and a human `Size` ("0B"); podman `CreatedBy` (`createdBy` in
        some versions) and a byte count `size`.
        """
        text = stdout.strip()
        if self.name == "docker":
            rows = [json.loads(line) for line in text.splitlines()]
        else:
            rows = json.loads(text)
        return [
            HistoryEntry(
                created_by=str(row.get("CreatedBy") or row.get("createdBy") or ""),
                empty=str(row.get("Size", row.get("size", "0"))) in ("0", "0B"),
            )
            for row in reversed(rows)  # newest first -> bottom first
        ]

    def list_images_argv(self) -> list[str]:
        """Every image as REPOSITORY:TAG, one a line."""
        return [self.client, "images", "--format", "{{.Repository}}:{{.Tag}}"]

    def prune_dangling_images_argv(self) -> list[str]:
        return [self.client, "image", "prune", "-f"]

    def bound_build_cache_argv(self, keep_bytes: int) -> list[str] | None:
        """Prune the builder's cache (layers and cache mounts) down to `keep_bytes`; None where
        the engine has no such bound (podman: bound `cache_mount_dir` by hand)."""
        if self.name == "docker":
            return [self.client, "builder", "prune", "-f", "--keep-storage", str(keep_bytes)]
        return None

    def prune_cache_mounts_argv(self) -> list[str] | None:
        """Empty the builder's cache mounts (buildx: BuildKit cannot prune one cache id, so every
        cache mount of the builder goes); None where that is done otherwise (podman: delete
        folders of `cache_mount_dir`) or not needed (`no_cache_builds_get_fresh_cache_mounts`)."""
        if self.mode == "buildx":
            return [self.client, "builder", "prune", "-f", "--filter", "type=exec.cachemount"]
        return None

    def _run_quirks(self) -> list[str]:
        if self.name != "podman":
            return []
        nofile = _limit(resource.RLIMIT_NOFILE, 20000)
        nproc = _limit(resource.RLIMIT_NPROC, 4096)
        return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]

    # ---- actions --------------------------------------------------------------------------

    def run(self, argv: list[str], *, check: bool = True, capture: bool = True, **kw):
        """Run an engine command; with `check`, a non-zero exit is an EngineCommandError."""
        env = {**os.environ, **self.env}
        try:
            result = subprocess.run(argv, env=env, text=True, capture_output=capture, **kw)
        except OSError as exc:  # the client went away since detection
            raise EngineError(f"{self.name}: cannot run {argv[0]}: {exc}") from exc
        if check and result.returncode != 0:
            raise self.command_failed(argv, result.returncode, result.stderr)
        return result

    def command_failed(
        self, argv: list[str], returncode: int, stderr: str | None
    ) -> EngineCommandError:
        """The one-line error for a failed engine command: the command, its exit, and the last
        line it wrote to stderr."""
        shown = shlex.join([Path(argv[0]).name, *argv[1:]])
        if len(shown) > 120:
            shown = shown[:117] + "..."
        lines = (stderr or "").strip().splitlines()
        last = lines[-1].strip() if lines else "no error message"
        return EngineCommandError(f"{self.name}: `{shown}` failed (exit {returncode}): {last}")

    def image_exists(self, ref: str) -> bool:
        argv = [self.client, "image", "inspect", ref]
        return self.run(argv, check=False).returncode == 0

    def inspect(self, ref: str) -> dict:
        out = self.run([self.client, "image", "inspect", ref]).stdout
        return json.loads(out)[0]

    def image_id(self, ref: str) -> str:
        return self.inspect(ref)["Id"]

    def image_size(self, ref: str) -> int:
        return int(self.inspect(ref)["Size"])

    def labels(self, ref: str) -> dict[str, str]:
        info = self.inspect(ref)
        config = info.get("Config") or {}
        return dict(config.get("Labels") or info.get("Labels") or {})

    def remove_image(self, ref: str) -> None:
        self.run([self.client, "rmi", "-f", ref], check=False)

    def pull(self, ref: str) -> subprocess.CompletedProcess:
        return self.run([self.client, "pull", ref], check=False)

    def import_tar(self, tar: Path, ref: str) -> None:
        self.run([self.client, "import", str(tar), ref])

    def save(self, ref: str, dest: Path) -> None:
        self.run(self.save_argv(ref, dest))

    def history(self, ref: str) -> list[HistoryEntry]:
        """`image history` of `ref`, bottom (oldest) first."""
        return self.parse_history(self.run(self.history_argv(ref)).stdout)

    # ---- a build client's life: started apart, stopped in order ------------------------------

    def start_build(self, argv: list[str]) -> subprocess.Popen[str]:
        """Start a build client, its stdout and stderr together on one pipe.

        In a session of its own, so a terminal's Ctrl-C reaches vllm-forge only, which then stops
        the build in order (`stop_build`); and with PR_SET_PDEATHSIG, so the client dies with
        vllm-forge even when that is killed outright (SIGKILL) and cannot go on to move a tag.
        """
        return self._start_piped(argv)

    def _start_piped(self, argv: list[str]) -> subprocess.Popen[str]:
        """`argv` with stdout and stderr on one pipe, in a session of its own, dying with us."""
        return subprocess.Popen(
            argv,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )

    def stop_build(
        self, proc: subprocess.Popen[str], *, secrets_dir: Path, grace_s: float = 10.0
    ) -> str:
        """Stop a build `start_build` started, leaving nothing of it running or stored; return
        what the client still printed.

        docker: SIGINT makes the client cancel the build, and BuildKit stops the RUN step
        (measured: its processes are gone within 0.1 s; the same after SIGTERM or SIGKILL).
        podman 4.3 exits on SIGINT or SIGTERM without cleaning up: the RUN step's processes go
        on (in a session of their own under buildah's OCI runtime), and its working containers
        stay in storage with copies of the secret files. So the client's process tree is taken
        first and killed after it, and the working containers whose secrets came from
        `secrets_dir` are removed.
        """
        tree = _descendants({proc.pid})
        rest: list[str] = []
        # Drained aside: a client blocked on a full pipe would never exit, and a process that
        # outlives the client may hold the pipe open.
        reader = threading.Thread(target=lambda: rest.extend(proc.stdout or ()), daemon=True)
        reader.start()
        _signal_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in sorted(set(_descendants(tree)) - {proc.pid}):
            _kill(pid)
        reader.join(timeout=5)
        for container in self.build_containers_using(str(secrets_dir)):
            self.run(self.remove_container_argv(container), check=False)
        return "".join(rest)

    def build_containers(self) -> dict[str, list[str]]:
        """{container ID: its build's secret sources} of every build working container in storage.

        podman/buildah keeps a build's options in <graph root>/<driver>-containers/<ID>/userdata/
        buildah.json, the `--secret id=..,src=..` sources included; docker's BuildKit keeps no
        working containers of its own (empty)."""
        if self.name != "podman":
            return {}
        fmt = "{{.Store.GraphRoot}}\t{{.Store.GraphDriverName}}"
        info = self.run([self.client, "info", "--format", fmt], check=False)
        root, _, driver = info.stdout.strip().partition("\t")
        if info.returncode != 0 or not root or not driver:
            return {}
        found: dict[str, list[str]] = {}
        for state in Path(root, f"{driver}-containers").glob("*/userdata/buildah.json"):
            try:
                options = json.loads(state.read_text()).get("CommonBuildOpts") or {}
            except (OSError, ValueError):
                continue
            found[state.parent.parent.name] = [str(s) for s in options.get("Secrets") or []]
        return found

    def build_containers_using(self, secrets_dir: str) -> list[str]:
        """The working containers of the build whose secret files are in `secrets_dir`."""
        prefix = secrets_dir.rstrip("/") + "/"
        return sorted(
            cid
            for cid, sources in self.build_containers().items()
            if any(prefix in source for source in sources)
        )


def _names_nvidia_gpu(spec: Path) -> bool:
    """Whether a CDI spec file declares the kind nvidia.com/gpu."""
    try:
        return "nvidia.com/gpu" in spec.read_text(errors="replace")
    except OSError:
        return False


def _die_with(parent: int):
    """A preexec_fn: the child gets SIGKILL when `parent` dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before that took effect
            os._exit(1)

    return set_death_signal


def _processes() -> dict[int, tuple[int, str]]:
    """{PID: (parent PID, start time)} of every process, from /proc."""
    found: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 19:
            found[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return found


def _descendants(roots: dict[int, str] | set[int]) -> dict[int, str]:
    """{PID: start time} of `roots` (the living ones) and every process below them. Given a
    previous answer, a PID whose start time changed (reused) is no longer counted."""
    table = _processes()
    known = roots if isinstance(roots, dict) else {}
    found = {
        pid: table[pid][1]
        for pid in roots
        if pid in table and known.get(pid, table[pid][1]) == table[pid][1]
    }
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][1]
                todo.append(child)
    return found


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _limit(which: int, wanted: int) -> int:
    _soft, hard = resource.getrlimit(which)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


# ---- detection ---------------------------------------------------------------------------


def _probe(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})}
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def docker_clients() -> list[str]:
    """Every distinct docker client on PATH, plus Debian's own under /usr/bin."""
    seen: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin"]:
        candidate = Path(directory, "docker")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            real = str(candidate.resolve())
            if real not in [str(Path(s).resolve()) for s in seen]:
                seen.append(str(candidate))
    return seen


def _docker_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def detect_docker() -> tuple[Engine | None, list[str]]:
    """The first docker client that can do BuildKit builds with a running daemon, and why not."""
    reasons: list[str] = []
    clients = docker_clients()
    if not clients:
        return None, ["docker: no client installed (apt-get install docker.io)"]
    for client in clients:
        ver = _probe([client, "version", "--format", "{{.Client.Version}}"])
        client_version = ver.stdout.strip().splitlines()[0] if ver.stdout.strip() else "?"
        if _probe([client, "buildx", "version"]).returncode == 0:
            mode, env = "buildx", {}
        elif _docker_major(client_version) and _docker_major(client_version) < 23:
            mode, env = "buildkit-classic", {"DOCKER_BUILDKIT": "1"}
        else:
            reasons.append(
                f"docker: client {client} ({client_version}) has no buildx plugin and is too new "
                "for DOCKER_BUILDKIT=1 (install docker-buildx, or Debian's docker.io client)"
            )
            continue
        server = _probe([client, "version", "--format", "{{.Server.Version}}"], env)
        if server.returncode != 0 or not server.stdout.strip():
            reasons.append(
                f"docker: the daemon is not running (client {client}); start it: "
                "`nox -s setup`, `systemctl start docker` or `dockerd &`"
            )
            continue
        return Engine(
            name="docker", client=client, mode=mode, version=server.stdout.strip(), env=env
        ), reasons
    return None, reasons


def detect_podman() -> tuple[Engine | None, list[str]]:
    client = shutil.which("podman")
    if client is None:
        return None, ["podman: not installed (apt-get install podman)"]
    ver = _probe([client, "version", "--format", "{{.Client.Version}}"])
    if ver.returncode != 0:
        return None, [f"podman: `podman version` failed: {ver.stderr.strip()[-200:]}"]
    return Engine(name="podman", client=client, mode="podman", version=ver.stdout.strip()), []


def detect(preferred: str | None = None) -> Engine:
    """The engine to use: `preferred` if given (docker|podman), else docker, else podman."""
    if preferred is not None and preferred not in ENGINE_NAMES:
        raise EngineError(f"unknown engine {preferred!r}; choose docker or podman")
    order = [preferred] if preferred else list(ENGINE_NAMES)
    reasons: list[str] = []
    for name in order:
        engine, why = detect_docker() if name == "docker" else detect_podman()
        reasons += why
        if engine is not None:
            return engine
    raise EngineError("no usable container engine: " + "; ".join(reasons))
