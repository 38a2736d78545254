#!/usr/bin/env bash
# A/B: one benchmark, built from an older commit and from this tree, run alternately so that
# both see the same machine. The way to answer "did this change make it slower?" on a shared
# machine, where figures from different hours differ by more than most changes do.
#
#   bash bench/ab/run.sh REF banter [ROUNDS] [-- BENCH ARGS]
#   bash bench/ab/run.sh REF inproc [ROUNDS] [-- BENCH ARGS]
#
# REF is checked out as a git worktree in .ab-REF/ (ignored; reused), its benchmark built there
# (ccache, when installed, makes that quick), this tree's in build/ (scripts/build.sh). Each
# round runs the old binary then the new one (the order alternates between rounds). Every run
# appends to bench/results/ab/<bench>-<REF>.jsonl; its provenance names the commit each record
# was built from, and bench/ab/summary.py prints the two side by side.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $# -lt 2 ]]; then sed -n '2,14p' "$0"; exit 2; fi
ref=$1 bench=$2; shift 2
rounds=4
if [[ $# -gt 0 && $1 != -- ]]; then rounds=$1; shift; fi
[[ ${1:-} == -- ]] && shift
case $bench in
  banter) target=chimera_banter_bench; default_args=(--runs 3 --lines 50) ;;
  inproc) target=chimera_inproc_bench; default_args=(--runs 2) ;;
  *) echo "ab: unknown benchmark '$bench' (banter or inproc)" >&2; exit 2 ;;
esac
args=("$@"); [[ ${#args[@]} -eq 0 ]] && args=("${default_args[@]}")

sha=$(git rev-parse --short "$ref^{commit}")
old=.ab-$sha
if [[ ! -d $old ]]; then git worktree add -q --detach "$old" "$sha"; fi
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
[[ -f $old/build/CMakeCache.txt ]] ||
  cmake -S "$old" -B "$old/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
cmake --build "$old/build" --target "$target" --parallel "$(nproc)"
[[ -f build/CMakeCache.txt ]] || bash scripts/build.sh
cmake --build build --target "$target" --parallel "$(nproc)"

out=bench/results/ab/$bench-$sha.jsonl
mkdir -p bench/results/ab
run() {  # which binary, round
  local dir=$1
  "$dir/bench/${bench}/$target" "${args[@]}" --out "$out" \
    $([[ $bench == banter ]] && echo "--md /dev/null") >/dev/null
  echo "ab: round $2: $dir done ($(date +%T))"
}
for ((i = 1; i <= rounds; i++)); do
  if ((i % 2)); then run "$old/build" "$i"; run build "$i"; else run build "$i"; run "$old/build" "$i"; fi
done
python3 bench/ab/summary.py "$out"
