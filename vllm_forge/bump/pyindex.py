"""A client for a PEP 503 / PEP 691 simple index, and wheel metadata read by HTTP range requests.

The index URL is the profile's `[torch].index_url`, else the user's pip configuration
(`pipconfig`). Where the index serves no PEP 658 metadata files, `Requires-Dist` comes from the
wheel itself: the zip's central directory and its `METADATA` member, fetched with `Range`
requests (a few hundred KB, not 900 MB). Retries, deadlines and size caps are `http.py`'s: a
project page and a wheel's metadata are one operation each, under one deadline.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from ..errors import IndexError_
from . import http

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
MAX_PAGE = 64 * 1024 * 1024  # bytes of one project page (torch's is a few MB)
MAX_METADATA = 16 * 1024 * 1024
_ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"


# ---------------------------------------------------------------------------- index data
@dataclass(frozen=True, kw_only=True)
class Dist:
    """One file of a project on the index."""

    filename: str
    url: str
    version: Version
    sha256: str = ""
    yanked: bool = False
    requires_python: str = ""
    tags: frozenset[Tag] = frozenset()  # empty for an sdist
    build: tuple[int, str] | tuple[()] = ()
    metadata_url: str = ""  # PEP 658, when the index offers it
    size: int = 0

    @property
    def is_wheel(self) -> bool:
        return bool(self.tags)


@dataclass(frozen=True, kw_only=True)
class Metadata:
    name: str
    version: str
    requires_dist: tuple[Requirement, ...]
    requires_python: str = ""


def make_dist(
    filename: str,
    url: str,
    *,
    sha256: str = "",
    yanked: bool = False,
    requires_python: str = "",
    metadata_url: str = "",
    size: int = 0,
) -> Dist | None:
    """A Dist from a filename, or None for files that are neither wheels nor sdists."""
    tags: frozenset[Tag] = frozenset()
    build: tuple[int, str] | tuple[()] = ()
    try:
        if filename.endswith(".whl"):
            _, version, build, tags = parse_wheel_filename(filename)
        else:
            _, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None
    return Dist(
        filename=filename,
        url=url,
        version=version,
        sha256=sha256,
        yanked=yanked,
        requires_python=requires_python,
        tags=tags,
        build=build,
        metadata_url=metadata_url,
        size=size,
    )


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def parse_project_json(body: dict[str, Any], page_url: str) -> list[Dist]:
    """PEP 691 JSON → Dists."""
    dists = []
    for entry in body.get("files") or []:
        hashes = entry.get("hashes") or {}
        metadata = entry.get("core-metadata") or entry.get("data-dist-info-metadata")
        url = urljoin(page_url, entry["url"])
        dist = make_dist(
            entry["filename"],
            url,
            sha256=hashes.get("sha256", ""),
            yanked=bool(entry.get("yanked")),
            requires_python=entry.get("requires-python") or "",
            metadata_url=url + ".metadata" if metadata else "",
            size=int(entry.get("size") or 0),
        )
        if dist is not None:
            dists.append(dist)
    return dists


def parse_project_html(text: str, page_url: str) -> list[Dist]:
    """PEP 503 HTML → Dists (hash from the URL fragment, yanked/requires-python from data-*)."""
    parser = _LinkParser()
    parser.feed(text)
    dists = []
    for link in parser.links:
        href = link.get("href")
        if not href:
            continue
        url, fragment = urldefrag(urljoin(page_url, href))
        filename = url.rstrip("/").rsplit("/", 1)[-1]
        algo, _, digest = fragment.partition("=")
        metadata = link.get("data-core-metadata") or link.get("data-dist-info-metadata")
        dist = make_dist(
            filename,
            url,
            sha256=digest if algo == "sha256" else "",
            yanked="data-yanked" in link,
            requires_python=link.get("data-requires-python") or "",
            metadata_url=url + ".metadata" if metadata else "",
        )
        if dist is not None:
            dists.append(dist)
    return dists


# ---------------------------------------------------------------------------- ranged reads
class RangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP `Range` requests, enough for `zipfile`.

    Every request it makes counts against one deadline (the whole metadata read).
    """

    chunk = 256 * 1024

    def __init__(
        self, client: http.Client, url: str, deadline: http.Deadline | None = None
    ) -> None:
        super().__init__()
        self._http, self._url = client, url
        self._deadline = deadline or client.deadline(f"reading {url.rsplit('/', 1)[-1]}")
        self._pos = 0
        self._blocks: list[tuple[int, bytes]] = []
        start, self._size, data = self._get(f"bytes=-{self.chunk}")
        self._blocks.append((start, data))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        data = self._cached(self._pos, want)
        if data is None:
            end = min(self._size, self._pos + max(want, self.chunk)) - 1
            start, _, fetched = self._get(f"bytes={self._pos}-{end}")
            self._blocks.append((start, fetched))
            data = self._cached(self._pos, want) or b""
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _cached(self, pos: int, count: int) -> bytes | None:
        for start, data in self._blocks:
            if start <= pos and pos + count <= start + len(data):
                return data[pos - start : pos - start + count]
        return None

    def _get(self, byte_range: str) -> tuple[int, int, bytes]:
        try:
            answer = self._http.fetch(
                "GET",
                self._url,
                deadline=self._deadline,
                headers={"Range": byte_range},
                max_bytes=MAX_METADATA,
            )
        except http.Failure as failure:
            raise IndexError_(f"the package index's files: {failure.message}") from None
        if answer.status in http.RETRY_STATUSES:
            raise IndexError_(f"{self._url} answered {answer.status}; {http.try_later(answer)}")
        if answer.status != 206:
            raise IndexError_(
                f"{self._url} answered {answer.status} to a Range request; the bump needs"
                " an index whose file server supports Range (or PEP 658 metadata)"
            )
        match = re.match(r"bytes (\d+)-(\d+)/(\d+)", answer.headers.get("Content-Range", ""))
        if not match:
            raise IndexError_(f"{self._url}: Range answer without a usable Content-Range")
        return int(match.group(1)), int(match.group(3)), answer.content


def read_wheel_metadata(file: io.RawIOBase, filename: str) -> bytes:
    """The `*.dist-info/METADATA` member of a wheel opened as a seekable file."""
    try:
        buffered = io.BufferedReader(file, buffer_size=64 * 1024)  # type: ignore[arg-type]
        with zipfile.ZipFile(buffered) as wheel:
            members = [n for n in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(members) != 1:
                raise IndexError_(f"{filename}: expected one .dist-info/METADATA, found {members}")
            if wheel.getinfo(members[0]).file_size > MAX_METADATA:
                raise IndexError_(f"{filename}: its METADATA is over {MAX_METADATA} bytes")
            return wheel.read(members[0])
    except zipfile.BadZipFile as exc:
        raise IndexError_(f"{filename} is not a readable wheel ({exc})") from None


def parse_metadata(raw: bytes) -> Metadata:
    headers = HeaderParser().parsestr(raw.decode("utf-8", errors="replace"))
    requirements = []
    for text in headers.get_all("Requires-Dist") or []:
        try:
            requirements.append(Requirement(text))
        except InvalidRequirement:
            continue  # a broken line in someone else's metadata is not a pin of ours
    return Metadata(
        name=headers.get("Name", ""),
        version=headers.get("Version", ""),
        requires_dist=tuple(requirements),
        requires_python=headers.get("Requires-Python", "") or "",
    )


# ---------------------------------------------------------------------------- the client
@dataclass
class SimpleIndex:
    """One index, read lazily: a project page per project, metadata per wheel, both cached."""

    url: str
    http: http.Client = field(default_factory=http.Client)
    timeout_s: float | None = None  # the longest wait for a connection or a read
    _pages: dict[str, list[Dist]] = field(default_factory=dict, repr=False)
    _metadata: dict[str, Metadata] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.timeout_s is not None:
            self.http.connect_timeout_s = self.http.read_timeout_s = self.timeout_s

    def files(self, project: str) -> list[Dist]:
        name = canonicalize_name(project)
        if name not in self._pages:
            self._pages[name] = self._fetch_page(name)
        return self._pages[name]

    def metadata(self, dist: Dist) -> Metadata:
        if dist.url not in self._metadata:
            self._metadata[dist.url] = parse_metadata(self._fetch_metadata(dist))
        return self._metadata[dist.url]

    def _fetch_page(self, name: str) -> list[Dist]:
        page_url = f"{self.url.rstrip('/')}/{name}/"
        try:
            answer = self.http.fetch(
                "GET",
                page_url,
                deadline=self.http.deadline(f"reading the index page of {name}"),
                headers={"Accept": _ACCEPT},
                max_bytes=MAX_PAGE,
            )
        except http.Failure as failure:
            raise IndexError_(
                f"the package index {self.url}: {failure.message}; or check PIP_INDEX_URL and"
                " `pip config list`"
            ) from None
        if answer.status == 404:
            return []
        if not answer.ok:
            raise IndexError_(
                f"the package index answered {answer.status} for {page_url};"
                f" {http.try_later(answer)}"
            )
        content_type = answer.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == JSON_TYPE:
            try:
                return parse_project_json(answer.json(), answer.url)
            except (ValueError, KeyError, TypeError, AttributeError):
                raise IndexError_(f"{page_url}: the index sent malformed JSON") from None
        return parse_project_html(answer.text, answer.url)

    def _fetch_metadata(self, dist: Dist) -> bytes:
        deadline = self.http.deadline(f"reading the metadata of {dist.filename}")
        if dist.metadata_url:
            try:
                answer = self.http.fetch(
                    "GET", dist.metadata_url, deadline=deadline, max_bytes=MAX_METADATA
                )
            except http.Failure:
                answer = None
            if answer is not None and answer.ok:
                return answer.content
        if not dist.is_wheel:
            raise IndexError_(f"{dist.filename}: metadata is only read from wheels")
        return read_wheel_metadata(RangeFile(self.http, dist.url, deadline), dist.filename)
