#!/usr/bin/env bash
# One client's first token from `serve --model` (in-process) when its requests come back to back
# and when each comes after a pause, two builds side by side: ROUNDS rounds, in each a fresh
# process of OLD and then of NEW on the tiny synthetic model (2 model threads, 8 slots, as
# scale.sh's part 2), each sent 16 requests back to back and 16 after pauses of 20 ms
# (pause_ttft.py), and the CPU time each process used. Prints one line per process and appends
# one JSON object per process to
# bench/results/serve-pause.jsonl (binaries as given: name them by their commit).
#
# Usage: bench/serve/pause.sh OLD_CHIMERAFORGE NEW_CHIMERAFORGE [ROUNDS]   (default 6)
#   NEW_ENV="NAME=VALUE ..." runs the new one with those variables set (the same binary twice
#   then measures a setting, e.g. NEW_ENV=GOMP_SPINCOUNT=100000000: OpenMP's workers spinning).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
if [[ $# -lt 2 ]]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
old=$1
new=$2
rounds=${3:-6}
need_executables "$old" "$new"
bench_setup serve-pause
model=$dir/tiny.gguf
"$new" model synth --preset tiny --seed 42 --out "$model" --quiet >/dev/null
out_jsonl=$(cd "$here/../.." && pwd)/bench/results/serve-pause.jsonl
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for round in $(seq 1 "$rounds"); do
  for which in old new; do
    bin=$old
    env=()
    if [[ $which == new ]]; then
      bin=$new
      # shellcheck disable=SC2206 # NEW_ENV: words
      env=(${NEW_ENV:-})
    fi
    port=$(free_port)
    env "${env[@]}" "$bin" serve --port "$port" --model "$model" --parallel 8 --ctx-per-seq 512 --model-threads 2 \
      >"$dir/serve.log" 2>&1 &
    sp=$!
    pids+=("$sp")
    wait_http "$port"
    b2b=$(/usr/bin/python3 "$here/pause_ttft.py" "http://127.0.0.1:$port" 16 0)
    paused=$(/usr/bin/python3 "$here/pause_ttft.py" "http://127.0.0.1:$port" 16 20)
    # The CPU time the process used in all (user + system, load and warm-up included), in ms.
    cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$sp/stat")
    kill "$sp"
    wait "$sp" 2>/dev/null || true
    pids=()
    /usr/bin/python3 -c '
import json, sys
b2b, paused = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("round %s %s: back to back p50 %.2f p90 %.2f ms, after 20 ms p50 %.2f p90 %.2f ms, cpu %s ms"
      % (sys.argv[3], sys.argv[4], b2b["p50_ms"], b2b["p90_ms"], paused["p50_ms"], paused["p90_ms"],
         sys.argv[9]))
rec = {"at": sys.argv[5], "round": int(sys.argv[3]), "target": sys.argv[4], "binary": sys.argv[6],
       "env": sys.argv[8], "cpu_ms": float(sys.argv[9]), "back_to_back": b2b, "after_pause": paused}
with open(sys.argv[7], "a") as f:
    f.write(json.dumps(rec) + "\n")' "$b2b" "$paused" "$round" "$which" "$stamp" "$bin" "$out_jsonl" \
      "${env[*]}" "$cpu_ms"
  done
done
