#!/usr/bin/env bash
# Installs what is missing and builds Chimeraforge (Release) into build/.
# The first build also builds llama.cpp (about 9 minutes on 2 cores) into ~/.cache/chimeraforge;
# later builds, in this tree or a fresh clone, reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
generator=()
if [[ ! -f build/CMakeCache.txt ]] && command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$(nproc)"
