#!/usr/bin/env bash
# The user-space instructions each proxy executes per request, serve beside nginx (nginx.sh), both
# under callgrind in front of the same synthetic server (4 tokens, or --tokens, at 1,000 tokens/s, first token at
# once): after 10 warm-up requests the counters are zeroed, REQUESTS streamed chat requests go
# through one at a time (load.py, one client), and the dump's total over REQUESTS is printed and
# appended to bench/results/serve-instructions.jsonl. Instructions do not depend on the machine's
# load, so this is the part of a one-stream latency gap that a proxy's own code decides (what is
# left is the kernel's: system calls and wake-ups, bench/serve/cost.sh). With --top K, serve's K
# functions with the most instructions per request, their own and with their callees.
#
# Usage: bench/serve/instructions.sh CHIMERAFORGE [REQUESTS] [--top K] [--tokens T]
#   (default 200 requests of 4 tokens; two runs with different T give the cost of one more token)
#   e.g. bench/serve/instructions.sh build/apps/chimeraforge/chimeraforge 200 --top 15
#   SERVE_ARGS="--relay" adds serve flags (recorded with the figures).
# Needs valgrind (scripts/setup.sh installs it) and nginx.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
# shellcheck source=nginx.sh
source "$here/nginx.sh"
bin=${1:-}
requests=200
top=0
tokens=4
shift || true
while [[ $# -gt 0 ]]; do
  case $1 in
    --top) top=${2:?--top needs a count}; shift 2 ;;
    --tokens) tokens=${2:?--tokens needs a count}; shift 2 ;;
    *) requests=$1; shift ;;
  esac
done
if [[ -z $bin ]]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
need_executables "$bin"
[[ $requests =~ ^[1-9][0-9]*$ ]] || { echo "instructions.sh: REQUESTS must be a positive number, got '$requests'" >&2; exit 2; }
[[ $tokens =~ ^[1-9][0-9]*$ ]] || { echo "instructions.sh: --tokens must be a positive number, got '$tokens'" >&2; exit 2; }
for tool in valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is not installed (valgrind)" >&2; exit 2; }
done
bench_setup serve-instructions

start_synth "$bin" "$tokens"

# One proxy under callgrind: warm it up, zero its counters, send the requests, dump.
# Prints the instructions per request.
measure() {  # NAME PORT PID
  local name=$1 port=$2 pid=$3 total
  /usr/bin/python3 "$here/load.py" "http://127.0.0.1:$port" --clients 1 --requests 10 \
    --max-tokens "$tokens" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  /usr/bin/python3 "$here/load.py" "http://127.0.0.1:$port" --clients 1 --requests "$requests" \
    --max-tokens "$tokens" --name "$name" >"$dir/$name.load.json"
  rm -f "$dir/$name.out".*
  callgrind_control -d "$pid" >/dev/null
  for _ in $(seq 1 100); do
    compgen -G "$dir/$name.out.*" >/dev/null && break
    sleep 0.1
  done
  total=$(callgrind_annotate "$(compgen -G "$dir/$name.out.*" | head -1)" 2>/dev/null |
    sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
  [[ -n $total ]] || { echo "instructions.sh: no callgrind totals for $name (see $dir)" >&2; exit 1; }
  echo $((total / requests))
}

serve_port=$(free_port)
# shellcheck disable=SC2086 # SERVE_ARGS: words
valgrind --tool=callgrind --callgrind-out-file="$dir/serve.out" "$bin" serve --port "$serve_port" \
  --backend openai --endpoint "http://127.0.0.1:$synth" ${SERVE_ARGS:-} >"$dir/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
wait_http "$serve_port"
serve_per=$(measure serve "$serve_port" "$serve_pid")
if [[ $top -gt 0 ]]; then
  # Left out: the frames every instruction of a thread is under (its start, and with callees
  # included, the event loop's own), which would fill the list with the total.
  roots='clone.S:clone\|:start_thread \|execute_native_thread_routine'
  for inclusive in no yes; do
    if [[ $inclusive == no ]]; then
      echo "serve: the $top functions with the most instructions of their own, per request" >&2
      skip=$roots
    else
      echo "serve: the $top functions with the most instructions, callees included, per request" >&2
      skip="$roots\|_State_impl\|do_run_one\|awaitable_thread"
    fi
    callgrind_annotate --inclusive="$inclusive" --threshold=100 \
      "$(compgen -G "$dir/serve.out.*" | head -1)" 2>/dev/null |
      sed -n '/file:function/,$p' | sed -n '3,$p' | grep -v "$skip" |
      head -n "$top" | awk -v n="$requests" '{c=$1; gsub(",", "", c); $1=""; $2=""; printf "%8d %s\n", c / n, substr($0, 1, 150)}' >&2 ||
      true  # head closes the pipe early
  done
fi
kill "$serve_pid"

nginx_port=$(free_port)
NGINX_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$dir/nginx.out" \
  start_nginx "$dir" "$nginx_port" "$synth" 256
pids+=("$NGINX_PID")
wait_port "$nginx_port"
nginx_per=$(measure nginx "$nginx_port" "$NGINX_PID")
kill "$NGINX_PID"

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -1)
line=$(/usr/bin/python3 -c 'import json, sys; print(json.dumps({"at": sys.argv[1], "commit": sys.argv[2] + ("+uncommitted" if sys.argv[3] else ""), "binary": sys.argv[4], "requests": int(sys.argv[5]), "tokens": int(sys.argv[6]), "instructions_per_request": {"serve": int(sys.argv[7]), "nginx": int(sys.argv[8])}, "serve_args": sys.argv[9], "command": ("SERVE_ARGS=\"" + sys.argv[9] + "\" " if sys.argv[9] else "") + "bench/serve/instructions.sh " + " ".join(sys.argv[10:])}))' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$dirty" "$bin" "$requests" "$tokens" "$serve_per" "$nginx_per" "${SERVE_ARGS:-}" "$bin" "$requests" --tokens "$tokens")
echo "$line"
echo "$line" >>"$root/bench/results/serve-instructions.jsonl"
