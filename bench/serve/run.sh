#!/usr/bin/env bash
# Added first-token latency of `chimeraforge serve` (docs/serve.md), one stream at a time:
# the synthetic server (first token at once) reached directly, through serve, and through nginx
# as a plain proxy_pass with buffering off, in the same run. Prints one JSON object (ttft.py).
#
# Usage: bench/serve/run.sh [BUILD_DIR] [N]      (default build, 2000 requests per target)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
n=${2:-2000}
cli=$build/apps/chimeraforge/chimeraforge
nginx=$(command -v nginx || echo /usr/sbin/nginx)
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
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body; proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi; uwsgi_temp_path $dir/nginx/uwsgi; scgi_temp_path $dir/nginx/scgi;
  upstream synth { server 127.0.0.1:$synth; keepalive 8; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$proxy;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://synth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      tcp_nodelay on;
    }
  }
}
CONF
"$nginx" -e "$dir/nginx/error.log" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" >"$dir/nginx.out" 2>&1 &
pids+=($!)
wait_port "$proxy"

/usr/bin/python3 "$here/ttft.py" "$n" \
  "direct=http://127.0.0.1:$synth" "serve=http://127.0.0.1:$serve" "nginx=http://127.0.0.1:$proxy"
