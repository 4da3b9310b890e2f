"""`nox -s serve`: run the slim image the way an RTX 5090 owner serves a model.

- `plan`: the [serve] settings, the command line's overrides and the host's environment become
  one frozen `ServePlan`: the engine's `run` argument list, vLLM's flags, the cache volume and
  mounts, the environment (secrets by name only). Pure: unit-tested without an engine.
- `image`: what the image's own vLLM accepts (`vllm serve --help=all`, `vllm.envs`, its
  attention backends and parsers), read once per image ID and cached under build/serve/.
- `checks`: the plan checked against those facts before anything starts: unknown or removed
  flags, bad choices, unread `VLLM_*` variables, a backend this image cannot run on sm_120.
- `preflight`: the host's GPU runtime (CDI spec, `--gpus` hook) and the image's kernel probe.
- `server`: start the container, wait for `/health` and `/v1/models` with a progress line and a
  timeout, follow its log, and stop and remove it on failure and on Ctrl-C.
- `client`: the HTTP side: health, the model list, and `--bench`'s generation benchmark.
- `command`: the `vllm-forge serve` subcommand: its options and its run.
"""
