#!/usr/bin/env bash
# The floor under `startup` on this machine: the harness's definition (spawn -> first request
# byte at the synthetic server) measured for floor.c, a static C program that only connects and
# sends one request, beside chimeraforge-client's `generate`, alternating.
#
# Usage: bench/compare/floor/run.sh [BUILD_DIR] [PROBES]     (default build, 30 probes each)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../../build}" && pwd)
probes=${2:-30}
dir=$(mktemp -d /tmp/chimera-floor.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
cc -O2 -static -o "$dir/floor" "$here/floor.c"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$build/apps/chimeraforge/chimeraforge" synth-server --port "$port" --ttft-ms 0 --tokens 1 \
  --threads 1 -q >"$dir/synth.log" 2>&1 &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/stats" && break; sleep 0.05; done
/usr/bin/python3 - "$port" "$probes" "$dir/floor" "$build/apps/chimeraforge/chimeraforge-client" <<'PY'
import json, os, statistics, subprocess, sys, time, urllib.request
port, probes, floor, client = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
url = f"http://127.0.0.1:{port}"
programs = {
    "floor.c (static, connect and send only)": [floor, port],
    "chimeraforge-client generate": [client, "generate", "--endpoint", url, "--backend", "ollama",
                                     "--model", "synth", "--prompt", "hi", "--num-predict", "1",
                                     "--quiet"],
}
times = {name: [] for name in programs}
for _ in range(probes):
    for name, argv in programs.items():
        urllib.request.urlopen(urllib.request.Request(url + "/stats/reset", data=b"")).read()
        t0 = time.monotonic_ns()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        first = json.loads(urllib.request.urlopen(url + "/stats").read())["first_request_ns"]
        times[name].append((first - t0) / 1e6)
print(f"startup (spawn -> first request byte), {probes} probes each, load average "
      f"{os.getloadavg()[0]:.2f}:")
for name, v in times.items():
    print(f"  {name}: median {statistics.median(v):.2f} ms, min {min(v):.2f}, "
          f"max {max(v):.2f}")
PY
