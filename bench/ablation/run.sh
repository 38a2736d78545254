#!/usr/bin/env bash
# The runtime ablation, both sides (the study's TR115), from a fresh clone: builds chimeraforge
# (scripts/build.sh), sets up the peers (scripts/setup-peers.sh: Debian's crates and the Rust
# peer with every runtime), then runs bench/ablation/ablation.py with these arguments.
#
#   bash bench/ablation/run.sh                          # 3 repetitions, 16 agents: ~1.5 minutes
#   bash bench/ablation/run.sh --study                  # 5 repetitions of 5 requests: ~4 minutes
#   bash bench/ablation/run.sh --runs 2 --agents 4 --out /tmp/ablation
#   bash bench/ablation/run.sh --synth-url http://127.0.0.1:PORT   # a running synth-server
#
# Results: DIR/ablation.json and DIR/ablation.md (default DIR: bench/results); docs/ablation.md
# explains them.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/build.sh
bash scripts/setup-peers.sh
exec /usr/bin/python3 bench/ablation/ablation.py "$@"
