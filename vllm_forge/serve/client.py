"""The server's HTTP side, standard library only: health, the model list, a generation benchmark.

`--bench` measures what a person chatting feels and what the recipe's ~65 tokens/s means: one
request at a time, a fixed number of output tokens (`ignore_eos`), streamed; generation speed is
the tokens after the first over the time after the first (prefill and queueing left out).
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a mysterious map. "
    "Describe every room of the lighthouse, the weather, and each character's thoughts."
)


def _request(url: str, api_key: str | None, body: dict | None = None) -> urllib.request.Request:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(body).encode() if body is not None else None
    return urllib.request.Request(url, data=data, headers=headers)


def get(url: str, *, api_key: str | None = None, timeout: float = 3.0) -> tuple[int | None, str]:
    """(HTTP status, body); (None, why) when nothing answered (refused, reset, timed out)."""
    try:
        with urllib.request.urlopen(_request(url, api_key), timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:300]
    except (OSError, ValueError) as exc:  # URLError, ConnectionResetError, timeout, ...
        return None, str(getattr(exc, "reason", exc))


def models(base: str, *, api_key: str | None = None) -> list[str] | None:
    """The ids /v1/models lists; None while it does not answer with a list."""
    status, body = get(f"{base}/v1/models", api_key=api_key)
    if status != 200:
        return None
    try:
        return [str(m["id"]) for m in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True, kw_only=True)
class Run:
    tokens: int
    first_token_s: float
    generation_s: float  # from the first token to the last

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.generation_s if self.generation_s > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class BenchResult:
    model: str
    runs: tuple[Run, ...]

    @property
    def tokens_per_s(self) -> float:
        return statistics.median(r.tokens_per_s for r in self.runs)

    def describe(self) -> str:
        per_run = ", ".join(f"{r.tokens_per_s:.1f}" for r in self.runs)
        first = statistics.median(r.first_token_s for r in self.runs)
        return (
            f"bench: {self.tokens_per_s:.1f} output tokens/s (one request at a time, median of"
            f" {len(self.runs)}: {per_run}; {self.runs[0].tokens} tokens each, first token after"
            f" {first:.2f} s); the recipe: ~65 tokens/s for QwQ-32B-AWQ on an RTX 5090"
        )


def generate(base: str, model: str, *, max_tokens: int, api_key: str | None, timeout: float) -> Run:
    """One streamed completion of exactly `max_tokens` tokens, timed."""
    body = {
        "model": model,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = last = None
    chunks = 0
    usage = None
    with urllib.request.urlopen(
        _request(f"{base}/v1/completions", api_key, body), timeout=timeout
    ) as response:
        for raw in response:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if event.get("usage"):
                usage = event["usage"].get("completion_tokens")
            if any(c.get("text") for c in event.get("choices") or []):
                now = time.perf_counter()
                first = first if first is not None else now
                last = now
                chunks += 1
    if first is None or last is None:
        raise ValueError("the server streamed no tokens")
    return Run(tokens=int(usage or chunks), first_token_s=first - start, generation_s=last - first)


def bench(
    base: str,
    model: str,
    *,
    runs: int = 3,
    max_tokens: int = 256,
    api_key: str | None = None,
    timeout: float = 600,
) -> BenchResult:
    """`runs` completions one after another, after one short warm-up request."""
    generate(base, model, max_tokens=8, api_key=api_key, timeout=timeout)
    done = [
        generate(base, model, max_tokens=max_tokens, api_key=api_key, timeout=timeout)
        for _ in range(runs)
    ]
    return BenchResult(model=model, runs=tuple(done))
