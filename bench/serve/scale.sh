#!/usr/bin/env bash
# serve under load (docs/serve.md, "Measured"), each line one JSON object from load.py, written
# to bench/results/serve.jsonl (appended) and summed up in bench/results/serve.md:
#   1. 256 and 1,000 concurrent streams through serve against the synthetic server (16 tokens
#      at 1,000 tokens/s, first token at once), beside the same streams sent to it directly (and,
#      at 256, through nginx as a plain proxy: nginx.sh);
#      serve's resident memory idle and at its peak with 256 and with 1,000 streams, and the
#      open-file limit it runs under (each stream holds two sockets in serve).
#   2. serve --model tiny.gguf (in-process) against llama-server on the same file, with the same
#      slots (--parallel/-np 8), context per slot and CPU threads, at 1, 16 and 64 clients
#      (each sends 16, 4 or 2 requests of 16 tokens), alternating, ROUNDS times (default 3):
#      TTFT p50/p99 and aggregate tokens/s.
#
#   3. (PARTS "peers") the same two servers at 1, 16 and 64 clients, driven by the peers
#      (bench/peers: the Python peer on httpx, the Rust peer on reqwest; 2 requests of 16 tokens
#      per agent), figures from their records (docs/records.md): TTFT p50/p99, system tokens/s.
#
# Usage: bench/serve/scale.sh [BUILD_DIR] [THREADS] [PARTS]
#   (default build, 2 model threads, PARTS "streams,models": parts 1 and 2; any comma-separated
#   list of streams, models and peers)
#   SERVE_ARGS="--relay" adds serve flags in part 1 (named in its records: "through serve
#   --relay").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
# shellcheck source=nginx.sh
source "$here/nginx.sh"
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
threads=${2:-2}
parts=${3:-streams,models}
cli=$build/apps/chimeraforge/chimeraforge
llama_server=$(llama_server_of "$build" 2>/dev/null || true)  # parts models and peers need it
out_jsonl=$root/bench/results/serve.jsonl
out_md=$root/bench/results/serve.md
bench_setup scale
ulimit -n 8192 2>/dev/null || true

load_avg() { cut -d' ' -f1-3 /proc/loadavg; }
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
lines=()
record() {  # JSON from load.py, plus when, the commit and the load average
  local line
  line=$(/usr/bin/python3 -c 'import json,sys; o=json.loads(sys.argv[1]); o.update(at=sys.argv[2], commit=sys.argv[3], loadavg=sys.argv[4]); print(json.dumps(o))' "$1" "$stamp" "$commit" "$(load_avg)")
  echo "$line"
  echo "$line" >>"$out_jsonl"
  lines+=("$line")
}
load() { /usr/bin/python3 "$here/load.py" "$@"; }

# --- 1. 256 and 1,000 streams: direct against through serve ------------------------------------
if [[ ,$parts, == *,streams,* ]]; then
through="through serve${SERVE_ARGS:+ $SERVE_ARGS}"
start_synth "$cli" 16 --threads 1
serve=$(free_port)
# shellcheck disable=SC2086 # SERVE_ARGS: words
"$cli" serve --port "$serve" --backend openai --endpoint "http://127.0.0.1:$synth" ${SERVE_ARGS:-} \
  >"$dir/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
wait_http "$serve"
idle=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$serve_pid/status")
record "$(/usr/bin/python3 -c 'import json,sys; print(json.dumps({"name": "serve idle", "rss_kib": int(sys.argv[1])}))' "$idle")"
record "$(load "http://127.0.0.1:$synth" --clients 256 --requests 4 --max-tokens 16 --name "synth direct, 256 streams")"
record "$(load "http://127.0.0.1:$serve" --clients 256 --requests 4 --max-tokens 16 --pid "$serve_pid" --name "synth $through, 256 streams")"
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
# The same 256 streams through nginx as a plain proxy (nginx.sh), serve stopped meanwhile.
proxy=$(free_port)
start_nginx "$dir" "$proxy" "$synth" 1024
pids+=("$NGINX_PID")
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$proxy/" && break; sleep 0.05; done
record "$(load "http://127.0.0.1:$proxy" --clients 256 --requests 4 --max-tokens 16 --pid "$NGINX_PID" --name "synth through nginx, 256 streams")"
kill "$NGINX_PID" "${pids[0]}"
wait "$NGINX_PID" "${pids[0]}" 2>/dev/null || true
pids=()

# 1,000 streams at once: each stream lasts 1.6 s (16 tokens at 10 per second), longer than the
# client takes to open them all, so that they overlap; the synthetic server's own count of
# streams in progress at once (streams_peak of its /stats) says how far they did. About 2,000
# sockets in serve, 1,000 in the synthetic server and in the client.
synth=$(free_port)
"$cli" synth-server --port "$synth" --ttft-ms 0 --tokens-per-s 10 --tokens 16 --threads 1 -q \
  >"$dir/synth.log" 2>&1 &
synth_pid=$!
serve=$(free_port)
# shellcheck disable=SC2086 # SERVE_ARGS: words
"$cli" serve --port "$serve" --backend openai --endpoint "http://127.0.0.1:$synth" ${SERVE_ARGS:-} \
  >"$dir/serve.log" 2>&1 &
serve_pid=$!
pids=("$synth_pid" "$serve_pid")
wait_http "$serve"
nofile=$(sed -n 's/^Max open files[[:space:]]*\([0-9a-z]*\).*/\1/p' "/proc/$serve_pid/limits")
echo "scale.sh: serve may open $nofile files (RLIMIT_NOFILE, soft); 1,000 streams need about 2,100" >&2
with_peak() {  # load.py's JSON plus the synthetic server's streams_peak since the last reset
  /usr/bin/python3 -c 'import json,sys; o=json.loads(sys.argv[1]); o["upstream_streams_peak"]=json.loads(sys.argv[2])["streams_peak"]; print(json.dumps(o))' \
    "$1" "$(curl -s "http://127.0.0.1:$synth/stats")"
}
curl -s -X POST "http://127.0.0.1:$synth/stats/reset" >/dev/null
record "$(with_peak "$(load "http://127.0.0.1:$synth" --clients 1000 --requests 1 --max-tokens 16 --name "synth direct, 1000 streams")")"
curl -s -X POST "http://127.0.0.1:$synth/stats/reset" >/dev/null
record "$(with_peak "$(load "http://127.0.0.1:$serve" --clients 1000 --requests 1 --max-tokens 16 --pid "$serve_pid" --name "synth $through, 1000 streams")")"
echo "scale.sh: serve's open-file limit was $nofile" >&2
kill "$serve_pid" "$synth_pid"
wait "$serve_pid" "$synth_pid" 2>/dev/null || true
pids=()
fi

# --- 2. in-process serve against llama-server -------------------------------------------------
if [[ ,$parts, == *,models,* ]]; then
model=$dir/tiny.gguf
"$cli" model synth --preset tiny --seed 42 --out "$model" --quiet >/dev/null
ctx=512
# Each pair alternates, fresh processes each round (ROUNDS, default 3). A client sends its
# requests one after another: 16 for a lone client, so that its p50 is not its cold first
# request, 4 at 16 clients, 2 at 64. Both servers warm up at load, as by default (llama-server
# decodes one token before it listens, serve --model likewise).
for round in $(seq 1 "${ROUNDS:-3}"); do
for clients in 1 16 64; do
  case $clients in 1) requests=16 ;; 16) requests=4 ;; *) requests=2 ;; esac
  port=$(free_port)
  "$llama_server" -m "$model" --host 127.0.0.1 --port "$port" -c $((ctx * 8)) -np 8 -t "$threads" \
    --no-webui --cache-ram 0 >"$dir/llama-server.log" 2>&1 &
  lp=$!
  pids+=($lp)
  wait_http "$port"
  record "$(load "http://127.0.0.1:$port" --clients "$clients" --requests "$requests" --max-tokens 16 --pid "$lp" --name "llama-server, $clients clients, round $round")"
  kill "$lp"
  wait "$lp" 2>/dev/null || true

  port=$(free_port)
  "$cli" serve --port "$port" --model "$model" --parallel 8 --ctx-per-seq "$ctx" \
    --model-threads "$threads" >"$dir/serve-inproc.log" 2>&1 &
  sp=$!
  pids+=($sp)
  wait_http "$port"
  record "$(load "http://127.0.0.1:$port" --clients "$clients" --requests "$requests" --max-tokens 16 --pid "$sp" --name "serve in-process, $clients clients, round $round")"
  kill "$sp"
  wait "$sp" 2>/dev/null || true
  pids=()
done
done
fi

# --- 3. the peers as load clients ----------------------------------------------------------------
if [[ ,$parts, == *,peers,* ]]; then
model=$dir/tiny.gguf
[[ -f $model ]] || "$cli" model synth --preset tiny --seed 42 --out "$model" --quiet >/dev/null
ctx=512
peer_py=$root/bench/peers/python/peer.py
peer_rs=$root/bench/peers/rust/target/release/rust-peer
summary() {  # records file, name: one JSON line of figures from the peer's records
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
recs = [r for r in recs if "t_send_ns" in r]
ok = [r for r in recs if r.get("ok") and r.get("t_first_token_ns")]
ttft = sorted((r["t_first_token_ns"] - r["t_send_ns"]) / 1e6 for r in ok)
pct = lambda p: round(ttft[min(len(ttft) - 1, int(round(p / 100 * (len(ttft) - 1))))], 3) if ttft else None
span = (max(r["t_last_token_ns"] for r in ok) - min(r["t_send_ns"] for r in ok)) / 1e9 if ok else 0
tokens = sum(r.get("tokens_out") or 0 for r in ok)
print(json.dumps({"name": sys.argv[2], "requests": len(recs), "errors": len(recs) - len(ok),
                  "ttft_p50_ms": pct(50), "ttft_p99_ms": pct(99),
                  "tokens_per_s": round(tokens / span, 1) if span else None}))
PY
}
for clients in 1 16 64; do
  for server in llama-server serve; do
    port=$(free_port)
    if [[ $server == llama-server ]]; then
      "$llama_server" -m "$model" --host 127.0.0.1 --port "$port" -c $((ctx * 8)) -np 8 \
        -t "$threads" --no-webui --cache-ram 0 >"$dir/$server.log" 2>&1 &
    else
      "$cli" serve --port "$port" --model "$model" --parallel 8 --ctx-per-seq "$ctx" \
        --model-threads "$threads" >"$dir/$server.log" 2>&1 &
    fi
    sp=$!
    pids+=($sp)
    wait_http "$port"
    for peer in python rust; do
      recs=$dir/$server-$peer-$clients.jsonl
      if [[ $peer == python ]]; then
        /usr/bin/python3 "$peer_py" --endpoint "http://127.0.0.1:$port" --backend openai \
          --agents "$clients" --requests-per-agent 2 --max-tokens 16 --records "$recs" >/dev/null
      else
        "$peer_rs" --endpoint "http://127.0.0.1:$port" --backend openai --agents "$clients" \
          --requests-per-agent 2 --max-tokens 16 --records "$recs" >/dev/null
      fi
      record "$(summary "$recs" "$server, $clients clients, $peer peer")"
    done
    kill "$sp"
    wait "$sp" 2>/dev/null || true
    pids=()
  done
done
fi

# --- the table -----------------------------------------------------------------------------------
{
  echo "# serve under load"
  echo
  echo "\`bench/serve/scale.sh ${1:-build} $threads $parts\`, $stamp, commit $commit, on $(nproc) cores"
  echo "(load average at each line in serve.jsonl; the machine is shared)."
  echo
  echo "| run | requests | errors | streams at once (upstream) | TTFT p50 ms | TTFT p99 ms | tokens/s | RSS peak MiB | load avg |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for l in "${lines[@]}"; do
    /usr/bin/python3 -c '
import json, sys
o = json.loads(sys.argv[1])
g = lambda k: o.get(k, "")
rss = o.get("rss_peak_kib") or o.get("rss_kib")
print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (g("name"), g("requests"), g("errors"),
      g("upstream_streams_peak"), g("ttft_p50_ms"), g("ttft_p99_ms"), g("tokens_per_s"),
      "%.1f" % (rss / 1024) if rss else "", g("loadavg")))' "$l"
  done
} >"$out_md"
echo "scale.sh: wrote $out_md and appended to $out_jsonl" >&2
