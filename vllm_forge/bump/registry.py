"""A small client for the OCI / Docker registry HTTP API v2: list tags, resolve a tag's digest.

Only what the bump needs: anonymous bearer tokens from the `WWW-Authenticate` challenge,
`tags/list` pagination through `Link` headers, and `HEAD manifests/<tag>` with every manifest
type in `Accept`, so that a multi-arch tag gives its index digest rather than one platform's.
Images are `pins.ImageRef`s: the pins' own parser says which registry and repository they name.
Retries (429, 5xx, dropped connections) are the session's: see `http.py`.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urljoin

import requests

from ..errors import RegistryError
from ..pins import DOCKER_HUB, ImageRef
from . import http

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
    """Anonymous, read-only access to one or more registries."""

    def __init__(self, session: requests.Session | None = None, *, timeout_s: float = 30.0) -> None:
        self._session = session or http.session()
        self._timeout = timeout_s
        self._tokens: dict[tuple[str, str], str] = {}

    def list_tags(self, ref: ImageRef, page_size: int = 1000) -> list[str]:
        """Every tag of the repository, following `Link: <...>; rel="next"` pages."""
        where = f"{ref.registry}/{ref.repository}"
        url: str | None = f"{api_base(ref.registry)}/v2/{ref.repository}/tags/list?n={page_size}"
        tags: list[str] = []
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            response = self._request("GET", url, ref)
            if response.status_code == 404:
                raise RegistryError(f"{where}: no such repository")
            tags.extend(_tags_of(response, where))
            url = parse_link_next(response.headers.get("Link"), url)
        if not tags:
            raise RegistryError(f"{where}: the registry lists no tags")
        return tags

    def digest(self, ref: ImageRef, tag: str) -> str | None:
        """The digest `tag` points at now (the multi-arch index's if it is one); None if gone."""
        url = f"{api_base(ref.registry)}/v2/{ref.repository}/manifests/{tag}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = self._request("HEAD", url, ref, headers)
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest:  # some registries omit it on HEAD: hash the manifest itself
            response = self._request("GET", url, ref, headers)
            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if not _DIGEST.match(digest):
            raise RegistryError(
                f"{ref.registry}/{ref.repository}:{tag}: unexpected digest {digest!r}"
            )
        return digest

    def _request(
        self, method: str, url: str, ref: ImageRef, headers: dict[str, str] | None = None
    ) -> requests.Response:
        response = self._send(method, url, ref, headers or {})
        status = response.status_code
        if status == 429:
            raise RegistryError(
                f"{ref.registry} is rate-limiting requests (429): {http.try_later(response)}"
            )
        if status in (401, 403):
            raise RegistryError(
                f"{ref.registry} refused anonymous access to {ref.repository} ({status})"
                " even with a token: check the image name, or that it is public"
            )
        if status >= 400 and status != 404:
            raise RegistryError(
                f"{ref.registry} answered {status} for {method} {url}; {http.try_later(response)}"
            )
        return response

    def _send(
        self, method: str, url: str, ref: ImageRef, headers: dict[str, str]
    ) -> requests.Response:
        key = (ref.registry, f"repository:{ref.repository}:pull")
        response = self._http(method, url, ref, headers, self._tokens.get(key))
        if response.status_code == 401 and key not in self._tokens:
            challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
            if challenge is not None:
                self._tokens[key] = self._fetch_token(challenge, key[1], ref)
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
                f"cannot reach registry {ref.registry} ({type(exc).__name__}): check the network"
                " or proxy settings, or use --packages-only"
            ) from None

    def _fetch_token(self, challenge: dict[str, str], scope: str, ref: ImageRef) -> str:
        params = {"scope": challenge.get("scope") or scope}
        if challenge.get("service"):
            params["service"] = challenge["service"]
        try:
            response = self._session.get(challenge["realm"], params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            raise RegistryError(
                f"cannot reach the token service of {ref.registry} ({type(exc).__name__}):"
                " check the network or proxy settings"
            ) from None
        token = ""
        if response.ok:
            try:
                body = response.json()
                token = body.get("token") or body.get("access_token") or ""
            except (ValueError, AttributeError):
                token = ""
        if not token:
            raise RegistryError(
                f"{ref.registry}: the token service refused an anonymous token for"
                f" {ref.repository} ({response.status_code})"
            )
        return str(token)


def _tags_of(response: requests.Response, where: str) -> list[str]:
    try:
        raw = response.json().get("tags")
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
