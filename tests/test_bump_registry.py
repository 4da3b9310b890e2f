"""The registry client against a real `docker-registry` on loopback and a paginating server."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from bumpkit import FakeRegistryState, docker_registry, fake_registry, free_port, push_image

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
        client = RegistryClient(http.session(attempts=3, backoff_factor=0))
        client.list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))
    assert state.rate_limited == 50 - 4  # the request and three retries
    assert "\n" not in str(info.value)


def test_a_passing_5xx_is_retried_away():
    state = FakeRegistryState(tags=_tags(2), rate_limited=2, refusal=502)
    with fake_registry(state) as host:
        client = RegistryClient(http.session(backoff_factor=0))
        assert len(client.list_tags(parse_ref(f"{host}/nvidia/cuda:12.8.0-x"))) == 2


def test_401_even_with_a_token_is_one_line():
    state = FakeRegistryState(tags=_tags(2), token_refused=True)
    with fake_registry(state) as host, pytest.raises(RegistryError, match="refused anonymous"):
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
    with pytest.raises(RegistryError, match="cannot reach registry") as info:
        RegistryClient(timeout_s=2).list_tags(ref)
    assert "\n" not in str(info.value)
