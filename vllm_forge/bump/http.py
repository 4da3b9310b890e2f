"""One HTTP policy for the bump's two clients, the registry's and the index's.

Every operation (one tag list with all its pages, one manifest digest, one index page, one
wheel's metadata) runs under a `Deadline`: DEADLINE_S in all, retries and waits included. Within
it, a connection waits at most CONNECT_TIMEOUT_S and each read at most READ_TIMEOUT_S, never past
the deadline, so a server that sends one byte every few seconds is cut off on time. Answers are
read to a size cap. Redirects are followed here, not by requests: at most MAX_REDIRECTS, a loop
is named as one, and an `Authorization` header never goes to another origin.

Retried, `attempts` times at most (a connection that cannot be made: twice): a refused or
dropped connection, a read that times out, an answer cut short, and the statuses 429 and 5xx, waiting 0.5, 1, 2, 4 ... s (`backoff_s` doubled)
or as long as `Retry-After` asks. A `Retry-After` over MAX_WAIT_S, or past the deadline, is not
sat out: the answer goes back to the client at once, and its error says how long to wait.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEADLINE_S = 120.0  # one whole operation, retries included
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0  # the longest silence between two reads
MAX_WAIT_S = 30.0  # the longest Retry-After the clients sit out
MAX_REDIRECTS = 5
MAX_BODY = 16 * 1024 * 1024  # bytes of one answer, unless the client asks for another cap
_CHUNK = 64 * 1024


class Failure(Exception):
    """An operation that could not complete; the client turns it into its own one-line error."""

    def __init__(self, message: str, *, retryable: bool = False, connect: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.connect = connect  # no connection at all: retried twice at most


def _within(deadline: Deadline, call):
    """`call()`, abandoned at the deadline: requests' timeouts are per socket operation, so a
    name lookup, a connect or a status line sent a byte at a time could outlast any deadline.
    The abandoned call goes on in a daemon thread until its own socket timeout ends it."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(max(0.0, deadline.remaining()))
    if worker.is_alive():
        raise Failure(
            f"{deadline.what} did not finish in {deadline.seconds:.0f} s (the server stalls or"
            " sends too slowly); try again later"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


class Deadline:
    """The time one operation may take, from now."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def check(self) -> None:
        if self.remaining() <= 0:
            raise Failure(
                f"{self.what} did not finish in {self.seconds:.0f} s (the server stalls or sends"
                " too slowly); try again later"
            )


@dataclass(frozen=True)
class Answer:
    """A complete answer: status, headers and the whole body, read within the deadline."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str
    history: tuple[str, ...] = field(default=())  # the URLs redirected from, in order

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        import json

        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what a token belongs to."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds (either form: seconds or an HTTP date); None if absent or bad."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def try_later(answer: Answer) -> str:
    """What to tell a person once the retries are spent: the wait the server asked for, if any."""
    wait = retry_after_s(answer.headers)
    return f"wait {wait:.0f} s and run bump again" if wait is not None else "try again later"


class Client:
    """requests, under this module's policy. One per client; safe to reuse across operations."""

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        attempts: int = 4,
        backoff_s: float = 0.5,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        deadline_s: float = DEADLINE_S,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self.session = session or requests.Session()
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.deadline_s = deadline_s
        self.max_wait_s = max_wait_s

    def deadline(self, what: str) -> Deadline:
        return Deadline(self.deadline_s, what)

    def fetch(
        self,
        method: str,
        url: str,
        *,
        deadline: Deadline,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        max_bytes: int = MAX_BODY,
    ) -> Answer:
        """The answer to `method url`, retried under the policy; a Failure if there is none.

        A final 429/5xx answer is returned, not raised: the client names it.
        """
        attempt = 0
        while True:
            deadline.check()
            try:
                answer = self._follow(method, url, deadline, dict(headers or {}), params, max_bytes)
            except Failure as failure:
                limit = min(self.attempts, 2) if failure.connect else self.attempts
                if not failure.retryable or attempt >= limit:
                    raise
                self._sleep(self._backoff(attempt), deadline, failure.message)
                attempt += 1
                continue
            if answer.status not in RETRY_STATUSES or attempt >= self.attempts:
                return answer
            wait = retry_after_s(answer.headers)
            wait = self._backoff(attempt) if wait is None else wait
            if wait > self.max_wait_s or wait >= deadline.remaining():
                return answer  # not sat out: the client says how long to wait
            time.sleep(wait)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        return self.backoff_s * (2**attempt)

    @staticmethod
    def _sleep(wait: float, deadline: Deadline, why: str) -> None:
        if wait >= deadline.remaining():
            raise Failure(why)
        time.sleep(wait)

    def _follow(
        self,
        method: str,
        url: str,
        deadline: Deadline,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
        max_bytes: int,
    ) -> Answer:
        """One request and the redirects it leads to, by hand."""
        seen: list[str] = []
        first = origin(url)
        while True:
            answer = self._once(method, url, deadline, headers, params, max_bytes)
            if answer.status not in REDIRECT_STATUSES or "Location" not in answer.headers:
                return Answer(answer.status, answer.headers, answer.content, url, tuple(seen))
            seen.append(url)
            target = urljoin(url, answer.headers["Location"])
            if target in seen:
                loop = " → ".join([*seen[seen.index(target) :], target])
                raise Failure(
                    f"{seen[0]} redirects in a loop ({loop}): the server or a proxy in between"
                    " is misconfigured"
                )
            if len(seen) > MAX_REDIRECTS:
                raise Failure(f"{seen[0]} redirects more than {MAX_REDIRECTS} times; giving up")
            if origin(target) != first:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url, params = target, None  # the Location carries its own query

    def _once(
        self,
        method: str,
        url: str,
        deadline: Deadline,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
        max_bytes: int,
    ) -> Answer:
        parts = urlsplit(url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "the server")
        remaining = max(0.01, deadline.remaining())
        try:
            response = _within(
                deadline,
                lambda: self.session.request(
                    method,
                    url,
                    headers=headers,
                    params=params,
                    stream=True,
                    allow_redirects=False,
                    timeout=(
                        min(self.connect_timeout_s, remaining),
                        min(self.read_timeout_s, remaining),
                    ),
                ),
            )
        except requests.ReadTimeout:
            deadline.check()
            raise Failure(
                f"{host} accepted the connection but did not answer in"
                f" {min(self.read_timeout_s, remaining):.0f} s; try again later",
                retryable=True,
            ) from None
        except requests.RequestException as exc:
            deadline.check()
            raise Failure(
                f"cannot reach {host} ({type(exc).__name__}): check the network or proxy settings",
                retryable=True,
                connect=True,
            ) from None
        try:
            content = b"" if method == "HEAD" else self._read(response, deadline, max_bytes, host)
        finally:
            response.close()
        return Answer(response.status_code, CaseInsensitiveDict(response.headers), content, url)

    def _read(
        self, response: requests.Response, deadline: Deadline, max_bytes: int, host: str
    ) -> bytes:
        """The body, chunk by chunk: each read waits at most until the deadline."""
        declared = response.headers.get("Content-Length", "")
        expected = int(declared) if declared.isdigit() else None
        if expected is not None and expected > max_bytes:
            raise Failure(f"the answer from {response.url} is {expected} bytes, over {max_bytes}")
        raw = response.raw
        body = bytearray()
        while True:
            deadline.check()
            connection = getattr(raw, "connection", None)
            sock = getattr(connection, "sock", None)
            if sock is not None:
                sock.settimeout(max(0.01, min(self.read_timeout_s, deadline.remaining())))
            try:
                chunk = raw.read1(_CHUNK, decode_content=True)
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as exc:
                deadline.check()
                raise Failure(self._short(len(body), expected, host, exc), retryable=True) from None
            except (urllib3.exceptions.ReadTimeoutError, TimeoutError, OSError):
                deadline.check()
                raise Failure(
                    f"{host} stopped sending for {self.read_timeout_s:.0f} s; try again later",
                    retryable=True,
                ) from None
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise Failure(f"the answer from {response.url} is over {max_bytes} bytes")
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        if expected is not None and not encoded and len(body) < expected:
            raise Failure(self._short(len(body), expected, host, None), retryable=True)
        return bytes(body)

    @staticmethod
    def _short(got: int, expected: int | None, host: str, exc: Exception | None) -> str:
        of = f" of {expected}" if expected is not None else ""
        return (
            f"the answer from {host} broke off after {got}{of} bytes (the connection was"
            " closed early); try again"
        )
