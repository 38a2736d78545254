#!/usr/bin/env bash
# Added first-token latency of `chimeraforge serve` (docs/serve.md), one stream at a time:
# the synthetic server (first token at once) reached directly, through serve, and through nginx
# as a plain proxy_pass with buffering off, in the same run. Prints one JSON object (ttft.py).
#
# Usage: bench/serve/run.sh [BUILD_DIR] [N]      (default build, 2000 requests per target)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=nginx.sh
source "$here/nginx.sh"
build=${1:-$here/../../build}
n=${2:-2000}
cli=$build/apps/chimeraforge/chimeraforge
dir=$(mktemp -d /tmp/chimera-bench-serve.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    if /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "run.sh: nothing listens on port $1 (see $dir)" >&2
  return 1
}

synth=$(free_port)
"$cli" synth-server --port "$synth" --ttft-ms 0 --tokens-per-s 1000 --tokens 4 -q >"$dir/synth.log" 2>&1 &
pids+=($!)
wait_port "$synth"

serve=$(free_port)
"$cli" serve --port "$serve" --backend openai --endpoint "http://127.0.0.1:$synth" >"$dir/serve.log" 2>&1 &
pids+=($!)
wait_port "$serve"

proxy=$(free_port)
start_nginx "$dir" "$proxy" "$synth"
pids+=("$NGINX_PID")
wait_port "$proxy"

/usr/bin/python3 "$here/ttft.py" "$n" \
  "direct=http://127.0.0.1:$synth" "serve=http://127.0.0.1:$serve" "nginx=http://127.0.0.1:$proxy"
