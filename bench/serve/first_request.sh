#!/usr/bin/env bash
# The first chat request of a freshly started server: `serve --model` (in-process) and
# llama-server on the same model file, threads and sequences. Each round starts each target in
# turn (the order reversed every other round), waits until it answers /health and a further 0.3 s, sends it one chat request on a new
# connection (chat_ttft.py's request: a system and a user message), takes the time to the first
# content chunk (and, for serve, its own figure: /metrics' chimera_serve_ttft_seconds, from the
# request's arrival in the engine to its first token), and stops it.
#
#   bash bench/serve/first_request.sh [BUILD] [ROUNDS]      (default: build 8)
#
# CLIS="NAME=PATH ..." runs other builds of the CLI as serve targets (default: BUILD's, "serve").
# Each round's figures (ms) are appended to bench/results/serve-first-request.jsonl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=bench/serve/common.sh
source "$here/common.sh"
build=${1:-$root/build}
rounds=${2:-8}
cli=$build/apps/chimeraforge/chimeraforge
clis=${CLIS:-serve=$cli}
threads=${THREADS:-2}
llama_server=$(llama_server_of "$build")
out_jsonl=$root/bench/results/serve-first-request.jsonl
bench_setup first-request
run_lines=()
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
model=$dir/tiny.gguf
"$cli" model synth --preset tiny --seed 42 --out "$model" --quiet >/dev/null

first() {  # port: ms to the first token of one chat request on a new connection
  /usr/bin/python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import chat_ttft; print(round(chat_ttft.Client("http://127.0.0.1:" + sys.argv[2]).one(1) / 1e6, 3))' "$here" "$1"
}

specs=("llama-server=")
for spec in $clis; do specs+=("$spec"); done
for r in $(seq 1 "$rounds"); do
  figures=()
  order=("${specs[@]}")
  if ((r % 2 == 0)); then  # every other round in the reverse order
    order=()
    for ((i = ${#specs[@]} - 1; i >= 0; i--)); do order+=("${specs[i]}"); done
  fi
  for spec in "${order[@]}"; do
    name=${spec%%=*}
    port=$(free_port)
    if [[ $name == llama-server ]]; then
      "$llama_server" -m "$model" --host 127.0.0.1 --port "$port" -c $((512 * 8)) -np 8 \
        -t "$threads" --no-webui --cache-ram 0 >"$dir/$name.log" 2>&1 &
    else
      "${spec#*=}" serve --port "$port" --model "$model" --parallel 8 --ctx-per-seq 512 \
        --model-threads "$threads" >"$dir/$name.log" 2>&1 &
    fi
    sp=$!
    pids+=("$sp")
    wait_http "$port"
    sleep 0.3
    figures+=("$name=$(first "$port")")
    if [[ $name != llama-server ]]; then  # serve's own time from the request to its first token
      figures+=("$name (server)=$(curl -s "http://127.0.0.1:$port/metrics" |
        awk '/^chimera_serve_ttft_seconds_sum/ {printf "%.3f", $2 * 1000}')")
    fi
    kill "$sp"
    wait "$sp" 2>/dev/null || true
  done
  line=$(/usr/bin/python3 -c 'import json,sys; print(json.dumps({"first_token_ms": {k: float(v) for k, v in (a.split("=", 1) for a in sys.argv[7:])}, "round": int(sys.argv[1]), "at": sys.argv[2], "commit": sys.argv[3], "threads": int(sys.argv[4]), "clis": sys.argv[5], "loadavg": sys.argv[6]}))' \
    "$r" "$stamp" "$commit" "$threads" "$clis" "$(cut -d' ' -f1-3 /proc/loadavg)" "${figures[@]}")
  echo "$line"
  echo "$line" >>"$out_jsonl"
  run_lines+=("$line")
done
# The run in one table: medians and ranges over the rounds.
/usr/bin/python3 - "${run_lines[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(a)["first_token_ms"] for a in sys.argv[1:]]
print("\n| target | first token median ms | range |\n| --- | ---: | ---: |")
for name in rows[0]:
    v = [r[name] for r in rows]
    print(f"| {name} | {statistics.median(v):.2f} | {min(v):.2f} - {max(v):.2f} |")
PY
