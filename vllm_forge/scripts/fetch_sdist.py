"""Download one sdist from the package index pip is configured with, and check its sha256.

Runs inside the build (stdlib only). Usage: fetch_sdist.py NAME VERSION SHA256 DEST
The index URL comes from pip's own configuration (the build's /etc/pip.conf secret, PIP_INDEX_URL)
or pip's default; the TLS trust comes from PIP_CERT / pip.conf's `cert`.
"""

import hashlib
import json
import re
import ssl
import subprocess
import sys
import urllib.request
from urllib.parse import urljoin


def pip_setting(key: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        name, _, value = line.partition("=")
        if name.endswith("." + key):
            return value.strip().strip("'\"").split()[0]
    return ""


def default_index() -> str:
    from pip._internal.models.index import PyPI

    return PyPI.simple_url


def main(name: str, version: str, sha256: str, dest: str) -> int:
    index = pip_setting("index-url") or default_index()
    cert = pip_setting("cert")
    context = ssl.create_default_context(cafile=cert or None)
    project = re.sub(r"[-_.]+", "-", name).lower()
    request = urllib.request.Request(
        urljoin(index.rstrip("/") + "/", project + "/"),
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, context=context) as response:
        files = json.load(response)["files"]
    wanted = [
        f
        for f in files
        if f["filename"] in (f"{name}-{version}.tar.gz", f"{project}-{version}.tar.gz")
    ]
    if not wanted:
        print(f"fetch-sdist: {name} {version}: no sdist on {index}", file=sys.stderr)
        return 1
    url = urljoin(request.full_url, wanted[0]["url"])
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, context=context) as response, open(dest, "wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        print(
            f"fetch-sdist: {wanted[0]['filename']}: sha256 {digest.hexdigest()} != pinned {sha256}",
            file=sys.stderr,
        )
        return 1
    print(f"fetch-sdist: {wanted[0]['filename']} sha256 ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
