"""One redaction rule for everything the tool prints or writes: no credential reaches a person or
a file under build/.

- URLs: the userinfo (`https://user:token@host` -> `https://***@host`; `user:token@host`
  without a scheme too) and the values of token-like query parameters (`?token=`,
  `access_token=`, `X-Amz-Signature=`, `sig=`, ...).
- `Bearer` / `Basic` credentials of an HTTP Authorization header.
- Exact values known to be secret: the passwords of the URLs in the user's environment and pip
  configuration, secret-named environment variables (`HF_TOKEN`, `*_TOKEN`, `*_SECRET`,
  `*PASSWORD*`, `*API_KEY*`, ...), and the contents of `--secret` files. `remember` adds them.

Applied at the choke points: `cli.main` wraps stdout and stderr for the command's duration
(`redacted_output`), and every writer of files under build/ passes its text through `redact`
(build logs, replay scripts, manifests, verify reports).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, unquote

MASK = "***"
MIN_SECRET = 8  # shorter known values are not searched for: they would mask ordinary words

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&#;\s]+)=(?P<value>[^&#;\s]*)")
_SECRET_PARAM = re.compile(
    r"(?i)token|secret|passw(or)?d|pwd|credential|api[-_]?key|access[-_]?key|private[-_]?key"
    r"|signature|auth|^(key|sig|code|session|sessionid|sid)$"
)
# A URL's netloc without its scheme (`user:token@host:port`, as HTTP libraries' errors quote it);
# not an image reference's `name:tag@sha256:...`.
_NETLOC = re.compile(
    r"(?<![\w.~%+*-])(?P<userinfo>[\w.~%+-]+:[^\s/@'\"]+)@"
    r"(?!(?:sha256|sha384|sha512|blake3):)(?P<host>[\w.-]+|\[[0-9A-Fa-f:.]+\])(?=[:/\s'\"),;\]>]|$)"
)
_AUTH_HEADER = re.compile(
    r"(?i)(?P<head>authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token)\s+)[^\s\"']+"
)
_SECRET_ENV = re.compile(
    r"(?i)token|secret|passw(or)?d|api[-_]?key|access[-_]?key|private[-_]?key|credential"
)

_known: set[str] = set()
_longest_first: tuple[str, ...] = ()  # _known, longest first: a value inside another goes last


def _url(match: re.Match[str]) -> str:
    url = match.group(0)
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    authority, tail = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    if "@" in authority:
        authority = MASK + "@" + authority.rpartition("@")[2]
    if "?" in tail or ";" in tail:
        tail = _QUERY_PARAM.sub(_param, tail)
    return f"{scheme}://{authority}{tail}"


def _param(match: re.Match[str]) -> str:
    if match["value"] and _SECRET_PARAM.search(unquote(match["name"])):
        return f"{match['sep']}{match['name']}={MASK}"
    return match.group(0)


def redact(text: str) -> str:
    """`text` with every credential the rule knows replaced by `***`."""
    if not text:
        return text
    for value in _longest_first:
        if value in text:
            text = text.replace(value, MASK)
    if "://" in text:
        text = _URL.sub(_url, text)
    if "@" in text:
        text = _NETLOC.sub(lambda m: f"{MASK}@{m['host']}", text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(lambda m: m["head"] + MASK, text)
    return text


def remember(*values: str) -> None:
    """Known secret values: masked wherever they appear, whole, from now on (this process)."""
    global _longest_first
    for value in values:
        value = value.strip()
        if len(value) >= MIN_SECRET:
            _known.add(value)
    _longest_first = tuple(sorted(_known, key=len, reverse=True))


def forget_all() -> None:
    """Drop every remembered value (for tests)."""
    global _longest_first
    _known.clear()
    _longest_first = ()


# A path segment that is a credential, not a name: private indexes put the token in the path
# (`https://host/<TOKEN>/org/repo/simple/`). Long, and letters mixed with digits.
_PATH_TOKEN = re.compile(r"^(?=[^/]*[A-Za-z])(?=[^/]*[0-9])[A-Za-z0-9_-]{16,}$")


def url_secrets(text: str, *, paths: bool = False) -> list[str]:
    """The credentials in the URLs of `text`: each userinfo, its password (raw, decoded and
    encoded), each token-like query value and, with `paths` (for URLs the user configured),
    each token-like path segment."""
    found: list[str] = []
    for match in _URL.finditer(text):
        rest = match.group(0).partition("://")[2]
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if paths:
            path = rest[len(authority) :].split("?")[0].split("#")[0]
            found += [seg for seg in path.split("/") if _PATH_TOKEN.match(seg)]
        if "@" in authority:
            userinfo = authority.rpartition("@")[0]
            password = userinfo.partition(":")[2]
            found += [userinfo, unquote(userinfo)]
            if password:
                found += [password, unquote(password), quote(unquote(password), safe="")]
        for param in _QUERY_PARAM.finditer(rest):
            if param["value"] and _SECRET_PARAM.search(unquote(param["name"])):
                found += [param["value"], unquote(param["value"])]
    return found


def remember_urls(text: str, *, paths: bool = False) -> None:
    remember(*url_secrets(text, paths=paths))


def remember_file(path: Path) -> None:
    """A secret file's content: whole, and each line long enough to be no ordinary word."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    remember(text)
    remember(*(line for line in text.splitlines() if len(line.strip()) >= 12))
    remember_urls(text)


def remember_environment(environ: Mapping[str, str] | None = None) -> None:
    """Secret-named variables (HF_TOKEN, GITHUB_TOKEN, *_PASSWORD, ...) and the credentials of
    every URL in any variable (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, UV_INDEX_URL, proxies)."""
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if _SECRET_ENV.search(name) and not value.startswith(("/", "./", "~")):
            remember(value)
        if "://" in value:
            remember_urls(value, paths=True)


def remember_pip_config(environ: Mapping[str, str] | None = None) -> None:
    """The credentials of the index URLs in the user's pip configuration files."""
    from . import pipconfig
    from .errors import ForgeError

    try:
        settings = pipconfig.settings(environ)
    except ForgeError:  # an unreadable pip.conf: the command that needs it says so
        return
    for value in settings.values():
        if "://" in value:
            remember_urls(value, paths=True)


class RedactingStream(io.TextIOBase):
    """A text stream that passes whole lines, redacted, to `target`.

    A partial line waits for its newline (a URL written in two pieces is still one URL); a
    flush sends it on, so progress output without newlines still shows.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                done, _, self._pending = self._pending.rpartition("\n")
                self.target.write(redact(done) + "\n")
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.target.write(redact(self._pending))
                self._pending = ""
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.target, "errors", None)


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """Redact everything written to sys.stdout and sys.stderr inside the block."""
    saved = sys.stdout, sys.stderr
    wrapped = RedactingStream(saved[0]), RedactingStream(saved[1])
    sys.stdout, sys.stderr = wrapped
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        for stream in wrapped:
            with contextlib.suppress(Exception):
                stream.flush()


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path`, redacted: the one way files under build/ are written."""
    path.write_text(redact(text))
