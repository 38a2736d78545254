#!/usr/bin/env bash
# Banter and many agents on one GPU, in one run within a time limit (docs/gpu.md):
#
#   1. unpacks the binaries bench/gpu/pack.sh made (a CUDA build) and finds CUDA's libraries;
#   2. records the GPU (nvidia-smi: name, memory, driver, the driver's CUDA version);
#   3. synthesizes the llama-1b and llama-3b models there (f16, random weights; 2.5 and 6.4 GB:
#      too big to carry);
#   4. chimera_banter_bench on each model, 4 characters, 50 lines, 24-token lines: in-process with
#      sessions, warm-up and catch-up; one llama-server -np 4 with its defaults; the same with
#      `--cache-ram 0`; two llama-servers; and one character alone, in-process and on a
#      llama-server;
#   5. chimera_inproc_bench --parts aggregate on llama-1b: in-process continuous batching against
#      llama-server -np N at 1, 16 and 64 agents (aggregate tokens/s, TTFT p50/p99);
#   6. writes every record, tagged with the GPU, the driver, the CUDA versions and the pack's
#      build, to gpu-banter.jsonl and gpu-agents.jsonl, the tables to gpu-banter-<model>.md,
#      and what ran when to gpu-run.log.
#
# Each step gets a timeout from what is left of --limit-s; a step that cannot start in time is
# skipped and the log says so, so the run always ends inside its limit with what it measured.
#
#   bench/gpu/run.sh --pack FILE [--limit-s S] [--out DIR]
#   bench/gpu/run.sh --pack FILE --dry-run      the same steps on the CPU with the tiny model,
#                                               short scenes, results named cpu-dry-run-*
#
# --out: where results go (default: $OUT when set, as on the device machine, else bench/results;
# out/gpu-dry-run with --dry-run). --limit-s: the whole run's limit in seconds (default 300).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

PACK=""
LIMIT=300
OUT_DIR=""
DRY=0
while (($#)); do
  case $1 in
    --pack) PACK=$2; shift 2 ;;
    --limit-s) LIMIT=$2; shift 2 ;;
    --out) OUT_DIR=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-run: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -f $PACK ]] || { echo "gpu-run: --pack FILE (made by bench/gpu/pack.sh) is needed" >&2; exit 2; }
PACK="$(cd "$(dirname "$PACK")" && pwd)/$(basename "$PACK")"

if ((DRY)); then
  PREFIX=cpu-dry-run-
  OUT_DIR=${OUT_DIR:-$ROOT/out/gpu-dry-run}
  MODELS=(tiny)
  NGL=0 THREADS=2 LINES=12 RUNS=1 AGENT_RUNS=1 AGENT_TOKENS=16
else
  PREFIX=gpu-
  OUT_DIR=${OUT_DIR:-${OUT:-$ROOT/bench/results}}
  MODELS=(llama-1b llama-3b)
  NGL=999 THREADS=8 LINES=50 RUNS=1 AGENT_RUNS=2 AGENT_TOKENS=64
fi
BANTER_CONFIGS=inproc,one-server,one-server-cache-ram-0,two-servers,alone-inproc,alone-server
AGENTS=1,16,64
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
LOG="$OUT_DIR/${PREFIX}run.log"
: >"$LOG"

START=$SECONDS
DEADLINE=$((START + LIMIT))
left() {  # seconds left, at least 1 (timeout 0 would mean no limit)
  local l=$((DEADLINE - SECONDS))
  echo $((l > 0 ? l : 1))
}
log() { printf '[%4ds] %s\n' $((SECONDS - START)) "$*" | tee -a "$LOG"; }
die() { log "FAILED: $*"; exit 1; }

WORK=$(mktemp -d -t chimera-gpu-run.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
export HOME="$WORK/home" XDG_CACHE_HOME="$WORK/home/.cache" TMPDIR="$WORK/tmp"
mkdir -p "$HOME" "$TMPDIR" "$WORK/raw" "$WORK/models"

# --- 1. the binaries ------------------------------------------------------------------------
# The lib/ folders of NVIDIA's Python wheels (nvidia-cublas, ...), where a machine has them.
wheel_lib_dirs() {
  python3 -c 'import glob, site
print(" ".join(g for p in site.getsitepackages() for g in sorted(glob.glob(p + "/nvidia/*/lib"))))' \
    2>/dev/null || true
}

unpack() {
  mkdir -p "$WORK/pack"
  xz -dc "$PACK" | tar -C "$WORK/pack" -xf -
  export CHIMERA_PREFIX="$WORK/pack"
  local path="$WORK/pack/lib/deps:$WORK/pack/lib/chimeraforge"
  # CUDA's libraries, which the pack leaves out: the toolkit's folders, then the Python wheels'.
  local needed dirs=() lib d
  needed=$(sed -n 's/^cuda_libraries_needed=//p' "$WORK/pack/MANIFEST")
  for lib in $needed; do
    [[ $lib == libcuda.so* ]] && continue  # the driver's, on the loader's path
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
      $(wheel_lib_dirs) /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
      if [[ -e $d/$lib ]]; then
        [[ " ${dirs[*]} " == *" $d "* ]] || dirs+=("$d")
        break
      fi
    done
  done
  # The driver's libcuda is usually on the loader's path; some images keep it here instead.
  [[ -n $needed && -d /usr/local/nvidia/lib64 ]] && dirs+=(/usr/local/nvidia/lib64)
  for d in "${dirs[@]}"; do path+=":$d"; done
  export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local missing
  missing=$(for f in "$WORK"/pack/bin/* "$WORK/pack/lib/chimeraforge/llama-server"; do
    ldd "$f" | awk -v f="$(basename "$f")" '/not found/ {print f ": " $1}'; done)
  [[ -z $missing ]] || die "libraries not found: $missing"
  BIN="$WORK/pack/bin"
  log "unpacked $(basename "$PACK") ($(sed -n 's/^commit=//p' "$WORK/pack/MANIFEST" | cut -c1-12)," \
    "cuda=$(sed -n 's/^cuda=//p' "$WORK/pack/MANIFEST")); CUDA libraries from: ${dirs[*]:-none}"
}

# --- 2. the machine -------------------------------------------------------------------------
environment() {
  local smi="" cuda_driver=""
  if command -v nvidia-smi >/dev/null; then
    smi=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true)
    cuda_driver=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
  fi
  local nvcc=""
  command -v nvcc >/dev/null && nvcc=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  SMI="$smi" CUDA_DRIVER="$cuda_driver" NVCC="$nvcc" DRY="$DRY" python3 - "$WORK/pack/MANIFEST" \
    >"$OUT_DIR/${PREFIX}environment.json" <<'EOP'
import json, os, platform, sys
manifest = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
gpus = [dict(zip(("name", "memory_total", "driver_version"), [f.strip() for f in line.split(",")]))
        for line in os.environ["SMI"].splitlines() if line.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
print(json.dumps({
    "gpus": gpus,
    "cuda_version_driver": os.environ["CUDA_DRIVER"] or None,
    "cuda_version_toolkit_here": os.environ["NVCC"] or None,
    "cuda_version_built_with": manifest.get("nvcc"),
    "cuda_architectures_built": manifest.get("cuda_architectures"),
    "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
    "build_commit": manifest.get("commit"), "build_dirty": manifest.get("dirty") == "true",
    "build_dir": manifest.get("build_dir"), "llama_server_built": manifest.get("llama_server"),
    "dry_run_on_cpu": os.environ["DRY"] == "1",
}))
EOP
  log "machine: ${smi:-no GPU}; driver CUDA ${cuda_driver:-none}; $(nproc) cores"
  if ((!DRY)) && [[ -z $smi ]]; then die "no GPU (nvidia-smi found none); use --dry-run on a CPU"; fi
}

# --- 3. the models --------------------------------------------------------------------------
synthesize() {
  local pids=() m
  for m in "${MODELS[@]}"; do
    timeout "$(left)" "$BIN/chimeraforge" model synth --preset "$m" --out "$WORK/models/$m.gguf" \
      --quiet >"$WORK/synth-$m.log" 2>&1 &
    pids+=($!)
  done
  local i=0
  for m in "${MODELS[@]}"; do
    wait "${pids[$i]}" || { cat "$WORK/synth-$m.log" >>"$LOG"; die "model synth --preset $m"; }
    i=$((i + 1))
  done
  log "models: $(cd "$WORK/models" && du -h ./*.gguf | awk '{printf "%s %s  ", $2, $1}')"
}

# --- 4, 5. the benchmarks -------------------------------------------------------------------
# step NAME MIN_SECONDS COMMAND...: runs it with a timeout of what is left (less 15 s for the
# records), or skips it when less than MIN_SECONDS would be left.
step() {
  local name=$1 min=$2 budget t0 rc=0
  shift 2
  budget=$(($(left) - 15))
  if ((budget < min)); then
    log "$name: SKIPPED (${budget} s left, it needs about ${min} s)"
    return 0
  fi
  t0=$SECONDS
  log "$name: started (timeout ${budget} s)"
  timeout --kill-after=5 "$budget" "$@" >"$WORK/$name.out" 2>&1 || rc=$?
  grep -E '^run |agents|ttft|^ +[0-9]+ ' "$WORK/$name.out" | tail -40 >>"$LOG" || true
  if ((rc != 0)); then
    tail -30 "$WORK/$name.out" >>"$LOG"
    log "$name: FAILED (exit $rc after $((SECONDS - t0)) s)"
  else
    log "$name: done in $((SECONDS - t0)) s"
  fi
}

banter() {  # model
  local m=$1
  step "banter-$m" 40 "$BIN/chimera_banter_bench" --model "$WORK/models/$m.gguf" \
    --gpu-layers "$NGL" --threads "$THREADS" --runs "$RUNS" --lines "$LINES" --num-predict 24 \
    --configs "$BANTER_CONFIGS" --out "$WORK/raw/banter-$m.jsonl" \
    --md "$OUT_DIR/${PREFIX}banter-$m.md"
}

agents() {  # model
  local m=$1
  step "agents-$m" 30 "$BIN/chimera_inproc_bench" --model "$WORK/models/$m.gguf" \
    --gpu-layers "$NGL" --threads "$THREADS" --parts aggregate --agents "$AGENTS" \
    --runs "$AGENT_RUNS" --tokens "$AGENT_TOKENS" --out "$WORK/raw/agents-$m.jsonl"
}

# --- 6. the records -------------------------------------------------------------------------
# Appends each raw record to gpu-<kind>.jsonl with the machine and the model preset beside it.
tag_records() {
  python3 - "$WORK/raw" "$OUT_DIR" "$PREFIX" "$OUT_DIR/${PREFIX}environment.json" <<'EOP'
import glob, json, os, sys
raw, out, prefix, env_file = sys.argv[1:]
env = json.load(open(env_file))
for kind in ("banter", "agents"):
    lines = []
    for path in sorted(glob.glob(os.path.join(raw, kind + "-*.jsonl"))):
        preset = os.path.basename(path)[len(kind) + 1:-len(".jsonl")]
        for line in open(path):
            rec = json.loads(line)
            rec["gpu_run"] = {"model_preset": preset, "script": "bench/gpu/run.sh", **env}
            lines.append(json.dumps(rec))
    if lines:
        with open(os.path.join(out, f"{prefix}{kind}.jsonl"), "a") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{len(lines)} {kind} records -> {prefix}{kind}.jsonl")
EOP
}

log "limit ${LIMIT} s; results to $OUT_DIR (${PREFIX}*)"
unpack
environment
synthesize
first=${MODELS[0]}
banter "$first"
if ((${#MODELS[@]} > 1)); then banter "${MODELS[1]}"; fi
agents "$first"
tag_records | while read -r line; do log "$line"; done
log "finished in $((SECONDS - START)) s"
