#!/usr/bin/env bash
# Every test: installs and builds what is missing (the engine, and the Python and Rust peers the
# benchmark harness compares it with), then runs every suite through ctest. The suites start the
# servers they need themselves (llama-server and the synthetic server on free loopback ports,
# and the fixture server for Ollama's protocol and for faults).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
bash scripts/setup-peers.sh
ctest --test-dir build --output-on-failure --timeout 900 "$@"
