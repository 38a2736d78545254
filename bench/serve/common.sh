# shellcheck shell=bash
# Sourced by the serve benchmarks (run.sh, scale.sh, ab.sh, ...): a work folder and the
# background processes started into it, both cleaned up on exit, and helpers for ports.
#
#   need_executables BIN...  exits 2, naming the script and the file, unless each BIN is an
#                      executable (the binaries a script was given to compare)
#   bench_setup NAME   sets dir (a fresh folder /tmp/chimera-bench-NAME.XXXXXX) and pids (append
#                      each background process's PID); on exit each is killed and dir removed
#   free_port          prints a port nothing listens on
#   wait_port PORT     returns once 127.0.0.1:PORT accepts a connection (10 s at most)
#   wait_http PORT     returns once GET 127.0.0.1:PORT/health answers 200 (llama-server: once its
#                      model is loaded; 60 s at most)
#   llama_server_of BUILD  prints the llama-server BUILD was configured with (CHIMERA_LLAMA_SERVER
#                      in its CMakeCache.txt); fails, saying so, when there is none
#   start_synth CHIMERAFORGE TOKENS [ARGS...]  starts the synthetic server on a free port (first
#                      token at once, 1,000 tokens/s, TOKENS tokens a stream, ARGS added; its log
#                      dir/synth.log), sets synth to its port, appends its PID to pids and returns
#                      once it listens
need_executables() {
  local bin
  for bin in "$@"; do
    [[ -x $bin ]] || { echo "$(basename "$0"): $bin is not an executable" >&2; exit 2; }
  done
}

bench_setup() {
  dir=$(mktemp -d "/tmp/chimera-bench-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
  for _ in $(seq 1 200); do
    if /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "$(basename "$0"): nothing listens on port $1 (see $dir)" >&2
  return 1
}

wait_http() {
  for _ in $(seq 1 600); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health" || true) == 200 ]]; then return 0; fi
    sleep 0.1
  done
  echo "$(basename "$0"): nothing healthy on port $1 (see $dir)" >&2
  return 1
}

llama_server_of() {
  local server
  server=$(sed -n 's/^CHIMERA_LLAMA_SERVER:FILEPATH=//p' "$1/CMakeCache.txt" 2>/dev/null)
  if [[ ! -x $server ]]; then
    echo "$(basename "$0"): no llama-server in $1 (CHIMERA_LLAMA_SERVER)" >&2
    return 1
  fi
  echo "$server"
}

start_synth() {
  local bin=$1 tokens=$2
  shift 2
  synth=$(free_port)
  "$bin" synth-server --port "$synth" --ttft-ms 0 --tokens-per-s 1000 --tokens "$tokens" -q "$@" \
    >"$dir/synth.log" 2>&1 &
  pids+=($!)
  wait_port "$synth"
}
