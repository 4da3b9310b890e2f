"""One HTTP policy for the bump's two clients, the registry's and the index's.

A `requests.Session` whose transport retries what is worth retrying: a refused or dropped
connection, and the answers 429 and 5xx, with exponential backoff, waiting as long as
`Retry-After` asks, a few times in all. A `Retry-After` longer than `MAX_WAIT_S` is not sat out:
the answer goes back to the client at once, and its error says how long to wait.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_WAIT_S = 30.0  # the longest Retry-After the clients sit out
_PARSER = Retry(total=0)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds (either form: seconds or an HTTP date); None if absent or bad."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return _PARSER.parse_retry_after(value)
    except InvalidHeader:
        return None


class BoundedRetry(Retry):
    """urllib3's `Retry`, except that an answer asking for more than MAX_WAIT_S ends the retries."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, **kwargs):
        if response is not None and self.respect_retry_after_header:
            wait = retry_after_s(response.headers)
            if wait is not None and wait > MAX_WAIT_S:
                reason = ResponseError(f"Retry-After {wait:.0f} s is over {MAX_WAIT_S:.0f} s")
                raise MaxRetryError(_pool, url, reason)
        return super().increment(method, url, response, error, _pool, **kwargs)


def session(*, attempts: int = 4, backoff_factor: float = 0.5) -> requests.Session:
    """A session for the registry and index clients: at most `attempts` retries, 0, 1, 2, 4 ...
    seconds apart (times `backoff_factor` / 0.5), unless Retry-After asks for another wait."""
    retry = BoundedRetry(
        total=attempts,
        connect=min(attempts, 2),
        read=min(attempts, 2),
        status=attempts,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        backoff_factor=backoff_factor,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer goes back to the client, which names it
    )
    adapter = HTTPAdapter(max_retries=retry)
    http = requests.Session()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def try_later(response: requests.Response) -> str:
    """What to tell a person once the retries are spent: the wait the server asked for, if any."""
    wait = retry_after_s(response.headers)
    return f"wait {wait:.0f} s and run bump again" if wait is not None else "try again later"
