"""The registry client against a real `docker-registry` on loopback and a paginating server."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time
from collections.abc import Iterator

import pytest
from bumpkit import (
    FakeRegistryState,
    QuietHandler,
    docker_registry,
    fake_registry,
    free_port,
    push_image,
    serve,
)

from vllm_forge.bump import http
from vllm_forge.bump.registry import RegistryClient
from vllm_forge.errors import RegistryError
from vllm_forge.pins import ImageRef

VERSIONS = ("12.8.0", "12.8.1", "12.9.0", "13.0.1")
SUFFIXES = (
    "-devel-ubuntu24.04",
    "-cudnn-devel-ubuntu24.04",
    "-base-ubuntu24.04",
    "-runtime-ubuntu22.04",
)
DIGEST = "sha256:" + "0" * 64


def parse_ref(text: str) -> ImageRef:
    return ImageRef.parse(text, "[images].devel", need_digest=False)


class CudaRegistry:
    """A real registry with nvidia/cuda tags; `first` holds digests before the re-push."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.first: dict[str, str] = {}
        self.now: dict[str, str] = {}

    def ref(self, tag: str, digest: str | None = None) -> str:
        return f"{self.host}/nvidia/cuda:{tag}@{digest or self.first[tag]}"


@pytest.fixture(scope="module")
def cuda_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CudaRegistry]:
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
    workdir = tmp_path_factory.mktemp("registry")
    with docker_registry(workdir) as host:
        registry = CudaRegistry(host)
        for version in VERSIONS:
            for suffix in SUFFIXES:
                tag = version + suffix
                registry.first[tag] = registry.now[tag] = push_image(host, "nvidia/cuda", tag)
        # NVIDIA re-pushes a tag with fixes: same tag, new digest.
        repushed = "12.8.1-base-ubuntu24.04"
        registry.now[repushed] = push_image(host, "nvidia/cuda", repushed, seed="fix")
        assert registry.now[repushed] != registry.first[repushed]
        yield registry
    shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------- real registry
def test_real_registry_lists_every_pushed_tag(cuda_registry: CudaRegistry):
    ref = parse_ref(cuda_registry.ref("12.8.1-devel-ubuntu24.04"))
    assert sorted(RegistryClient().list_tags(ref)) == sorted(cuda_registry.now)


def test_digest_is_the_multi_arch_index_not_the_platform_manifest(cuda_registry: CudaRegistry):
    tag = "12.9.0-devel-ubuntu24.04"
    ref = parse_ref(cuda_registry.ref(tag))
    assert RegistryClient().digest(ref, tag) == cuda_registry.now[tag]


def test_repushed_tag_resolves_to_the_new_digest(cuda_registry: CudaRegistry):
    tag = "12.8.1-base-ubuntu24.04"
    ref = parse_ref(cuda_registry.ref(tag))
    assert RegistryClient().digest(ref, tag) == cuda_registry.now[tag] != ref.digest


def test_unknown_tag_on_real_registry_is_none(cuda_registry: CudaRegistry):
    ref = parse_ref(cuda_registry.ref("12.8.1-devel-ubuntu24.04"))
    assert RegistryClient().digest(ref, "12.8.1-devel-ubuntu18.04") is None


def test_unknown_repository_is_one_line(cuda_registry: CudaRegistry):
    ref = parse_ref(f"{cuda_registry.host}/nvidia/nothing:12.8.1-x@{DIGEST}")
    with pytest.raises(RegistryError, match="no such repository"):
        RegistryClient().list_tags(ref)


# ---------------------------------------------------------------------------- paginating server
def _tags(n: int = 7) -> list[str]:
    return [f"12.8.{i}-devel-ubuntu24.04" for i in range(n)]


def test_pagination_follows_link_headers_with_a_bearer_token():
    state = FakeRegistryState(tags=_tags(7), page_size=2)
    with fake_registry(state) as host:
        tags = RegistryClient().list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-devel-ubuntu24.04"))
    assert tags == sorted(_tags(7))
    pages = [p for m, p, auth in state.seen if "tags/list" in p and auth == "Bearer t0k3n"]
    assert len(pages) == 4  # 2 + 2 + 2 + 1
    assert sum(1 for _, p, _ in state.seen if p.startswith("/token")) == 1


def test_token_service_without_service_parameter_like_nvcr():
    state = FakeRegistryState(tags=_tags(3), service=None)
    with fake_registry(state) as host:
        ref = parse_ref(f"{host}/nvidia/cuda:12.8.0-devel-ubuntu24.04")
        assert len(RegistryClient().list_tags(ref)) == 3


def test_head_of_deleted_tag_is_none_and_known_tag_gives_digest():
    state = FakeRegistryState(tags=_tags(2), digests={"12.8.1-devel-ubuntu24.04": DIGEST})
    with fake_registry(state) as host:
        ref = parse_ref(f"{host}/nvidia/cuda:12.8.0-devel-ubuntu24.04")
        client = RegistryClient()
        assert client.digest(ref, "12.8.0-devel-ubuntu24.04") is None
        assert client.digest(ref, "12.8.1-devel-ubuntu24.04") == DIGEST
    heads = [p for m, p, _ in state.seen if m == "HEAD"]
    assert heads and all("manifests" in p for p in heads)


def test_429_is_retried_after_the_time_it_asks_for():
    state = FakeRegistryState(tags=_tags(2), rate_limited=2, retry_after="1")
    with fake_registry(state) as host:
        started = time.monotonic()
        assert len(RegistryClient().list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))) == 2
        waited = time.monotonic() - started
    assert waited >= 1.9  # Retry-After: 1, twice
    assert [m for m, p, _ in state.seen if "tags/list" in p].count("GET") >= 3


def test_429_with_long_retry_after_gives_up_at_once_and_says_how_long_to_wait():
    state = FakeRegistryState(tags=_tags(2), rate_limited=5, retry_after="120")
    started = time.monotonic()
    with fake_registry(state) as host, pytest.raises(RegistryError) as info:
        RegistryClient().list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))
    assert time.monotonic() - started < 10
    assert "(429): wait 120 s" in str(info.value) and "\n" not in str(info.value)
    assert state.rate_limited == 4  # one request, no retry


def test_5xx_is_retried_a_bounded_number_of_times_then_named():
    state = FakeRegistryState(tags=_tags(2), rate_limited=50, refusal=503)
    with fake_registry(state) as host, pytest.raises(RegistryError, match="answered 503") as info:
        client = RegistryClient(http.Client(attempts=3, backoff_s=0))
        client.list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))
    assert state.rate_limited == 50 - 4  # the request and three retries
    assert "\n" not in str(info.value)


def test_a_passing_5xx_is_retried_away():
    state = FakeRegistryState(tags=_tags(2), rate_limited=2, refusal=502)
    with fake_registry(state) as host:
        client = RegistryClient(http.Client(backoff_s=0))
        assert len(client.list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))) == 2


def test_401_even_with_a_token_is_one_line():
    state = FakeRegistryState(tags=_tags(2), token_refused=True)
    with (
        fake_registry(state) as host,
        pytest.raises(
            RegistryError, match=r"refused access to nvidia/cuda \(401\) even with a token"
        ),
    ):
        RegistryClient().list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"name":"nvidia/cuda","tags":["12.8.1-devel", "bad tag!"]}', "malformed tags"),
        (b'{"name":"nvidia/cuda","tags":[]}', "lists no tags"),
        (b'{"name":"nvidia/cuda","tags":null}', "lists no tags"),
        (b"<html>oops</html>", "not JSON"),
    ],
)
def test_bad_tag_lists_are_one_line(body: bytes, message: str):
    state = FakeRegistryState(tags=[], raw_tags_body=body)
    with fake_registry(state) as host, pytest.raises(RegistryError, match=message):
        RegistryClient().list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))


def test_unreachable_registry_is_one_line():
    ref = parse_ref(f"127.0.0.1:{free_port()}/nvidia/cuda:12.8.0-x")
    with pytest.raises(
        RegistryError, match="registry 127.0.0.1:[0-9]+: cannot reach 127.0.0.1"
    ) as info:
        RegistryClient(timeout_s=2).list_tags(ref)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- hostile servers
class Hostile(QuietHandler):
    """A registry that misbehaves as `mode` says; `other` is a second origin's base URL."""

    mode = ""
    other = ""
    seen: list[tuple[str, str]] = []  # (path, Authorization) of each request
    drip_s = 0.2

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization", "")))
        if self.path.startswith("/token"):
            return self.reply(200, b'{"token": "s3cret"}')
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        mode = self.mode
        if (
            mode in ("other-origin", "bearer")
            and self.headers.get("Authorization") != "Bearer s3cret"
        ):
            challenge = f'Bearer realm="{base}/token",service="s"'
            return self.reply(401, b"{}", {"WWW-Authenticate": challenge})
        if mode == "other-origin":
            link = f'<{self.other}/v2/nvidia/cuda/tags/list?page=2>; rel="next"'
            return self.reply(200, b'{"tags": ["12.8.1-x"]}', {"Link": link})
        if mode == "pages":
            page = int(self.path.rsplit("=", 1)[-1]) if "page=" in self.path else 0
            link = f'</v2/nvidia/cuda/tags/list?page={page + 1}>; rel="next"'
            return self.reply(200, f'{{"tags": ["12.8.{page}-x"]}}'.encode(), {"Link": link})
        if mode == "redirect-loop":
            target = "/v2/a" if not self.path.startswith("/v2/a") else "/v2/nvidia/cuda/tags/list"
            return self.reply(302, b"", {"Location": target})
        if mode == "short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"tags": [')
            self.close_connection = True
            return None
        if mode == "basic":
            return self.reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="login"'})
        if mode == "huge":
            return self.reply(200, b" " * (5 * 1024 * 1024))
        if mode == "header-drip":  # the status line and headers, a byte at a time, forever
            with contextlib.suppress(OSError):
                for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(self.drip_s)
            return None
        if mode in ("drip", "endless-drip"):
            body = b'{"tags": ["12.8.1-x"]}'
            self.send_response(200)
            if mode == "drip":
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            with contextlib.suppress(OSError):
                for i in itertools.count():
                    if mode == "drip" and i >= len(body):
                        break
                    self.wfile.write(body[i : i + 1] if mode == "drip" else b" ")
                    self.wfile.flush()
                    time.sleep(self.drip_s)
            return None
        return self.reply(200, b'{"tags": ["12.8.1-x"]}')


@contextlib.contextmanager
def hostile(mode: str, *, other: str = "") -> Iterator[ImageRef]:
    handler = type("H", (Hostile,), {"mode": mode, "other": other, "seen": []})
    with serve(handler) as base:
        yield parse_ref(f"{base.removeprefix('http://')}/nvidia/cuda:12.8.1-x"), handler


@pytest.mark.parametrize("mode", ["drip", "endless-drip", "header-drip"])
def test_a_dripping_body_ends_at_the_operations_deadline(mode):
    """Each byte comes in well under the read timeout: only an overall deadline ends it."""
    with hostile(mode) as (ref, _):
        client = RegistryClient(timeout_s=2, deadline_s=2)
        started = time.monotonic()
        with pytest.raises(RegistryError, match="did not finish in 2 s") as info:
            client.list_tags(ref)
        took = time.monotonic() - started
    assert took < 3.0, took  # the deadline, not 4.4 s of drip (or never, for the endless one)
    assert "\n" not in str(info.value)


def test_tag_pages_stop_at_the_cap():
    with (
        hostile("pages") as (ref, handler),
        pytest.raises(RegistryError, match="more than 5 pages of tags"),
    ):
        RegistryClient(max_pages=5).list_tags(ref)
    assert len(handler.seen) == 5


def test_a_token_is_sent_only_to_the_origin_it_was_issued_for():
    seen_elsewhere: list[str] = []

    class Other(QuietHandler):
        def do_GET(self) -> None:
            seen_elsewhere.append(self.headers.get("Authorization", ""))
            self.reply(200, b'{"tags": ["12.8.2-x"]}')

    with serve(Other) as other, hostile("other-origin", other=other) as (ref, handler):
        tags = RegistryClient().list_tags(ref)
    assert tags == ["12.8.1-x", "12.8.2-x"]
    assert ("/v2/nvidia/cuda/tags/list?n=1000", "Bearer s3cret") in handler.seen
    assert seen_elsewhere == [""]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("redirect-loop", "redirects in a loop ("),
        ("short", "broke off after 10 of 1000 bytes (the connection was closed early)"),
        ("basic", "(401): it asks for a login (Basic auth), and bump reads public images"),
        ("huge", "is 5242880 bytes, over 4194304"),
    ],
)
def test_hostile_answers_are_named_for_what_they_are(mode, message):
    with hostile(mode) as (ref, _), pytest.raises(RegistryError) as info:
        RegistryClient(http.Client(backoff_s=0)).list_tags(ref)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert "even with a token" not in str(info.value)
    if mode != "short":
        assert "check the network or proxy" not in str(info.value)


def test_a_retry_after_past_the_deadline_is_not_sat_out():
    state = FakeRegistryState(tags=_tags(2), rate_limited=5, retry_after="5")
    started = time.monotonic()
    with fake_registry(state) as host, pytest.raises(RegistryError, match="wait 5 s"):
        RegistryClient(deadline_s=3).list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))
    assert time.monotonic() - started < 2
