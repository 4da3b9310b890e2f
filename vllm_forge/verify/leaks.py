"""Secrets in image layers: what to look for (custom CAs, planted needles) and the layer scan.

A layer that adds a file and a later layer that deletes it still ships the file: the scan reads
every layer tar of `engine save`, never the container's merged view.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
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


def custom_cas(host_bundle: bytes, *public_bundles: bytes) -> list[bytes]:
    """Certificates the host trusts that no public bundle holds: a proxy's or a company's CA.

    Public bundles: the image's own (Debian's roots are legitimately in it) and the host
    distribution's shipped roots. A public root the image lacks may still sit in the image
    compiled into a binary (Rust's webpki-roots): that is no leak, so it is no needle.
    """
    public = {der for bundle in public_bundles for der in pem_certificates(bundle)}
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
    """Search one layer tar (plain or gzip) for the needles, file by file."""
    needles = list(needles)
    head = stream.read(2)
    stream = _Prefixed(head, stream)
    if head == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=stream)
    for name, kind, body in iter_tar(stream):
        if kind in (b"0", b"\0", b"7"):
            for found in _search(body, needles):
                yield Hit(found, layer, name)


def iter_tar(stream: IO[bytes]) -> Iterator[tuple[str, bytes, IO[bytes]]]:
    """(path, type flag, body) of each member of a tar stream, read strictly in order.

    tarfile's stream mode copies its whole buffer for every 512-byte header (slow on GBs); this
    reads headers and bodies straight from the stream. GNU long names and pax paths are honoured.
    """
    pax: dict[str, str] = {}
    while True:
        header = _read_exact(stream, 512)
        if len(header) < 512 or header == bytes(512):
            return
        kind = header[156:157]
        # a pax `size=` overrides the header's: Go's archive/tar writes it for members > 8 GiB
        size = int(pax["size"]) if "size" in pax and kind not in (b"x", b"g") else None
        size = _size(header[124:136]) if size is None else size
        body = _Bounded(stream, size)
        if kind == b"L":  # GNU long name: the next member's path
            pax["path"] = body.read().rstrip(b"\0").decode(errors="replace")
        elif kind == b"x":  # pax extended header of the next member
            pax.update(_pax_records(body.read()))
        elif kind != b"g":
            prefix = header[345:500].rstrip(b"\0").decode(errors="replace")
            name = header[:100].rstrip(b"\0").decode(errors="replace")
            path = pax.get("path") or (f"{prefix}/{name}" if prefix else name)
            pax = {}
            yield path, kind, body
        body.drain()
        _read_exact(stream, -size % 512)


def _pax_records(data: bytes) -> dict[str, str]:
    """`LEN key=value\n` records (values may hold newlines: LEN says where each ends)."""
    records: dict[str, str] = {}
    while data:
        length, _, rest = data.partition(b" ")
        if not length.isdigit():
            break
        record, data = data[: int(length)], data[int(length) :]
        key, _, value = record.partition(b" ")[2].partition(b"=")
        records[key.decode(errors="replace")] = value[:-1].decode(errors="replace")
    return records


def _size(field: bytes) -> int:
    if field[0] & 0x80:  # base-256, for members of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    parts = []
    while n > 0:
        data = stream.read(min(n, _CHUNK))
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


class _Bounded(io.RawIOBase):
    """The next `size` bytes of a stream."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self._stream = stream
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            data = _read_exact(self._stream, self._left)
            self._left -= len(data)
            return data
        data = self._stream.read(min(size, self._left)) if self._left else b""
        self._left -= len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self._left and self.read(_CHUNK):
            pass


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
    for name, kind, body in iter_tar(archive):
        if kind not in (b"0", b"\0"):
            continue
        head = _read_exact(body, 512)
        rest = _Prefixed(head, body)
        if _is_layer(head):
            layers += 1
            hits.extend(scan_stream(rest, needles, name))
        else:  # the manifest, the image config: search them as bytes too
            hits.extend(Hit(n, "(image metadata)", name) for n in _search(rest, needles))
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
