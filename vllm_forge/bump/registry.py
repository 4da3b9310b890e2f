"""A small client for the OCI / Docker registry HTTP API v2: list tags, resolve a tag's digest.

Only what the bump needs: anonymous bearer tokens from the `WWW-Authenticate` challenge,
`tags/list` pagination through `Link` headers, and `HEAD manifests/<tag>` with every manifest
type in `Accept`, so that a multi-arch tag gives its index digest rather than one platform's.
Images are `pins.ImageRef`s: the pins' own parser says which registry and repository they name.
Retries (429, 5xx, dropped connections), deadlines, size caps and redirects are `http.py`'s;
here: at most MAX_TAG_PAGES pages of tags, and a token only for the origin it was issued for.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urljoin

from ..errors import RegistryError
from ..pins import DOCKER_HUB, ImageRef
from . import http

MAX_TAG_PAGES = 100  # nvidia/cuda has a few thousand tags: a handful of pages of 1000
MAX_TAGS_PAGE = 4 * 1024 * 1024  # bytes of one tags/list page
MAX_MANIFEST = 4 * 1024 * 1024
MAX_TOKEN = 64 * 1024

_DOCKER_HUB_API = "registry-1.docker.io"  # Docker Hub serves the v2 API on its own host
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')


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


class RegistryClient:
    """Anonymous, read-only access to one or more registries.

    A bearer token is kept for the origin (scheme, host, port) whose challenge led to it and sent
    only there: a `Link` page or a redirect on another origin goes without it.
    """

    def __init__(
        self,
        client: http.Client | None = None,
        *,
        timeout_s: float | None = None,
        deadline_s: float | None = None,
        max_pages: int = MAX_TAG_PAGES,
    ) -> None:
        self._http = client or http.Client()
        if timeout_s is not None:
            self._http.connect_timeout_s = self._http.read_timeout_s = timeout_s
        if deadline_s is not None:
            self._http.deadline_s = deadline_s
        self._max_pages = max_pages
        self._tokens: dict[tuple[tuple[str, str, int | None], str], str] = {}

    def list_tags(self, ref: ImageRef, page_size: int = 1000) -> list[str]:
        """Every tag of the repository, following `Link: <...>; rel="next"` pages."""
        where = f"{ref.registry}/{ref.repository}"
        deadline = self._http.deadline(f"listing the tags of {where}")
        url: str | None = f"{api_base(ref.registry)}/v2/{ref.repository}/tags/list?n={page_size}"
        tags: list[str] = []
        seen: set[str] = set()
        while url and url not in seen:
            if len(seen) >= self._max_pages:
                raise RegistryError(
                    f"{where}: the registry sent more than {self._max_pages} pages of tags"
                    f" ({page_size} a page asked); refusing to follow more"
                )
            seen.add(url)
            answer = self._request("GET", url, ref, deadline)
            if answer.status == 404:
                raise RegistryError(f"{where}: no such repository")
            tags.extend(_tags_of(answer, where))
            url = parse_link_next(answer.headers.get("Link"), answer.url)
        if not tags:
            raise RegistryError(f"{where}: the registry lists no tags")
        return tags

    def digest(self, ref: ImageRef, tag: str) -> str | None:
        """The digest `tag` points at now (the multi-arch index's if it is one); None if gone."""
        url = f"{api_base(ref.registry)}/v2/{ref.repository}/manifests/{tag}"
        deadline = self._http.deadline(f"resolving {ref.registry}/{ref.repository}:{tag}")
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        answer = self._request("HEAD", url, ref, deadline, headers)
        if answer.status == 404:
            return None
        digest = answer.headers.get("Docker-Content-Digest", "")
        if not digest:  # some registries omit it on HEAD: hash the manifest itself
            answer = self._request("GET", url, ref, deadline, headers, max_bytes=MAX_MANIFEST)
            digest = "sha256:" + hashlib.sha256(answer.content).hexdigest()
        if not _DIGEST.match(digest):
            raise RegistryError(
                f"{ref.registry}/{ref.repository}:{tag}: unexpected digest {digest!r}"
            )
        return digest

    def _request(
        self,
        method: str,
        url: str,
        ref: ImageRef,
        deadline: http.Deadline,
        headers: dict[str, str] | None = None,
        *,
        max_bytes: int = MAX_TAGS_PAGE,
    ) -> http.Answer:
        answer = self._send(method, url, ref, deadline, headers or {}, max_bytes)
        status = answer.status
        if status == 429:
            raise RegistryError(
                f"{ref.registry} is rate-limiting requests (429): {http.try_later(answer)}"
            )
        if status in (401, 403):
            raise RegistryError(self._refusal(answer, ref, url))
        if status >= 400 and status != 404:
            raise RegistryError(
                f"{ref.registry} answered {status} for {method} {url}; {http.try_later(answer)}"
            )
        return answer

    def _refusal(self, answer: http.Answer, ref: ImageRef, url: str) -> str:
        where = f"{ref.registry} refused access to {ref.repository} ({answer.status})"
        challenge = answer.headers.get("WWW-Authenticate", "")
        scheme = challenge.strip().split(" ", 1)[0].lower() if challenge.strip() else ""
        if (http.origin(url), _scope(ref)) in self._tokens:
            return f"{where} even with a token: check the image name, or that it is public"
        if scheme == "basic":
            return (
                f"{where}: it asks for a login (Basic auth), and bump reads public images"
                " anonymously: check the image name, or that it is public"
            )
        return f"{where} without credentials: check the image name, or that it is public"

    def _send(
        self,
        method: str,
        url: str,
        ref: ImageRef,
        deadline: http.Deadline,
        headers: dict[str, str],
        max_bytes: int,
    ) -> http.Answer:
        key = (http.origin(url), _scope(ref))
        answer = self._http_request(method, url, ref, deadline, headers, key, max_bytes)
        if answer.status == 401 and key not in self._tokens:
            challenge = parse_challenge(answer.headers.get("WWW-Authenticate"))
            if challenge is not None:
                self._tokens[key] = self._fetch_token(challenge, key[1], ref, deadline)
                answer = self._http_request(method, url, ref, deadline, headers, key, max_bytes)
        return answer

    def _http_request(
        self,
        method: str,
        url: str,
        ref: ImageRef,
        deadline: http.Deadline,
        headers: dict[str, str],
        key: tuple[tuple[str, str, int | None], str],
        max_bytes: int,
    ) -> http.Answer:
        token = self._tokens.get(key)
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        try:
            return self._http.fetch(
                method, url, deadline=deadline, headers=headers, max_bytes=max_bytes
            )
        except http.Failure as failure:
            raise RegistryError(
                f"registry {ref.registry}: {failure.message} (or use --packages-only)"
            ) from None

    def _fetch_token(
        self, challenge: dict[str, str], scope: str, ref: ImageRef, deadline: http.Deadline
    ) -> str:
        params = {"scope": challenge.get("scope") or scope}
        if challenge.get("service"):
            params["service"] = challenge["service"]
        try:
            answer = self._http.fetch(
                "GET", challenge["realm"], deadline=deadline, params=params, max_bytes=MAX_TOKEN
            )
        except http.Failure as failure:
            raise RegistryError(f"the token service of {ref.registry}: {failure.message}") from None
        token = ""
        if answer.ok:
            try:
                body = answer.json()
                token = body.get("token") or body.get("access_token") or ""
            except (ValueError, AttributeError):
                token = ""
        if not token:
            raise RegistryError(
                f"{ref.registry}: the token service refused an anonymous token for"
                f" {ref.repository} ({answer.status})"
            )
        return str(token)


def _scope(ref: ImageRef) -> str:
    return f"repository:{ref.repository}:pull"


def _tags_of(answer: http.Answer, where: str) -> list[str]:
    try:
        raw = answer.json().get("tags")
    except (ValueError, AttributeError):
        raise RegistryError(f"{where}: tags/list is not JSON") from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RegistryError(f"{where}: tags/list has no list of tags")
    bad = [t for t in raw if not isinstance(t, str) or not ImageRef.is_tag(t)]
    if bad:
        raise RegistryError(f"{where}: the registry returned malformed tags, e.g. {bad[0]!r}")
    return raw
