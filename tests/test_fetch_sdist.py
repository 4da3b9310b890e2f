"""scripts/fetch_sdist.py, the script the image runs, against real HTTP indexes on 127.0.0.1.

Each index is an http.server in a thread: one that answers PEP 691 JSON when asked for it, one
that serves only PEP 503 HTML (a static mirror), one behind HTTP Basic auth. The script runs as
the image runs it: a subprocess with NAME VERSION SHA256 DEST, its index from pip's configuration
(PIP_INDEX_URL, or a pip.conf read through `pip config list`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "vllm_forge" / "scripts" / "fetch_sdist.py"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"

SDIST = b"vllm 0.19.1 sdist bytes\n" * 100
SHA = hashlib.sha256(SDIST).hexdigest()
USER, PASSWORD = "forge", "s3cr3t-token"


@dataclass
class Index:
    """What the server serves: {filename: bytes}, the sha256 it lists for each (None: none)."""

    files: dict[str, bytes]
    listed: dict[str, str | None] = field(default_factory=dict)
    json: bool = True  # answers PEP 691 JSON to a client that asks for it
    auth: bool = False
    cut_download: bool = False  # promise the whole file, send half, hang up
    broken_page: bool = False  # a JSON page that is not JSON
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (path, accept, auth)

    def page(self, project: str, as_json: bool) -> tuple[bytes, str]:
        entries = [
            (name, f"../../files/{name}", self.listed.get(name, hashlib.sha256(data).hexdigest()))
            for name, data in self.files.items()
            if name.lower().replace("_", "-").startswith(project + "-")
        ]
        if as_json:
            body = {
                "meta": {"api-version": "1.0"},
                "name": project,
                "files": [
                    {"filename": n, "url": u, "hashes": {"sha256": h} if h else {}}
                    for n, u, h in entries
                ],
            }
            return json.dumps(body).encode(), JSON_TYPE
        anchors = "".join(
            f'<a href="{u}{"#sha256=" + h if h else ""}">{n}</a><br/>\n' for n, u, h in entries
        )
        html = f"<!DOCTYPE html><html><body><h1>Links for {project}</h1>\n{anchors}</body></html>"
        return html.encode(), "text/html"


def handler(index: Index) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def do_GET(self) -> None:
            accept = self.headers.get("Accept", "")
            auth = self.headers.get("Authorization", "")
            index.seen.append((self.path, accept, auth))
            wanted = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if index.auth and auth != wanted:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="index"')
                self.end_headers()
                return
            parts = [p for p in self.path.split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                body, content_type = index.page(parts[1], index.json and JSON_TYPE in accept)
                if index.broken_page:
                    body, content_type = b'{"files": [', JSON_TYPE
                return self.send(200, body, content_type)
            if len(parts) == 2 and parts[0] == "files" and parts[1] in index.files:
                data = index.files[parts[1]]
                if index.cut_download:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return None
                return self.send(200, data, "application/octet-stream")
            self.send(404, b"not found", "text/plain")

        def send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(index: Index) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler(index))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def fetch(
    tmp_path: Path,
    *,
    index_url: str | None = None,
    pip_conf: str | None = None,
    version: str = "0.19.1",
    sha256: str = SHA,
) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the script as the image does; pip's configuration is only what is given here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    if index_url is not None:
        env["PIP_INDEX_URL"] = index_url
    if pip_conf is not None:
        conf = tmp_path / "pip.conf"
        conf.write_text(pip_conf)
        env["PIP_CONFIG_FILE"] = str(conf)
    dest = tmp_path / "vllm.tar.gz"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "vllm", version, sha256, str(dest)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return result, dest


def _never_names_the_index(result: subprocess.CompletedProcess, host: str) -> None:
    output = result.stdout + result.stderr
    assert host not in output and host.split(":")[1] not in output
    assert PASSWORD not in output and "http://" not in output


def test_json_index_is_read_and_the_sdist_checked(serve, tmp_path):
    index = Index(files={"vllm-0.19.1.tar.gz": SDIST, "vllm-0.19.0.tar.gz": b"old"})
    host = serve(index)
    result, dest = fetch(tmp_path, index_url=f"http://{host}/simple")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "fetch-sdist: vllm-0.19.1.tar.gz sha256 ok\n"
    assert dest.read_bytes() == SDIST
    assert JSON_TYPE in index.seen[0][1]  # it asked for PEP 691 JSON
    _never_names_the_index(result, host)


def test_html_only_index_is_read_as_pep_503(serve, tmp_path):
    index = Index(files={"vllm-0.19.1.tar.gz": SDIST}, json=False)
    host = serve(index)
    result, dest = fetch(tmp_path, index_url=f"http://{host}/simple/")
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == SDIST
    assert [path for path, _, _ in index.seen] == ["/simple/vllm/", "/files/vllm-0.19.1.tar.gz"]


def test_html_index_without_hash_fragments_still_checks_the_download(serve, tmp_path):
    index = Index(files={"vllm-0.19.1.tar.gz": SDIST}, listed={"vllm-0.19.1.tar.gz": None})
    index.json = False
    host = serve(index)
    result, dest = fetch(tmp_path, index_url=f"http://{host}/simple")
    assert result.returncode == 0, result.stderr
    result, dest = fetch(tmp_path, index_url=f"http://{host}/simple", sha256="0" * 64)
    assert result.returncode == 1
    assert f"fetch-sdist: vllm-0.19.1.tar.gz: sha256 {SHA} != pinned {'0' * 64}" in result.stderr
    assert dest.read_bytes() == SDIST  # the earlier good file, not replaced by a bad one
    assert not Path(f"{dest}.part").exists()


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "html"])
def test_a_listed_hash_other_than_the_pin_fails_before_downloading(serve, tmp_path, as_json):
    index = Index(files={"vllm-0.19.1.tar.gz": SDIST}, json=as_json)
    host = serve(index)
    result, dest = fetch(tmp_path, index_url=f"http://{host}/simple", sha256="a" * 64)
    assert result.returncode == 1
    assert result.stderr == (
        f"fetch-sdist: vllm-0.19.1.tar.gz: the configured index lists sha256 {SHA}"
        f" != pinned {'a' * 64}\n"
    )
    assert not dest.exists()
    assert all(not path.startswith("/files/") for path, _, _ in index.seen)
    _never_names_the_index(result, host)


def test_a_download_other_than_the_listed_hash_fails(serve, tmp_path):
    index = Index(files={"vllm-0.19.1.tar.gz": b"tampered"}, listed={"vllm-0.19.1.tar.gz": SHA})
    host = serve(index)
    result, dest = fetch(tmp_path, index_url=f"http://{host}/simple")
    assert result.returncode == 1
    tampered = hashlib.sha256(b"tampered").hexdigest()
    assert f"sha256 {tampered} != pinned {SHA}" in result.stderr
    assert not dest.exists()


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "html"])
def test_a_missing_version_says_so_without_the_url(serve, tmp_path, as_json):
    index = Index(files={"vllm-0.19.0.tar.gz": b"old", "vllm-0.19.1-py3-none-any.whl": b"w"})
    index.json = as_json
    host = serve(index)
    result, dest = fetch(tmp_path, index_url=f"http://{host}/simple")
    assert result.returncode == 1
    assert result.stderr == "fetch-sdist: vllm 0.19.1: no sdist on the configured index\n"
    assert not dest.exists()
    _never_names_the_index(result, host)


def test_index_url_from_pip_conf_through_pip_config_list(serve, tmp_path):
    """No PIP_INDEX_URL: the script asks `pip config list`, where [install] beats [global]."""
    good = serve(Index(files={"vllm-0.19.1.tar.gz": SDIST}))
    conf = f"[global]\nindex-url = http://127.0.0.1:9/nothing\n[install]\nindex-url = http://{good}/simple\n"
    result, dest = fetch(tmp_path, pip_conf=conf)
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == SDIST


def test_pip_config_list_reports_the_environment(tmp_path):
    """What the script relies on when pip, not the script, reads PIP_INDEX_URL."""
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:1/s"}
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, env=env
    ).stdout
    assert ":env:.index-url='http://127.0.0.1:1/s'" in out.splitlines()


def test_credentials_in_the_index_url_are_sent_and_never_printed(serve, tmp_path):
    index = Index(files={"vllm-0.19.1.tar.gz": SDIST}, auth=True)
    host = serve(index)
    result, dest = fetch(tmp_path, index_url=f"http://{USER}:{PASSWORD}@{host}/simple")
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == SDIST
    assert all(auth.startswith("Basic ") for _, _, auth in index.seen)
    _never_names_the_index(result, host)
    result, _ = fetch(tmp_path, index_url=f"http://{USER}:wrong@{host}/simple")
    assert result.returncode == 1
    assert result.stderr == "fetch-sdist: the configured index answered HTTP 401 Unauthorized\n"
    _never_names_the_index(result, host)


def test_an_unreachable_index_fails_in_one_line_without_the_url(tmp_path):
    result, _ = fetch(tmp_path, index_url=f"http://{USER}:{PASSWORD}@127.0.0.1:9/simple")
    assert result.returncode == 1
    assert result.stderr.startswith("fetch-sdist: the configured index is unreachable (")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "127.0.0.1" not in result.stderr and PASSWORD not in result.stderr


@pytest.mark.parametrize("trouble", ["cut_download", "broken_page"])
def test_a_broken_download_or_page_is_one_line_and_leaves_no_file(serve, tmp_path, trouble):
    index = Index(files={"vllm-0.19.1.tar.gz": SDIST}, **{trouble: True})
    host = serve(index)
    result, dest = fetch(tmp_path, index_url=f"http://{host}/simple")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not dest.exists() and not list(tmp_path.glob("*.part"))
    _never_names_the_index(result, host)


def test_a_missing_ca_bundle_is_one_line(tmp_path):
    result, _ = fetch(
        tmp_path,
        pip_conf=f"[global]\nindex-url = http://127.0.0.1:9/simple\ncert = {tmp_path}/no.pem\n",
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"fetch-sdist: the CA bundle {tmp_path}/no.pem cannot be read")
    assert "Traceback" not in result.stderr


def test_wrong_arguments_exit_1_with_the_usage(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "vllm"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "usage: fetch_sdist.py NAME VERSION SHA256 DEST" in result.stderr
