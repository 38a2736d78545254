#!/usr/bin/env bash
# Added first-token latency of `chimeraforge serve` (docs/serve.md), one stream at a time:
# the synthetic server (first token at once) reached directly, through serve, and through nginx
# as a plain proxy_pass with buffering off, in the same run, their requests taking turns (ttft.py
# --interleave). Prints one JSON object (ttft.py) and appends it, with the time and the commit,
# to bench/results/serve-run.jsonl.
#
# Usage: bench/serve/run.sh [BUILD_DIR] [N]      (default build, 2000 requests per target)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
# shellcheck source=nginx.sh
source "$here/nginx.sh"
build=${1:-$here/../../build}
n=${2:-2000}
cli=$build/apps/chimeraforge/chimeraforge
bench_setup serve

start_synth "$cli" 4

serve=$(free_port)
"$cli" serve --port "$serve" --backend openai --endpoint "http://127.0.0.1:$synth" >"$dir/serve.log" 2>&1 &
pids+=($!)
wait_port "$serve"

proxy=$(free_port)
start_nginx "$dir" "$proxy" "$synth"
pids+=("$NGINX_PID")
wait_port "$proxy"

out=$(/usr/bin/python3 "$here/ttft.py" --interleave "$n" \
  "direct=http://127.0.0.1:$synth" "serve=http://127.0.0.1:$serve" "nginx=http://127.0.0.1:$proxy")
echo "$out"
root=$(cd "$here/../.." && pwd)
/usr/bin/python3 -c '
import json, sys
rec = {"at": sys.argv[2], "commit": sys.argv[3], "command": sys.argv[4], "interleaved": True}
rec.update(json.loads(sys.argv[1]))
with open(sys.argv[5], "a") as f:
    f.write(json.dumps(rec) + "\n")' "$out" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" "bash bench/serve/run.sh $*" \
  "$root/bench/results/serve-run.jsonl"
