"""A small client for the OCI / Docker registry HTTP API v2: list tags, resolve a tag's digest.

Only what the bump needs: anonymous bearer tokens from the `WWW-Authenticate` challenge,
`tags/list` pagination through `Link` headers, and `HEAD manifests/<tag>` with every manifest
type in `Accept`, so that a multi-arch tag gives its index digest rather than one platform's.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from .errors import RegistryError

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

# The distribution spec's grammar for tags and repository path components.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """`[host/]repository:tag[@sha256:...]`, with `name` kept as written for rewriting."""

    name: str  # as written, e.g. "nvidia/cuda" or "127.0.0.1:5000/nvidia/cuda"
    host: str  # "docker.io", "nvcr.io", "127.0.0.1:5000"
    repository: str  # "nvidia/cuda", "library/ubuntu"
    tag: str
    digest: str = ""

    def with_tag(self, tag: str, digest: str) -> ImageRef:
        return ImageRef(
            name=self.name, host=self.host, repository=self.repository, tag=tag, digest=digest
        )

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"


def parse_ref(text: str) -> ImageRef:
    """Parse an image reference; a pin needs a tag (the bump moves tags)."""
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise RegistryError(f"image {text!r}: digest must be sha256:<64 hex digits>")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon <= slash:
        raise RegistryError(f"image {text!r} has no tag; write it as name:tag@sha256:...")
    name, tag = rest[:colon], rest[colon + 1 :]
    if not _TAG.match(tag):
        raise RegistryError(f"image {text!r}: {tag!r} is not a valid tag")
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, remainder
    else:
        host, repository = DOCKER_HUB, name
    if host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not all(_COMPONENT.match(part) for part in repository.split("/")):
        raise RegistryError(f"image {text!r}: {repository!r} is not a valid repository name")
    return ImageRef(name=name, host=host, repository=repository, tag=tag, digest=digest)


def api_base(host: str) -> str:
    """The registry's base URL: Docker Hub's API host, plain http on loopback, else https."""
    if host == DOCKER_HUB:
        return f"https://{_DOCKER_HUB_API}"
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    scheme = "http" if bare in _LOOPBACK_HOSTS else "https"
    return f"{scheme}://{host}"


def parse_link_next(header: str | None, request_url: str) -> str | None:
    """The `rel="next"` target of a `Link` header, made absolute against the request URL."""
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return urljoin(request_url, match.group(1)) if match else None


def parse_challenge(header: str | None) -> dict[str, str] | None:
    """`Bearer realm="..",service="..",scope=".."` as a dict; None if it is not a Bearer one."""
    if not header:
        return None
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    found = {
        m.group(1).lower(): m.group(2) or m.group(3) or ""
        for m in _CHALLENGE_PARAM.finditer(params)
    }
    return found if found.get("realm") else None


def retry_after_seconds(header: str | None, default: int = 60) -> int:
    """`Retry-After` in seconds (the HTTP-date form is read as the default)."""
    try:
        return max(0, int((header or "").strip()))
    except ValueError:
        return default


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """429 handling: wait as told up to `max_wait_s`, at most `attempts` times, then give up."""

    attempts: int = 3
    max_wait_s: int = 30


class RegistryClient:
    """Anonymous, read-only access to one or more registries."""

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session or requests.Session()
        self._timeout = timeout_s
        self._retry = retry
        self._sleep = sleep
        self._tokens: dict[tuple[str, str], str] = {}

    def list_tags(self, ref: ImageRef, page_size: int = 1000) -> list[str]:
        """Every tag of the repository, following `Link: <...>; rel="next"` pages."""
        url: str | None = f"{api_base(ref.host)}/v2/{ref.repository}/tags/list?n={page_size}"
        tags: list[str] = []
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            response = self._request("GET", url, ref)
            if response.status_code == 404:
                raise RegistryError(f"{ref.host}/{ref.repository}: no such repository")
            tags.extend(_tags_of(response, ref))
            url = parse_link_next(response.headers.get("Link"), url)
        if not tags:
            raise RegistryError(f"{ref.host}/{ref.repository}: the registry lists no tags")
        return tags

    def digest(self, ref: ImageRef, tag: str) -> str | None:
        """The digest `tag` points at now (the multi-arch index's if it is one); None if gone."""
        url = f"{api_base(ref.host)}/v2/{ref.repository}/manifests/{tag}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = self._request("HEAD", url, ref, headers)
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest:  # some registries omit it on HEAD: hash the manifest itself
            response = self._request("GET", url, ref, headers)
            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if not _DIGEST.match(digest):
            raise RegistryError(f"{ref.host}/{ref.repository}:{tag}: unexpected digest {digest!r}")
        return digest

    def _request(
        self, method: str, url: str, ref: ImageRef, headers: dict[str, str] | None = None
    ) -> requests.Response:
        scope = f"repository:{ref.repository}:pull"
        for attempt in range(1, self._retry.attempts + 1):
            response = self._send(method, url, ref, scope, headers or {})
            if response.status_code != 429:
                break
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait > self._retry.max_wait_s or attempt == self._retry.attempts:
                raise RegistryError(
                    f"{ref.host} is rate-limiting requests (429): wait {wait} s and run bump again"
                )
            self._sleep(wait)
        if response.status_code in (401, 403):
            raise RegistryError(
                f"{ref.host} refused anonymous access to {ref.repository} ({response.status_code})"
                " even with a token: check the image name, or that it is public"
            )
        if response.status_code >= 400 and response.status_code != 404:
            raise RegistryError(
                f"{ref.host} answered {response.status_code} for {method} {url}; try again later"
            )
        return response

    def _send(
        self, method: str, url: str, ref: ImageRef, scope: str, headers: dict[str, str]
    ) -> requests.Response:
        key = (ref.host, scope)
        response = self._http(method, url, ref, headers, self._tokens.get(key))
        if response.status_code == 401 and key not in self._tokens:
            challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
            if challenge is not None:
                self._tokens[key] = self._fetch_token(challenge, scope, ref)
                response = self._http(method, url, ref, headers, self._tokens[key])
        return response

    def _http(
        self, method: str, url: str, ref: ImageRef, headers: dict[str, str], token: str | None
    ) -> requests.Response:
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        try:
            return self._session.request(method, url, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            raise RegistryError(
                f"cannot reach registry {ref.host} ({type(exc).__name__}): check the network or"
                " proxy settings, or use --packages-only"
            ) from None

    def _fetch_token(self, challenge: dict[str, str], scope: str, ref: ImageRef) -> str:
        params = {"scope": challenge.get("scope") or scope}
        if challenge.get("service"):
            params["service"] = challenge["service"]
        try:
            response = self._session.get(challenge["realm"], params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            raise RegistryError(
                f"cannot reach the token service of {ref.host} ({type(exc).__name__}):"
                " check the network or proxy settings"
            ) from None
        token = ""
        if response.ok:
            try:
                body = response.json()
                token = body.get("token") or body.get("access_token") or ""
            except ValueError:
                token = ""
        if not token:
            raise RegistryError(
                f"{ref.host}: the token service refused an anonymous token for {ref.repository}"
                f" ({response.status_code})"
            )
        return str(token)


def _tags_of(response: requests.Response, ref: ImageRef) -> list[str]:
    try:
        raw = response.json().get("tags")
    except (ValueError, AttributeError):
        raise RegistryError(f"{ref.host}/{ref.repository}: tags/list is not JSON") from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RegistryError(f"{ref.host}/{ref.repository}: tags/list has no list of tags")
    bad = [t for t in raw if not isinstance(t, str) or not _TAG.match(t)]
    if bad:
        raise RegistryError(
            f"{ref.host}/{ref.repository}: the registry returned malformed tags, e.g. {bad[0]!r}"
        )
    return raw
