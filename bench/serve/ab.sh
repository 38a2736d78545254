#!/usr/bin/env bash
# Two builds of `chimeraforge serve` side by side behind one synthetic server, beside nginx
# (nginx.sh), so that a change to serve's request path is measured against the build before it
# in the same minutes: ROUNDS rounds of ttft.py (N requests to each, one stream at a time, the
# three targets taking turns request by request), with the CPU time each target used.
# Prints one line per round and appends one JSON object per target and round to
# bench/results/serve-ab.jsonl (binaries as given: name them by their commit).
#
# Usage: bench/serve/ab.sh OLD_CHIMERAFORGE NEW_CHIMERAFORGE [ROUNDS] [N]   (default 6, 2000)
#   e.g. git worktree or `git checkout OLD -- src/` to build the old binary, copied aside.
#   NEW_ARGS="--busy-poll-us 50" adds serve flags to the new one's command line (the same binary
#   twice then measures a flag).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
# shellcheck source=nginx.sh
source "$here/nginx.sh"
if [[ $# -lt 2 ]]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
old=$1
new=$2
rounds=${3:-6}
n=${4:-2000}
need_executables "$old" "$new"
bench_setup serve-ab

start_synth "$new" 4
old_port=$(free_port)
"$old" serve --port "$old_port" --backend openai --endpoint "http://127.0.0.1:$synth" >"$dir/old.log" 2>&1 &
old_pid=$!
pids+=("$old_pid")
new_port=$(free_port)
# shellcheck disable=SC2086 # NEW_ARGS: words
"$new" serve --port "$new_port" --backend openai --endpoint "http://127.0.0.1:$synth" ${NEW_ARGS:-} >"$dir/new.log" 2>&1 &
new_pid=$!
pids+=("$new_pid")
proxy=$(free_port)
start_nginx "$dir" "$proxy" "$synth"
pids+=("$NGINX_PID")
wait_port "$old_port"
wait_port "$new_port"
wait_port "$proxy"

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
declare -A url=([old]="http://127.0.0.1:$old_port" [new]="http://127.0.0.1:$new_port" [nginx]="http://127.0.0.1:$proxy")
declare -A pid=([old]=$old_pid [new]=$new_pid [nginx]=$NGINX_PID)
declare -A bin=([old]=$old [new]=$new [nginx]=nginx)
declare -A args=([old]="" [new]="${NEW_ARGS:-}" [nginx]="")
out_jsonl=$(cd "$here/../.." && pwd)/bench/results/serve-ab.jsonl
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# Each round: one ttft.py run whose requests take turns among the three targets (--interleave),
# and the CPU time each target used meanwhile (per request, the warm-up's included).
targets=(old new nginx)
for round in $(seq 1 "$rounds"); do
  declare -A before=()
  for t in "${targets[@]}"; do before[$t]=$(cpu_ticks "${pid[$t]}"); done
  o=$(/usr/bin/python3 "$here/ttft.py" --interleave "$n" "old=${url[old]}" "new=${url[new]}" "nginx=${url[nginx]}")
  declare -A line=()
  for t in "${targets[@]}"; do
    after=$(cpu_ticks "${pid[$t]}")
    line[$t]=$(/usr/bin/python3 -c '
import json, sys
o = json.loads(sys.argv[1])[sys.argv[2]]
us = int(sys.argv[3]) * int(sys.argv[4]) / (o["n"] + o["warmup"])
print("%s p50 %.3f p99 %.3f ms cpu %.0f us/req" % (sys.argv[2], o["p50_ms"], o["p99_ms"], us))
rec = {"at": sys.argv[6], "round": int(sys.argv[7]), "target": sys.argv[2], "binary": sys.argv[8],
       "args": sys.argv[9], "n": o["n"], "p50_ms": o["p50_ms"], "p99_ms": o["p99_ms"],
       "mean_ms": o["mean_ms"], "cpu_us_per_request": round(us, 1), "interleaved": True}
with open(sys.argv[5], "a") as f:
    f.write(json.dumps(rec) + "\n")' "$o" "$t" "$((after - ${before[$t]}))" "$tick_us" "$out_jsonl" "$stamp" \
      "$round" "${bin[$t]}" "${args[$t]}")
  done
  echo "round $round: ${line[old]}  ${line[new]}  ${line[nginx]}"
done
