#!/usr/bin/python3
"""A stand-in for `vllm` in a tiny image of the tests' own (tests/serve_standin.py builds it).

It stands in for vLLM only because no GPU is here: `vllm serve --help=all` prints a few of
vLLM 0.19.1's real option lines, and `vllm serve MODEL ...` answers /health, /v1/models and a
streamed /v1/completions the way vLLM's OpenAI server does, after writing a file into each cache
serve points it at. The model name picks the behaviour:

- `standin/crash`: a few log lines, then exit 3 (a server that dies while loading);
- `standin/hang`: loads for ever (never answers /health);
- anything else: answers after STANDIN_DELAY seconds (default 1).

It logs a SHA-256 of HF_TOKEN, never the token, so a test can tell the token arrived by name.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import sys
import time

HELP = """\
usage: vllm serve [model_tag] [options]

options:
  -h, --help            show this help message and exit

Frontend:
  --enable-auto-tool-choice, --no-enable-auto-tool-choice
  --host HOST           Host name. (default: None)
  --port PORT           Port number. (default: 8000)
  --tool-call-parser {hermes,llama3_json,mistral} or name registered in --tool-parser-plugin
  --tool-parser-plugin TOOL_PARSER_PLUGIN

ModelConfig:
  --max-model-len MAX_MODEL_LEN
                        Model context length (prompt and output).
  --served-model-name SERVED_MODEL_NAME [SERVED_MODEL_NAME ...]

AttentionConfig:
  --attention-backend ATTENTION_BACKEND
                        Attention backend to use. (default: None)

StructuredOutputsConfig:
  --reasoning-parser REASONING_PARSER

CacheConfig:
  --enable-prefix-caching, --no-enable-prefix-caching
  --gpu-memory-utilization GPU_MEMORY_UTILIZATION

SchedulerConfig:
  --enable-chunked-prefill, --no-enable-chunked-prefill
  --max-num-seqs MAX_NUM_SEQS
"""


def log(text: str) -> None:
    print(f"stand-in: {text}", flush=True)


def write_caches(model: str) -> None:
    """One file in every cache the container should keep, as vLLM, Triton, FlashInfer, the
    driver and huggingface_hub would write there."""
    name = model.replace("/", "--")
    places = {
        "vllm": os.path.join(os.environ.get("XDG_CACHE_HOME", "/root/.cache"), "vllm"),
        "triton": os.environ.get("TRITON_CACHE_DIR", "/root/.triton/cache"),
        "flashinfer": os.path.join(
            os.environ.get("FLASHINFER_WORKSPACE_BASE", "/root"), ".cache", "flashinfer"
        ),
        "cuda": os.environ.get("CUDA_CACHE_PATH", "/root/.nv/ComputeCache"),
        "huggingface": os.path.join(os.environ.get("HF_HOME", "/root/.cache/huggingface"), "hub"),
    }
    for what, folder in places.items():
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"standin-{name}.txt")
        with open(path, "w") as handle:
            handle.write(f"{what} written by uid {os.getuid()}\n")
        log(f"cache {what}: wrote {path}")


class Handler(http.server.BaseHTTPRequestHandler):
    model = ""

    def log_message(self, *args) -> None:  # no access log: /health is polled each second
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/v1/completions":
            self._json(404, {"error": "not found"})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        tokens = int(body.get("max_tokens", 16))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(tokens):
            chunk = {"choices": [{"index": 0, "text": f" t{i}"}], "usage": None}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.002)
        usage = {"choices": [], "usage": {"completion_tokens": tokens}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())


def serve(args: list[str]) -> int:
    model = args[0] if args and not args[0].startswith("-") else "Qwen/Qwen3-0.6B"
    port = int(args[args.index("--port") + 1]) if "--port" in args else 8000
    log(f"argv {json.dumps(args)}")
    token = os.environ.get("HF_TOKEN")
    digest = hashlib.sha256(token.encode()).hexdigest() if token else "unset"
    log(f"HF_TOKEN sha256 {digest}")
    log(f"running as uid {os.getuid()}, HOME={os.environ.get('HOME')}")
    if model == "standin/crash":
        log("loading weights")
        log("RuntimeError: CUDA error: no kernel image is available for execution on the device")
        return 3
    if model == "standin/hang":
        log("loading weights (this stand-in never finishes)")
        while True:
            time.sleep(3600)
    log(f"loading {model}")
    write_caches(model)
    time.sleep(float(os.environ.get("STANDIN_DELAY", "1")))
    Handler.model = model
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    log(f"serving {model} on port {port}")
    server.serve_forever()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] != ["serve"]:
        print("usage: vllm serve ...", file=sys.stderr)
        return 2
    if any(a.startswith("--help") or a == "-h" for a in argv[1:]):
        print(HELP, end="")
        return 0
    return serve(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
