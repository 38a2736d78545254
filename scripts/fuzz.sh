#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang 16, ASan + UBSan) and runs each one.
#
#   scripts/fuzz.sh --smoke            every target for a few seconds (about 60 s in all; CI)
#   scripts/fuzz.sh --long             every target to 10 million executions or 30 minutes
#   scripts/fuzz.sh --long url sse     only these targets
#   scripts/fuzz.sh --seconds 120 --runs 0 digest    a custom budget (--runs 0: no run limit)
#   --no-build                         run what is built, without building first
#
# Environment: BUILD_DIR (default build/fuzz), JOBS (build jobs, default 2).
# New inputs a run finds go to $BUILD_DIR/fuzz-corpus/<target> (the seed corpus in
# fuzz/corpus/<target> is only read); a crash, leak, timeout or sanitizer report is written to
# $BUILD_DIR/fuzz-findings/. Prints one line per target (executions, coverage, findings);
# with --results FILE (default for --long: bench/results/fuzz.jsonl) also one JSON line each.
# Exit status: 0 when no target found anything, 1 otherwise, 2 for a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=""
seconds=0
runs=0
results=""
build=1
targets=()
while (($#)); do
  case "$1" in
    --smoke) mode=smoke; seconds=3; runs=0 ;;
    --long) mode=long; seconds=1800; runs=10000000 ;;
    --seconds) seconds="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --results) results="$2"; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
if [[ -z "$mode" && "$seconds" == 0 ]]; then
  echo "fuzz.sh: say --smoke, --long or --seconds N (try --help)" >&2
  exit 2
fi
if [[ "$mode" == long && -z "$results" ]]; then results=bench/results/fuzz.jsonl; fi

all_targets=(http_response backend_stream stream_chunk_differential ndjson sse url ingest_csv ingest_json ingest_markdown
             ingest_text markdown_differential digest pool_toml scene_toml workflow_toml engine_toml
             sentence capi_strings serve_request)
if ((${#targets[@]} == 0)); then targets=("${all_targets[@]}"); fi
for t in "${targets[@]}"; do
  if [[ ! -d "fuzz/corpus/$t" ]]; then
    echo "fuzz.sh: no target '$t' (targets: ${all_targets[*]})" >&2
    exit 2
  fi
done

BUILD_DIR=${BUILD_DIR:-build/fuzz}
JOBS=${JOBS:-2}
if ! command -v clang++-16 >/dev/null; then
  echo "fuzz.sh: clang++-16 is missing; run scripts/setup.sh (it installs clang-16 and libclang-rt-16-dev)" >&2
  exit 1
fi
if ((build)); then
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    cmake --preset fuzz -B "$BUILD_DIR" >/dev/null
  fi
  cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]/%/_fuzzer}"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
findings_dir="$BUILD_DIR/fuzz-findings"
mkdir -p "$findings_dir"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
failed=0
printf '%-16s %12s %8s %9s %7s %7s %7s  %s\n' target executions seconds exec/s cov ft corpus findings
for t in "${targets[@]}"; do
  work="$BUILD_DIR/fuzz-corpus/$t"
  mkdir -p "$work"
  log="$BUILD_DIR/fuzz-$t.log"
  timeout_s=10
  [[ "$t" == capi_strings ]] && timeout_s=30
  libfuzzer_runs=$runs
  ((runs == 0)) && libfuzzer_runs=-1  # libFuzzer's "no limit"
  before=$(ls "$findings_dir" | grep -c "^$t-" || true)
  start=$(date +%s.%N)
  set +e
  "$BUILD_DIR/fuzz/${t}_fuzzer" "$work" "fuzz/corpus/$t" \
    -max_total_time="$seconds" -runs="$libfuzzer_runs" -timeout="$timeout_s" -rss_limit_mb=4096 \
    -max_len=8192 -print_final_stats=1 -artifact_prefix="$findings_dir/$t-" >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1 || true)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(grep -oP 'cov: \K[0-9]+' <<<"$last" || echo 0)
  ft=$(grep -oP 'ft: \K[0-9]+' <<<"$last" || echo 0)
  corp=$(grep -oP 'corp: \K[0-9]+' <<<"$last" || echo 0)
  after=$(ls "$findings_dir" | grep -c "^$t-" || true)
  found=$((after - before))
  if ((rc != 0 && found == 0)); then found=1; fi  # a crash the runtime could not write out
  execs=${execs:-0}
  rate=$(awk -v n="$execs" -v s="$elapsed" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
  status="0"
  if ((found > 0)); then
    status="$found (rc $rc; see $log and $findings_dir/$t-*)"
    failed=1
  fi
  printf '%-16s %12s %8.1f %9s %7s %7s %7s  %s\n' "$t" "$execs" "$elapsed" "$rate" "$cov" "$ft" "$corp" "$status"
  if [[ -n "$results" ]]; then
    printf '{"target":"%s","mode":"%s","executions":%s,"seconds":%.1f,"exec_per_s":%s,"cov":%s,"ft":%s,"corpus":%s,"findings":%s,"commit":"%s","date":"%s"}\n' \
      "$t" "${mode:-custom}" "$execs" "$elapsed" "$rate" "$cov" "$ft" "$corp" "$found" "$commit" \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$results"
  fi
done
exit "$failed"
