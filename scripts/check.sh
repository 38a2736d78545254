#!/usr/bin/env bash
# Static checks (see docs/checks.md):
#   1. format    clang-format --dry-run --Werror (.clang-format) over the C and C++ files in
#                src/ include/ apps/ python/src/ tests/ fuzz/ bench/
#   2. tidy      clang-tidy (.clang-tidy) over src/ and apps/, on the compile database of the
#                release build (BUILD_DIR/compile_commands.json; configured here if missing)
#   3. includes  python3 scripts/check-includes.py (no include points up the layers)
#
#   scripts/check.sh                 all three (CI)
#   scripts/check.sh --format-only   only clang-format; lists the files it would change
#   scripts/check.sh --fix           apply clang-format in place (then review and commit)
#
# Environment: BUILD_DIR (default build), JOBS (clang-tidy processes, default 2).
# Tools: Debian 12's clang-format and clang-tidy (14); run-clang-tidy when present.
# Exit status: 0 when every check passed, 1 when one failed, 2 for a usage error.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

mode=all
while (($#)); do
  case "$1" in
    --format-only) mode=format ;;
    --fix) mode=fix ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "check.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}
step() { printf '\n== check: %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "check.sh: $1 is missing; install Debian's $2 (apt-get install $2)" >&2
    exit 1
  fi
}

# Tracked and new (not ignored) files, so that a file not yet committed is checked too.
mapfile -t sources < <(git ls-files --cached --others --exclude-standard -- \
  src include apps python/src tests fuzz bench | grep -E '\.(c|cc|cpp|h|hpp)$' |
  while read -r f; do [[ -f "$f" ]] && echo "$f"; done)

failed=()

check_format() {
  need clang-format clang-format
  step "format: clang-format $(clang-format --version | grep -oP '[0-9]+\.[0-9.]+' | head -1) on ${#sources[@]} files"
  local unformatted=() f
  for f in "${sources[@]}"; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then unformatted+=("$f"); fi
  done
  if ((${#unformatted[@]})); then
    printf '  %s\n' "${unformatted[@]}"
    echo "check: ${#unformatted[@]} of ${#sources[@]} files are not formatted" \
         "(see one with: clang-format --dry-run FILE; fix all with: scripts/check.sh --fix)"
    return 1
  fi
  echo "check: all ${#sources[@]} files formatted"
}

fix_format() {
  need clang-format clang-format
  step "fix: clang-format -i on ${#sources[@]} files"
  clang-format -i "${sources[@]}"
  git diff --stat -- "${sources[@]}" | tail -1
}

check_tidy() {
  need clang-tidy clang-tidy
  local start db="$BUILD_DIR/compile_commands.json"
  start=$(date +%s)
  if [[ ! -f "$db" ]]; then
    step "tidy: configuring $BUILD_DIR for its compile database"
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  # The version header is generated at configure time; every other input is in the tree.
  local files
  mapfile -t files < <(python3 - "$db" "$ROOT" <<'EOF'
import json, sys
db, root = sys.argv[1], sys.argv[2]
seen = set()
for entry in json.load(open(db)):
    f = entry["file"]
    if f.startswith((root + "/src/", root + "/apps/")) and f not in seen:
        seen.add(f)
        print(f)
EOF
)
  step "tidy: clang-tidy $(clang-tidy --version | grep -oP 'version \K[0-9.]+' | head -1) on ${#files[@]} files in src/ and apps/ ($JOBS at a time)"
  local log rc=0
  log=$(mktemp)
  # Findings in this tree's headers only: .clang-tidy's HeaderFilterRegex also matches a
  # third-party prefix such as llama.cpp's .../install/include/llama-common/.
  local headers="^$ROOT/(include|src|apps)/"
  if command -v run-clang-tidy >/dev/null 2>&1; then
    run-clang-tidy -p "$BUILD_DIR" -j "$JOBS" -quiet -header-filter "$headers" "${files[@]}" \
      >"$log" 2>&1 || rc=$?
  else
    printf '%s\0' "${files[@]}" |
      xargs -0 -n 1 -P "$JOBS" clang-tidy -p "$BUILD_DIR" --quiet --header-filter "$headers" \
        >"$log" 2>&1 || rc=$?
  fi
  # run-clang-tidy 14 always asks for colours: take them out of the log.
  sed -i 's/\x1b\[[0-9;]*m//g' "$log"
  # Each header's findings are printed once per file that includes it: count them once.
  local findings
  findings=$(grep -E '^/.*:[0-9]+:[0-9]+: (warning|error):' "$log" | sort -u || true)
  if [[ -n "$findings" || $rc != 0 ]]; then
    if [[ -n "$findings" ]]; then
      # Each finding with the source line and caret clang-tidy printed under it.
      grep -E -A2 '^/.*:[0-9]+:[0-9]+: (warning|error):' "$log" | grep -v '^--$' | head -400
    else
      tail -50 "$log"
    fi
    echo "check: clang-tidy found $(grep -c . <<<"$findings") problems (exit $rc) in $(($(date +%s) - start)) s"
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  echo "check: clang-tidy clean in $(($(date +%s) - start)) s"
}

check_includes() {
  if [[ ! -f scripts/check-includes.py ]]; then
    echo "check: scripts/check-includes.py is missing; skipped"
    return 0
  fi
  step "includes: scripts/check-includes.py"
  python3 scripts/check-includes.py
}

total_start=$(date +%s)
case "$mode" in
  fix) fix_format; exit 0 ;;
  format) check_format || failed+=(format) ;;
  all)
    check_format || failed+=(format)
    check_tidy || failed+=(tidy)
    check_includes || failed+=(includes)
    ;;
esac
step "done in $(($(date +%s) - total_start)) s"
if ((${#failed[@]})); then
  echo "check.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "check: all clean"
