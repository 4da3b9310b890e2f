"""`nox -s verify`: prove an image is what versions.toml says.

- `command`: the `vllm-forge verify` subcommand: its options, config and run.
- `archcheck`: which SASS/PTX targets a shared object carries (cuobjdump on the host); also
  the `vllm-forge archcheck` subcommand.
- `leaks`: custom CA certificates and planted needles, searched in every layer of a saved image.
- `expect`: what the pins say the image must hold (versions, labels, which .so need which SASS).
- `container`: the one long-lived container a verify session runs its checks in.
- `checks`: the checks themselves, a pytest-testinfra module run by `runner`.
- `report`: results as a table, JSON and text under build/reports/.
"""
