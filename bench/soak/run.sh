#!/usr/bin/env bash
# The fault soak: 256 agents over two faulting synthetic servers and a llama-server that is
# killed and restarted every minute (docs/fault-matrix.md).
#
#   bench/soak/run.sh --minutes 10      the soak (about 10 minutes plus the build)
#   bench/soak/run.sh --smoke           45 s, llama-server restarted every 15 s (CI)
#
# Builds chimera_soak and chimeraforge in $BUILD_DIR (default: build, Release) if needed, then
# runs the driver; other arguments go to it (--agents, --fault-rate, --results, ...; --help).
# Appends one JSON line to bench/results/soak.jsonl (the smoke: $BUILD_DIR/soak-smoke.jsonl).
# Exit status: the driver's (0 passed, 1 failed, 2 usage).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}

args=()
smoke=0
for a in "$@"; do
  if [[ "$a" == --smoke ]]; then smoke=1; else args+=("$a"); fi
done
if ((smoke)); then
  args=(--minutes 0.75 --restart-s 15 --warmup-s 10 --label smoke
        --results "$BUILD_DIR/soak-smoke.jsonl" "${args[@]}")
fi

if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$JOBS" --target chimera_soak chimeraforge
exec "$BUILD_DIR/bench/soak/chimera_soak" "${args[@]}"
