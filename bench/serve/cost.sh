#!/usr/bin/env bash
# What serve costs per streamed token under load, beside nginx: for each serve build given and
# for nginx (nginx.sh), each in front of the same synthetic server (16 tokens at 1,000 tokens/s,
# first token at once), `perf stat` of the proxy's process while load.py runs C clients x 4
# streamed requests through it: CPU time (task-clock) and system calls (sends, writes, reads,
# the reads that found nothing, epoll calls) per token, and load.py's tokens/s. ROUNDS rounds,
# the targets in turn (reversed every other round). Prints one JSON object per target and round.
#
# Usage: bench/serve/cost.sh CHIMERAFORGE... [-- ROUNDS [CLIENTS]]   (default 3 rounds, 256)
#   e.g. bench/serve/cost.sh /tmp/old/chimeraforge build/apps/chimeraforge/chimeraforge
# Needs perf with access to the syscalls tracepoints (perf_event_paranoid <= 1, or root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
# shellcheck source=nginx.sh
source "$here/nginx.sh"
bins=()
while [[ $# -gt 0 && $1 != -- ]]; do bins+=("$1"); shift; done
[[ ${1:-} == -- ]] && shift
rounds=${1:-3}
clients=${2:-256}
if [[ ${#bins[@]} -eq 0 ]]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
need_executables "${bins[@]}"
command -v perf >/dev/null || { echo "cost.sh: perf is not installed (linux-perf)" >&2; exit 2; }
bench_setup serve-cost

start_synth "${bins[0]}" 16

names=() ports=() procs=()
i=0
for bin in "${bins[@]}"; do
  port=$(free_port)
  "$bin" serve --port "$port" --backend openai --endpoint "http://127.0.0.1:$synth" \
    >"$dir/serve$i.log" 2>&1 &
  pids+=($!)
  names+=("serve$i") ports+=("$port") procs+=($!)
  wait_port "$port"
  i=$((i + 1))
done
proxy=$(free_port)
start_nginx "$dir" "$proxy" "$synth" $((clients * 2 + 64))
pids+=("$NGINX_PID")
names+=(nginx) ports+=("$proxy") procs+=("$NGINX_PID")
wait_port "$proxy"

events="-e task-clock -e syscalls:sys_enter_sendto -e syscalls:sys_enter_writev"
events+=" -e syscalls:sys_enter_write -e syscalls:sys_enter_recvfrom"
events+=" -e syscalls:sys_exit_recvfrom --filter ret<0 -e syscalls:sys_enter_epoll_wait"
events+=" -e syscalls:sys_enter_epoll_ctl"
# Warm each target once (connections to the upstream, the first request's costs).
for k in "${!names[@]}"; do
  /usr/bin/python3 "$here/load.py" "http://127.0.0.1:${ports[$k]}" --clients "$clients" \
    --requests 1 --max-tokens 16 >/dev/null
done
for r in $(seq 1 "$rounds"); do
  order=("${!names[@]}")
  if ((r % 2 == 0)); then
    mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
  fi
  for k in "${order[@]}"; do
    # shellcheck disable=SC2086
    perf stat -x, $events -p "${procs[$k]}" -o "$dir/perf.csv" &
    stat=$!
    sleep 0.3
    load=$(/usr/bin/python3 "$here/load.py" "http://127.0.0.1:${ports[$k]}" --clients "$clients" \
      --requests 4 --max-tokens 16 --name "${names[$k]}")
    kill -INT "$stat"
    wait "$stat" || true
    /usr/bin/python3 - "$dir/perf.csv" "$r" "${names[$k]}" "$load" "${bins[$k]:-nginx}" <<'PY'
import json, sys
path, rnd, name, load, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
counts = {}
for line in open(path):
    f = line.strip().split(",")
    if len(f) < 3 or line.startswith("#"):
        continue
    try:
        counts[f[2].split(":")[-1]] = float(f[0])
    except ValueError:
        pass
tokens = load["requests"] * load["max_tokens"]
per = lambda k: round(counts.get(k, 0) / tokens, 3)
print(json.dumps({
    "round": rnd, "target": name, "binary": binary, "clients": load["clients"], "tokens": tokens,
    "errors": load["errors"], "tokens_per_s": load["tokens_per_s"],
    "cpu_us_per_token": round(counts.get("task-clock", 0) * 1000 / tokens, 2),
    "writes_per_token": round(per("sys_enter_sendto") + per("sys_enter_writev") + per("sys_enter_write"), 3),
    "reads_per_token": per("sys_enter_recvfrom"), "empty_reads_per_token": per("sys_exit_recvfrom"),
    "epoll_wait_per_token": per("sys_enter_epoll_wait"), "epoll_ctl_per_token": per("sys_enter_epoll_ctl")}))
PY
  done
done
