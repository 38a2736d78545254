#!/usr/bin/env bash
# Writes apps/chimeraforge/serve-hot-functions.txt: the functions of chimeraforge that
# `chimeraforge serve` runs for its requests, and the data they refer to, for the link to place
# side by side (--symbol-ordering-file, see apps/chimeraforge/CMakeLists.txt and docs/serve.md,
# "The request path's code, side by side").
#
#   bash scripts/serve-hot-functions.sh [BUILD_DIR]     # default: build
#
# Runs the built CLI's serve under valgrind's callgrind in front of its own synthetic server,
# once with an OpenAI-compatible upstream and once with an Ollama one; after a few warm-up
# requests the counters are zeroed, and each client API is called (OpenAI chat and completions,
# streamed and whole; Ollama chat and generate), so that start-up code stays out of the list.
# Keeps every function of the program that ran, those that both runs execute first. Rebuild
# chimeraforge afterwards. A stale list is harmless: names that no longer exist are skipped by
# the linker, and the program stays correct; only the request path's code spreads out again.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
bin="$build/apps/chimeraforge/chimeraforge"
out="$root/apps/chimeraforge/serve-hot-functions.txt"

if [[ ! -x "$bin" ]]; then
  echo "serve-hot-functions: $bin not found; build the chimeraforge target first" >&2
  exit 2
fi
for tool in valgrind callgrind_control; do
  command -v "$tool" >/dev/null || { echo "serve-hot-functions: $tool not found (valgrind)" >&2; exit 2; }
done

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Prints the URL a server wrote to FILE once it listens (10 s at most; valgrind's own lines,
# the command line among them, come first).
url_of() {
  local url=""
  for _ in $(seq 100); do
    url="$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$1" | head -1 || true)"
    url=${url#listening on }
    [[ -n "$url" ]] && break
    sleep 0.1
  done
  [[ -n "$url" ]] || { echo "serve-hot-functions: no server started ($1):" >&2; cat "$1" >&2; exit 1; }
  echo "$url"
}

"$bin" synth-server --port 0 --ttft-ms 0 --tokens-per-s 2000 --tokens 8 --threads 1 \
  >"$work/synth.out" 2>&1 &
pids+=($!)
synth="$(url_of "$work/synth.out")"

# REQUESTS requests of each kind to the server at URL, over one kept-alive connection.
requests() {  # URL REQUESTS
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import http.client, json, sys
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
n = int(sys.argv[2])
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
messages = [{"role": "user", "content": "Say something."}]
kinds = [
    ("/v1/chat/completions", {"model": "synth", "messages": messages, "stream": True,
                              "max_tokens": 8}),
    ("/v1/chat/completions", {"model": "synth", "messages": messages, "max_tokens": 8}),
    ("/v1/completions", {"model": "synth", "prompt": "Say something.", "stream": True,
                         "max_tokens": 8}),
    ("/api/chat", {"model": "synth", "messages": messages, "options": {"num_predict": 8}}),
    ("/api/generate", {"model": "synth", "prompt": "Say something.",
                       "options": {"num_predict": 8}}),
]
for _ in range(n):
    for path, body in kinds:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"serve-hot-functions: {path} answered {r.status}")
EOF
}

profile() {  # BACKEND
  local backend=$1 pid url
  valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$work/cg.$backend" "$bin" serve --port 0 --backend "$backend" \
    --endpoint "$synth" >"$work/serve.$backend.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  url="$(url_of "$work/serve.$backend.out")"
  for _ in $(seq 300); do
    curl -sf "$url/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  requests "$url" 5
  callgrind_control -z "$pid" >/dev/null
  requests "$url" 40
  callgrind_control -d "$pid" >/dev/null
  for _ in $(seq 100); do
    [[ -s "$work/cg.$backend.1" ]] && break
    sleep 0.1
  done
  [[ -s "$work/cg.$backend.1" ]] || { echo "serve-hot-functions: no profile from serve ($backend)" >&2; exit 1; }
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

profile openai
profile ollama

HOT_FUNCTIONS_SCRIPT=serve-hot-functions.sh python3 "$root/scripts/hot_functions.py" \
  --distinct-names "$bin" "$out" "chimeraforge's functions that serve's requests run" \
  "$work"/cg.openai.1 "$work"/cg.ollama.1
