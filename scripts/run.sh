#!/usr/bin/env bash
# The main job: build what is missing, then run the agent workflow on the project's own sample
# data (data/sample) with the in-process engine and the tiny synthetic model (made on first use;
# random weights: the report's model-written sections are noise, its figures are real).
# Writes out/report.md and out/metrics.json. Extra arguments go to `chimeraforge run`
# (e.g. --config both --runs 3, or --backend ollama --endpoint URL --model NAME).
#
# It builds the CLI only (scripts/build.sh builds everything, test suites included), so a first
# run is not spent compiling tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if [[ ! -f build/CMakeCache.txt ]]; then
  generator=()
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build build --target chimeraforge --parallel "$(nproc)"
build/apps/chimeraforge/chimeraforge run --data data/sample --out out "$@"
echo "report: out/report.md, figures: out/metrics.json"
