"""Download one sdist from the package index pip is configured with, and check its sha256.

Runs inside the build (stdlib only). Usage: fetch_sdist.py NAME VERSION SHA256 DEST
Exit status 0 when DEST holds the sdist with that sha256, 1 otherwise (DEST is then left alone).

The index URL comes from pip's own configuration: PIP_INDEX_URL, else `pip config list` (the
build's /etc/pip.conf secret), else pip's default; the TLS trust from PIP_CERT / pip.conf's
`cert`. The index's project page is read as PEP 691 JSON when the index serves it, else as the
PEP 503 HTML page. The URL may carry credentials (user:password@host): they go to that host as
HTTP Basic auth, and the URL is never printed ("the configured index" stands for it).
"""

import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
INDEX = "the configured index"
TIMEOUT = 120  # seconds without a byte


class Failure(Exception):
    """One line for stderr; the script exits 1."""


def pip_setting(key: str) -> str:
    """`key` as pip would see it: its PIP_ variable, else `pip config list`'s value (the
    environment, then [install], then [global], as pip's install command ranks them)."""
    env = os.environ.get("PIP_" + key.upper().replace("-", "_"), "").split()
    if env:
        return env[0]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
        ).stdout
    except OSError:
        return ""
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, _, value = line.partition("=")
        section, _, option = name.partition(".")
        words = value.strip().strip("'\"").split()
        if option == key and words:
            found[section] = words[0]
    return next((found[s] for s in (":env:", "install", "global") if s in found), "")


def default_index() -> str:
    try:
        from pip._internal.models.index import PyPI
    except ImportError:
        raise Failure(
            "no index-url is configured and pip is not importable: set PIP_INDEX_URL"
        ) from None
    return PyPI.simple_url


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Index:
    """The configured index: requests with its credentials (to its own host only), no URL in
    any message."""

    def __init__(self, url: str, cert: str) -> None:
        parts = urlsplit(url)
        self.auth = ""
        if parts.username is not None:
            user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.auth = "Basic " + base64.b64encode(user_pass.encode()).decode()
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        self.netloc = netloc.lower()
        self.url = urlunsplit(parts._replace(netloc=netloc))
        self.secrets = {
            s for s in (url, self.url, parts.netloc, parts.username, parts.password) if s
        }
        self.context = ssl.create_default_context(cafile=cert or None)

    def open(self, url: str, accept: str = "*/*"):
        request = urllib.request.Request(url, headers={"Accept": accept})
        if self.auth and urlsplit(url).netloc.lower() == self.netloc:
            # not sent on to another host if the index redirects
            request.add_unredirected_header("Authorization", self.auth)
        try:
            return urllib.request.urlopen(request, context=self.context, timeout=TIMEOUT)
        except urllib.error.HTTPError as error:
            error.close()
            raise Failure(
                f"{INDEX} answered HTTP {error.code} {self.redact(error.reason)}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise Failure(f"{INDEX} is unreachable ({self.redact(reason)})") from None

    def redact(self, message: object) -> str:
        """`message` without the URL or any part of it that could identify or unlock it."""
        text = str(message)
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "<index>")
        return text


class _Anchors(HTMLParser):
    """The <a href=...> links of a PEP 503 page, with their text."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def project_files(body: bytes, content_type: str) -> list[dict]:
    """[{"filename", "url", "sha256" (or "")}] from a PEP 691 JSON or a PEP 503 HTML page."""
    if content_type.split(";")[0].strip() == JSON_TYPE:
        return [
            {
                "filename": f["filename"],
                "url": f["url"],
                "sha256": f.get("hashes", {}).get("sha256", ""),
            }
            for f in json.loads(body)["files"]
        ]
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    files = []
    for href, text in parser.links:
        url, _, fragment = href.partition("#")
        algorithm, _, value = fragment.partition("=")
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or text
        files.append(
            {
                "filename": filename,
                "url": url,
                "sha256": value.lower() if algorithm == "sha256" else "",
            }
        )
    return files


def is_sdist_of(filename: str, project: str, version: str) -> bool:
    stem = filename.removesuffix(".tar.gz")
    name, _, found = stem.rpartition("-")
    return stem != filename and normalize(name) == project and found == version


def fetch(name: str, version: str, sha256: str, dest: str) -> str:
    """The sdist's filename, once it is at `dest` with the pinned sha256."""
    sha256 = sha256.lower()
    cert = pip_setting("cert")
    try:
        index = Index(pip_setting("index-url") or default_index(), cert)
    except OSError as error:  # ssl: the configured CA bundle is missing or unreadable
        raise Failure(f"the CA bundle {cert} cannot be read ({error.strerror or error})") from None
    project = normalize(name)
    page_url = urljoin(index.url.rstrip("/") + "/", project + "/")
    try:
        with index.open(page_url, ACCEPT) as response:
            page_url = response.geturl()  # relative file URLs are relative to where it ended up
            files = project_files(response.read(), response.headers.get("Content-Type", ""))
    except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
        raise Failure(f"{name}: the project page on {INDEX} could not be read ({error})") from None
    wanted = [f for f in files if is_sdist_of(f["filename"], project, version)]
    if not wanted:
        raise Failure(f"{name} {version}: no sdist on {INDEX}")
    sdist = wanted[0]
    if sdist["sha256"] and sdist["sha256"] != sha256:
        raise Failure(
            f"{sdist['filename']}: {INDEX} lists sha256 {sdist['sha256']} != pinned {sha256}"
        )
    partial = f"{dest}.part"
    digest = hashlib.sha256()
    try:
        with index.open(urljoin(page_url, sdist["url"])) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise Failure(f"{sdist['filename']}: sha256 {digest.hexdigest()} != pinned {sha256}")
        os.replace(partial, dest)
    except (OSError, http.client.HTTPException) as error:
        raise Failure(f"{sdist['filename']}: the download broke off ({error})") from None
    finally:
        if os.path.exists(partial):  # anything but a verified file: nothing left behind
            os.unlink(partial)
    return sdist["filename"]


def main(name: str, version: str, sha256: str, dest: str) -> int:
    try:
        filename = fetch(name, version, sha256, dest)
    except Failure as failure:
        print(f"fetch-sdist: {failure}", file=sys.stderr)
        return 1
    print(f"fetch-sdist: {filename} sha256 ok")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print("usage: fetch_sdist.py NAME VERSION SHA256 DEST", file=sys.stderr)
        raise SystemExit(1)
    raise SystemExit(main(*sys.argv[1:]))
