#!/usr/bin/env bash
# What map-reduce costs against the single-call digest: calls, LLM time and the whole run, for
# the same data and configuration, runs alternating. Prints a Markdown table and appends it to
# bench/results/ingest.strategy.md.
#   bash bench/ingest/strategy_cost.sh [BUILD_DIR] [DATA] [RUNS]
set -euo pipefail
build=${1:-build}
data=${2:-data/sample}
runs=${3:-3}
cli="$build/apps/chimeraforge/chimeraforge"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq 1 "$runs"); do
  for s in single map-reduce; do
    "$cli" run --data "$data" --config chimera --strategy "$s" --quiet --out "$tmp/$s-$i"
  done
done
/usr/bin/python3 - "$tmp" "$runs" "$data" <<'PY' | tee -a bench/results/ingest.strategy.md
import json, statistics, sys, pathlib, datetime
tmp, runs, data = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print(f"\n## {datetime.date.today()}: `{data}`, chimera configuration, {runs} runs each (mean ± sd)\n")
print("| strategy | LLM calls | LLM time ms | run ms | digest tokens |")
print("| --- | ---: | ---: | ---: | ---: |")
for s in ("single", "map-reduce"):
    calls, llm, total, tokens = [], [], [], []
    for i in range(1, runs + 1):
        run = json.load(open(tmp / f"{s}-{i}" / "metrics.json"))["runs"][0]
        st = run["stages_ms"]
        calls.append(len(run["calls"]))
        llm.append(st["slices"] + st["analysis"] + st["report"])
        total.append(st["total"])
        tokens.append(run["digest"]["estimated_tokens"])
    f = lambda v: f"{statistics.mean(v):.0f} ± {statistics.stdev(v) if len(v) > 1 else 0:.0f}"
    print(f"| {s} | {calls[0]} | {f(llm)} | {f(total)} | {tokens[0]} |")
PY
