#!/usr/bin/env bash
# Added first-token latency of `chimeraforge serve` (docs/serve.md), one stream at a time:
# the synthetic server (first token at once) reached directly, through serve, and through nginx
# as a plain proxy_pass with buffering off, in the same run, their requests taking turns (ttft.py
# --interleave). Prints one JSON object (ttft.py).
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

/usr/bin/python3 "$here/ttft.py" --interleave "$n" \
  "direct=http://127.0.0.1:$synth" "serve=http://127.0.0.1:$serve" "nginx=http://127.0.0.1:$proxy"
