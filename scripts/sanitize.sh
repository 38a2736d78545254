#!/usr/bin/env bash
# Builds the suites that exercise concurrency and parsing with the sanitizers and runs them
# through ctest (see docs/checks.md):
#
#   scripts/sanitize.sh            both runs, one after the other (CI)
#   scripts/sanitize.sh --asan     AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer)
#                                  on the suites http, ingest, pool, engine (the `dev` preset)
#   scripts/sanitize.sh --tsan     ThreadSanitizer on pool, engine, banter, capi (the `tsan` preset)
#   --no-build                     run what is built, without configuring or building first
#   extra arguments after --       go to ctest (e.g. -- -R '^pool$')
#
# Environment: ASAN_BUILD_DIR (default build/dev), TSAN_BUILD_DIR (default build/tsan),
# JOBS (build jobs, default 2). Only the test binaries those suites run are built.
# llama.cpp (from ~/.cache/chimeraforge) is not instrumented; the suppressions for its frames
# are in scripts/sanitizers/, each with its reason. Prints each step's time.
# Exit status: 0 when every suite passed clean, 1 when a build failed, a test failed or a
# sanitizer reported, 2 for a usage error.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

runs=()
build=1
ctest_args=()
while (($#)); do
  case "$1" in
    --asan) runs+=(asan) ;;
    --tsan) runs+=(tsan) ;;
    --no-build) build=0 ;;
    --) shift; ctest_args=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((${#runs[@]} == 0)); then runs=(asan tsan); fi

JOBS=${JOBS:-2}
SUPP="$ROOT/scripts/sanitizers"
launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

step() { printf '\n== sanitize: %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
seconds_since() { echo $(($(date +%s) - $1)); }

# run_one NAME PRESET BUILD_DIR SUITE...
run_one() {
  local name=$1 preset=$2 dir=$3
  shift 3
  local suites=("$@") targets=() s start
  for s in "${suites[@]}"; do
    case "$s" in
      capi) targets+=(chimera_capi_test) ;;
      *) targets+=("chimera_${s}_tests") ;;
    esac
  done
  if ((build)); then
    start=$(date +%s)
    step "$name: configure and build ${targets[*]} in $dir (-j$JOBS)"
    if [[ ! -f "$dir/build.ninja" ]]; then
      # The Python module is not loaded by these suites (and would need the sanitizer runtime
      # preloaded into the interpreter): leave it out.
      cmake --preset "$preset" -B "$dir" "${launcher[@]}" -DCHIMERA_BUILD_PYTHON=OFF >/dev/null
    fi
    if ! cmake --build "$dir" -j "$JOBS" --target "${targets[@]}"; then
      echo "sanitize.sh: the $name build failed" >&2
      return 1
    fi
    echo "sanitize: $name build took $(seconds_since "$start") s"
  elif [[ ! -f "$dir/CTestTestfile.cmake" ]]; then
    echo "sanitize.sh: nothing built in $dir (run without --no-build)" >&2
    return 1
  fi
  local regex
  regex="^($(IFS='|'; echo "${suites[*]}"))\$"
  start=$(date +%s)
  step "$name: ctest -R '$regex'"
  local rc=0
  ctest --test-dir "$dir" -R "$regex" --output-on-failure --timeout 900 "${ctest_args[@]}" || rc=$?
  echo "sanitize: $name tests took $(seconds_since "$start") s"
  return "$rc"
}

# Sanitizer options, shared by the test binaries and every instrumented program they start
# (the chimeraforge CLI). halt_on_error makes UBSan's findings fail the test instead of only
# printing; TSan reports everything it finds and then exits 66.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:suppressions=$SUPP/ubsan.supp}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$SUPP/lsan.supp:print_suppressions=0}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-second_deadlock_stack=1:history_size=4:suppressions=$SUPP/tsan.supp:print_suppressions=0}"

failed=()
total_start=$(date +%s)
for r in "${runs[@]}"; do
  case "$r" in
    asan) run_one asan dev "${ASAN_BUILD_DIR:-build/dev}" http ingest pool engine || failed+=(asan) ;;
    tsan) run_one tsan tsan "${TSAN_BUILD_DIR:-build/tsan}" pool engine banter capi || failed+=(tsan) ;;
  esac
done
step "done in $(seconds_since "$total_start") s"
if ((${#failed[@]})); then
  echo "sanitize.sh: failed: ${failed[*]} (the sanitizer reports are in the ctest output above)" >&2
  exit 1
fi
echo "sanitize: ${runs[*]} clean"
