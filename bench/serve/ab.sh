#!/usr/bin/env bash
# Two builds of `chimeraforge serve` side by side behind one synthetic server, beside nginx
# (nginx.sh), so that a change to serve's request path is measured against the build before it
# in the same minutes: ROUNDS rounds of ttft.py (N requests to each, one stream at a time), the
# order of the three targets reversed every other round. Prints one line per round.
#
# Usage: bench/serve/ab.sh OLD_CHIMERAFORGE NEW_CHIMERAFORGE [ROUNDS] [N]   (default 6, 2000)
#   e.g. git worktree or `git checkout OLD -- src/` to build the old binary, copied aside.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
# shellcheck source=nginx.sh
source "$here/nginx.sh"
if [[ $# -lt 2 ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
old=$1
new=$2
rounds=${3:-6}
n=${4:-2000}
for bin in "$old" "$new"; do
  [[ -x $bin ]] || { echo "ab.sh: $bin is not an executable" >&2; exit 2; }
done
bench_setup serve-ab

synth=$(free_port)
"$new" synth-server --port "$synth" --ttft-ms 0 --tokens-per-s 1000 --tokens 4 -q >"$dir/synth.log" 2>&1 &
pids+=($!)
wait_port "$synth"
old_port=$(free_port)
"$old" serve --port "$old_port" --backend openai --endpoint "http://127.0.0.1:$synth" >"$dir/old.log" 2>&1 &
pids+=($!)
new_port=$(free_port)
"$new" serve --port "$new_port" --backend openai --endpoint "http://127.0.0.1:$synth" >"$dir/new.log" 2>&1 &
pids+=($!)
proxy=$(free_port)
start_nginx "$dir" "$proxy" "$synth"
pids+=("$NGINX_PID")
wait_port "$old_port"
wait_port "$new_port"
wait_port "$proxy"

targets=("old=http://127.0.0.1:$old_port" "new=http://127.0.0.1:$new_port" "nginx=http://127.0.0.1:$proxy")
for round in $(seq 1 "$rounds"); do
  if ((round % 2 == 0)); then order=("${targets[2]}" "${targets[1]}" "${targets[0]}"); else order=("${targets[@]}"); fi
  /usr/bin/python3 "$here/ttft.py" "$n" "${order[@]}" | /usr/bin/python3 -c '
import json, sys
o = json.load(sys.stdin)
print("round %s: " % sys.argv[1] + "  ".join("%s p50 %.3f p99 %.3f ms" % (k, o[k]["p50_ms"], o[k]["p99_ms"]) for k in ("old", "new", "nginx")))' "$round"
done
