#!/usr/bin/env bash
# The main job: build what is missing, then run the agent workflow on the project's own sample
# data (data/sample) with the in-process engine and the tiny synthetic model (made on first use;
# random weights: the report's model-written sections are noise, its figures are real).
# Writes out/report.md and out/metrics.json. Extra arguments go to `chimeraforge run`
# (e.g. --config both --runs 3, or --backend ollama --endpoint URL --model NAME).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
build/apps/chimeraforge/chimeraforge run --data data/sample --out out "$@"
echo "report: out/report.md, figures: out/metrics.json"
