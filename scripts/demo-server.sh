#!/usr/bin/env bash
# Streams one request through a real llama-server: writes the tiny synthetic model, starts
# llama-server with it on a free loopback port, runs `chimeraforge generate`, stops the server.
# Extra arguments go to `chimeraforge generate` (e.g. --json, --num-predict 128).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
cli=build/apps/chimeraforge/chimeraforge
server=$(sed -n 's/^CHIMERA_LLAMA_SERVER:FILEPATH=//p' build/CMakeCache.txt)
model=build/models/tiny.gguf
if [[ ! -f $model ]]; then
  mkdir -p build/models
  "$cli" model synth --preset tiny --out "$model" --quiet
fi

port=$(bash scripts/free-port.sh)
log=$(mktemp -t chimera-llama-server.XXXXXX.log)
"$server" -m "$model" --host 127.0.0.1 --port "$port" -c 2048 -np 2 -t "$(nproc)" \
  --no-webui --cache-ram 0 >"$log" 2>&1 &
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "demo-server.sh: llama-server exited before it was ready; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done

echo "llama-server (tiny synthetic model, random weights: the text is noise) on port $port" >&2
"$cli" generate --endpoint "http://127.0.0.1:$port" --backend openai --model tiny \
  --prompt "Write one line of banter for a tavern keeper." --num-predict 64 "$@"
