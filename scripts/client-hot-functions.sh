#!/usr/bin/env bash
# Writes apps/chimeraforge-client/hot-functions.txt: the functions of chimeraforge-client that
# its usual runs execute, and the data they refer to, for the link to place side by side (--symbol-ordering-file, see
# apps/chimeraforge-client/CMakeLists.txt and docs/performance.md).
#
#   bash scripts/client-hot-functions.sh [BUILD_DIR]     # default: build
#
# Runs the built client under valgrind's callgrind against its own synthetic server (multi with
# one and four agents as bench/compare runs it, generate as the start-up probe, over both
# protocols, and endpoints check) and keeps every function of the program that ran, those that
# every run executes first, then grouped by the runs that execute them. Rebuild the client
# afterwards. A stale list is harmless: names that no longer exist are skipped by the
# linker, and the program stays correct; only its resident set grows back toward the unordered
# layout's.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
bin="$build/apps/chimeraforge/chimeraforge-client"
out="$root/apps/chimeraforge-client/hot-functions.txt"

if [[ ! -x "$bin" ]]; then
  echo "client-hot-functions: $bin not found; build the chimeraforge-client target first" >&2
  exit 2
fi
command -v valgrind >/dev/null || { echo "client-hot-functions: valgrind not found" >&2; exit 2; }

work="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" synth-server --port 0 --ttft-ms 0 --tokens-per-s 2000 --tokens 20 --threads 1 \
  >"$work/server.out" 2>&1 &
server=$!
url=""
for _ in $(seq 100); do
  url="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/server.out" || true)"
  [[ -n "$url" ]] && break
  sleep 0.1
done
if [[ -z "$url" ]]; then
  echo "client-hot-functions: the synthetic server did not start:" >&2
  cat "$work/server.out" >&2
  exit 1
fi

n=0
profile() {
  n=$((n + 1))
  valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$work/cg.$n" "$bin" "$@" >"$work/run.$n.out" 2>"$work/run.$n.err" || {
    echo "client-hot-functions: '$*' failed:" >&2
    tail -5 "$work/run.$n.err" >&2
    exit 1
  }
}

for backend in ollama openai; do
  for agents in 1 4; do
    profile multi --endpoint "$url" --backend "$backend" --model synth --prompt "Say something." \
      --agents "$agents" --requests-per-agent 3 --max-tokens 20 \
      --records "$work/records.$backend.$agents.jsonl" --record-lags --no-calibrate --quiet \
      --results "" --executor single
  done
  profile generate --endpoint "$url" --backend "$backend" --model synth --prompt hi \
    --num-predict 1 --quiet
  profile generate --endpoint "$url" --backend "$backend" --model synth --prompt hi \
    --num-predict 8 --json
done
profile endpoints check "$url"

HOT_FUNCTIONS_SCRIPT=client-hot-functions.sh python3 "$root/scripts/hot_functions.py" "$bin" "$out" \
  "chimeraforge-client's functions that its usual runs execute" "$work"/cg.*
