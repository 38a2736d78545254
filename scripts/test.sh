#!/usr/bin/env bash
# Every test: installs and builds what is missing, then runs the GoogleTest suites through ctest.
# The suites start the servers they need themselves (llama-server on free loopback ports, and
# the fixture server for Ollama's protocol and for faults).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 900 "$@"
