#!/usr/bin/env bash
# The side-by-side comparison from a fresh clone: builds chimeraforge (scripts/build.sh), sets
# up the peers (scripts/setup-peers.sh: Debian packages and the Rust peer), installs matplotlib
# for the plots when it is missing, then runs bench/compare/compare.py with these arguments.
#
#   bash bench/compare/run.sh            # the full comparison (5 repetitions, N up to 1,000)
#   bash bench/compare/run.sh --quick    # a smoke run
#
# Results: bench/results/compare.{jsonl,md} and bench/results/plots/ (--quick: compare-quick.*
# and plots/compare-quick/).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/build.sh
bash scripts/setup-peers.sh

# Debian's python3-matplotlib for the plots. python3-munkres satisfies python3-fonttools'
# "python3-scipy | python3-munkres" dependency: apt's first choice, scipy, pulls in
# libboost1.74-dev through pythran, which conflicts with the libboost1.81-dev the build uses.
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "run.sh: installing python3-matplotlib for the plots"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q --no-install-recommends python3-matplotlib python3-munkres; then
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends python3-matplotlib python3-munkres ||
      echo "run.sh: could not install matplotlib; the comparison runs without plots" >&2
  fi
fi

exec /usr/bin/python3 bench/compare/compare.py "$@"
