#!/usr/bin/env bash
# First token of chat requests with new prompts: `serve --model` (in-process) against llama-server
# on the same model file, threads and sequences, one request at a time (chat_ttft.py).
#
#   bash bench/serve/chat_ttft.sh [BUILD] [ROUNDS] [N]      (default: build 4 40)
#
# The tiny model with each chat template in TEMPLATES (default: the model's own, Llama 3.1's and
# Qwen 3's, which parses reasoning out of the reply;
# any name of llama.cpp's models/templates/*.jinja), written by `model synth --chat-template`.
# The targets run in turn, their order reversed every other round. CLIS="NAME=PATH ..." adds
# other builds of the CLI as serve targets (e.g. the build before a change; default: BUILD's as
# "serve"). Each round's figures are appended to bench/results/serve-chat-ttft.jsonl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=bench/serve/common.sh
source "$here/common.sh"
build=${1:-$root/build}
rounds=${2:-4}
n=${3:-40}
cli=$build/apps/chimeraforge/chimeraforge
clis=${CLIS:-serve=$cli}
templates=${TEMPLATES:-default meta-llama-Llama-3.1-8B-Instruct Qwen-Qwen3-0.6B}
threads=${THREADS:-2}
llama_server=$(llama_server_of "$build")
out_jsonl=$root/bench/results/serve-chat-ttft.jsonl
bench_setup chat-ttft
run_lines=()
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)


for template in $templates; do
  model=$dir/tiny-$template.gguf
  if [[ $template == default ]]; then
    "$cli" model synth --preset tiny --seed 42 --out "$model" --quiet >/dev/null
  else
    "$cli" model synth --preset tiny --seed 42 --chat-template "$template" --out "$model" --quiet >/dev/null
  fi
  targets=()
  port=$(free_port)
  "$llama_server" -m "$model" --host 127.0.0.1 --port "$port" -c $((512 * 8)) -np 8 -t "$threads" \
    --no-webui --cache-ram 0 >"$dir/llama-server-$template.log" 2>&1 &
  pids+=($!)
  wait_http "$port"
  targets+=("llama-server=http://127.0.0.1:$port")
  for spec in $clis; do
    name=${spec%%=*}
    port=$(free_port)
    "${spec#*=}" serve --port "$port" --model "$model" --parallel 8 --ctx-per-seq 512 \
      --model-threads "$threads" >"$dir/$name-$template.log" 2>&1 &
    pids+=($!)
    wait_http "$port"
    targets+=("$name=http://127.0.0.1:$port")
  done
  for r in $(seq 1 "$rounds"); do
    order=("${targets[@]}")
    if ((r % 2 == 0)); then
      order=()
      for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[i]}"); done
    fi
    line=$(/usr/bin/python3 "$here/chat_ttft.py" "$n" "${order[@]}")
    line=$(/usr/bin/python3 -c 'import json,sys; o={"targets": json.loads(sys.argv[1])}; o.update(template=sys.argv[2], round=int(sys.argv[3]), at=sys.argv[4], commit=sys.argv[5], threads=int(sys.argv[6]), clis=sys.argv[7], loadavg=open("/proc/loadavg").read().split()[:3]); print(json.dumps(o))' \
      "$line" "$template" "$r" "$stamp" "$commit" "$threads" "$clis")
    echo "$line"
    echo "$line" >>"$out_jsonl"
    run_lines+=("$line")
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
# The run in one table: each template's targets, ranges over the rounds.
/usr/bin/python3 - "${run_lines[@]}" <<'PY'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:]]
print("\n| template | target | first token p50 ms | p99 ms |\n| --- | --- | ---: | ---: |")
for t in dict.fromkeys(r["template"] for r in rows):
    mine = [r for r in rows if r["template"] == t]
    for name in mine[0]["targets"]:
        p50 = [r["targets"][name]["p50_ms"] for r in mine]
        p99 = [r["targets"][name]["p99_ms"] for r in mine]
        print(f"| {t} | {name} | {min(p50):.2f} - {max(p50):.2f} | {min(p99):.2f} - {max(p99):.2f} |")
PY
