"""Secrets in image layers: what to look for (custom CAs, planted needles) and the layer scan.

A layer that adds a file and a later layer that deletes it still ships the file: the scan reads
every layer tar of `engine save`, never the container's merged view.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

_PEM = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(?P<body>[A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----"
)
_CHUNK = 8 << 20


@dataclass(frozen=True)
class Needle:
    """Bytes that must appear in no layer; `name` says what they are, never the bytes."""

    name: str
    patterns: tuple[bytes, ...]


@dataclass(frozen=True)
class Hit:
    needle: str
    layer: str
    path: str


def pem_certificates(bundle: bytes) -> list[bytes]:
    """The DER bytes of every certificate in a PEM bundle, in order."""
    return [base64.b64decode(b"".join(m["body"].split())) for m in _PEM.finditer(bundle)]


def fingerprint(der: bytes) -> str:
    return "sha256:" + hashlib.sha256(der).hexdigest()[:16]


def custom_cas(host_bundle: bytes, image_bundle: bytes) -> list[bytes]:
    """Certificates the host trusts that the image's own bundle lacks: a proxy's or a company's CA.

    The public roots are legitimately in the image (Debian's ca-certificates); these are not.
    """
    public = set(pem_certificates(image_bundle))
    seen: set[bytes] = set()
    out = []
    for der in pem_certificates(host_bundle):
        if der not in public and der not in seen:
            seen.add(der)
            out.append(der)
    return out


def ca_needle(der: bytes) -> Needle:
    """Search a CA by a 64-character line of its PEM body and by raw DER from its middle.

    Lines from the middle carry the public key, so they are unique to the certificate.
    """
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    mid_line = lines[len(lines) // 2] if len(lines) > 2 else lines[0]
    mid = len(der) // 2
    return Needle(f"custom CA {fingerprint(der)}", (mid_line, der[mid - 24 : mid + 24]))


def text_needle(name: str, content: bytes) -> Needle:
    value = content.strip()
    if len(value) < 8:
        raise ValueError(f"{name}: a needle needs at least 8 bytes, found {len(value)}")
    return Needle(name, (value,))


def scan_stream(stream: IO[bytes], needles: Iterable[Needle], layer: str) -> Iterator[Hit]:
    """Search one stream of files (a layer tar, any compression) for the needles."""
    needles = list(needles)
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            for name in _search(handle, needles):
                yield Hit(name, layer, member.name)


def _search(handle: IO[bytes], needles: list[Needle]) -> set[str]:
    longest = max((len(p) for n in needles for p in n.patterns), default=1)
    found: set[str] = set()
    tail = b""
    while chunk := handle.read(_CHUNK):
        window = tail + chunk
        for needle in needles:
            if needle.name not in found and any(p in window for p in needle.patterns):
                found.add(needle.name)
        tail = window[-(longest - 1) :] if longest > 1 else b""
    return found


def scan_image_archive(archive: IO[bytes], needles: Iterable[Needle]) -> tuple[list[Hit], int]:
    """Scan every layer of an `engine save` archive (docker-archive or OCI), streamed.

    Returns the hits and how many layers were read. Nested layer tars are read as streams too,
    so a 10 GB image is never written to disk.
    """
    needles = list(needles)
    hits: list[Hit] = []
    layers = 0
    with tarfile.open(fileobj=archive, mode="r|*") as outer:
        for member in outer:
            if not member.isfile() or member.name.endswith((".json", "repositories")):
                continue
            handle = outer.extractfile(member)
            if handle is None:
                continue
            head = handle.read(512)
            rest = _Prefixed(head, handle)
            if _is_layer(head):
                layers += 1
                hits.extend(scan_stream(rest, needles, member.name))
            else:  # a blob that is not a tar (config): search it as bytes
                hits.extend(Hit(n, "(image metadata)", member.name) for n in _search(rest, needles))
    return hits, layers


def _is_layer(head: bytes) -> bool:
    if head[:2] == b"\x1f\x8b":  # a gzip-compressed layer (OCI archives may hold these)
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


class _Prefixed(io.RawIOBase):
    """`head` followed by the rest of `handle`: a peeked stream, still sequential."""

    def __init__(self, head: bytes, handle: IO[bytes]) -> None:
        self._head = head
        self._handle = handle

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._handle.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._handle.read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def describe(hits: list[Hit]) -> str:
    return "; ".join(f"{h.needle} in layer {h.layer}: {h.path}" for h in hits)
