#!/usr/bin/env bash
# CPU per streamed chunk of one or more builds of the client: `perf stat` task-clock of
# `multi --agents 16 --requests-per-agent 2` at 220 tokens a request less the same at 20 tokens,
# divided by the 6,400 chunks between them, against the synthetic server at 1,000 tokens/s
# (first token at once). The synthetic server runs on CPU 0, the client on CPU 1; the builds
# alternate, ROUNDS times (docs/performance.md, "Per chunk").
#
#   bash bench/compare/chunk_cost.sh [ROUNDS] CLIENT [CLIENT ...]
#
# CLIENT: a chimeraforge-client (or chimeraforge) binary. Prints one line a build and round.
set -euo pipefail
rounds=${1:?usage: chunk_cost.sh ROUNDS CLIENT [CLIENT ...]}
shift
(($# > 0)) || { echo "chunk_cost.sh: name at least one client binary" >&2; exit 2; }
command -v perf >/dev/null || { echo "chunk_cost.sh: perf is missing (Debian's linux-perf)" >&2; exit 1; }
dir=$(mktemp -d /tmp/chimera-chunk-cost.XXXXXX)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 "$1" synth-server --port "$port" --tokens-per-s 1000 >"$dir/synth.log" 2>&1 &
synth=$!
trap 'kill $synth 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do grep -q http "$dir/synth.log" && break; sleep 0.05; done
cpu_ms() {  # client, tokens: the client's task-clock, ms
  taskset -c 1 perf stat -x, -e task-clock -o "$dir/stat" "$1" multi --agents 16 \
    --requests-per-agent 2 --max-tokens "$2" --endpoint "http://127.0.0.1:$port" \
    --backend ollama -m synth >/dev/null 2>"$dir/multi.err" ||
    { cat "$dir/multi.err" >&2; exit 1; }
  cut -d, -f1 <(grep task-clock "$dir/stat")
}
for r in $(seq 1 "$rounds"); do
  for client in "$@"; do
    hi=$(cpu_ms "$client" 220)
    lo=$(cpu_ms "$client" 20)
    /usr/bin/python3 -c 'import sys; hi, lo = float(sys.argv[3]), float(sys.argv[4]); print(f"{sys.argv[1]} round {sys.argv[2]}: {(hi - lo) * 1000 / 6400:.2f} us a chunk (220 tokens: {hi:.1f} ms, 20: {lo:.1f} ms)")' \
      "$client" "$r" "$hi" "$lo"
  done
done
