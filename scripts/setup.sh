#!/usr/bin/env bash
# Installs the Debian 12 packages Chimeraforge builds and tests with.
# Safe to run twice: it installs only what is missing and never upgrades.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git xz-utils ca-certificates ccache lld
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libboost-system1.81-dev
  libcli11-dev libfmt-dev libtomlplusplus-dev
  libcmark-gfm-dev libcmark-gfm-extensions-dev liburing-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-dev python3-pybind11 pybind11-dev python3-pytest
  curl procps
  clang-16 libclang-rt-16-dev llvm-16 libomp-16-dev
  libssl-dev nginx tinyproxy prometheus-cpp-dev
  valgrind python3-venv python3-setuptools python3-pip python3-wheel python3-wheel-whl dpkg-dev file
)

missing=()
# npm fetches llama.cpp's pinned source; the machine's own Node.js may already bring it.
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
