#!/usr/bin/env bash
# Installs the Debian 12 packages the benchmark peers need (bench/peers/) and builds the Rust
# peer. Safe to run twice: it installs only what is missing, never upgrades, and rebuilds the
# Rust peer only when its sources are newer than the binary.
#
#   scripts/setup-peers.sh            # packages + Rust peer (every --runtime of the ablation)
#   scripts/setup-peers.sh --check    # say what is missing or stale; change nothing (exit 1 if any)
#
# CHIMERA_CARGO_TARGET_DIR=DIR puts cargo's build products in DIR instead of the peer's target/
# (CI keeps them in ~/.cache/chimeraforge, so a fresh clone recompiles only the peer itself); the
# two binaries are copied to target/release either way.
#
# The Rust peer builds offline from the crates Debian installs under /usr/share/cargo/registry
# (bench/peers/rust/.cargo/config.toml), with Debian's own cargo and rustc: those crates are
# the versions Debian tested with that toolchain. A newer cargo/rustc elsewhere on PATH (rustup)
# is deliberately not used.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEER="$ROOT/bench/peers/rust"
BIN="$PEER/target/release/rust-peer"
# The same peer with reqwest's native-tls (cargo feature `tls`), for https (bench/compare --tls);
# the plain one loads no TLS library or CA bundle, which a local http agent would not pay for.
TLS_BIN="$PEER/target/release/rust-peer-tls"
CARGO=/usr/bin/cargo
RUSTC=/usr/bin/rustc

PACKAGES=(
  python3 python3-httpx
  cargo rustc
  librust-tokio-dev librust-reqwest-dev librust-serde-dev librust-serde-derive-dev
  librust-serde-json-dev librust-futures-dev librust-libc-dev librust-bytes-dev
  # reqwest's native-tls feature (https in the TLS rows): native-tls and hyper-tls on
  # openssl-sys, which links the system's OpenSSL found through pkg-config.
  librust-native-tls-dev librust-hyper-tls-dev libssl-dev pkg-config
  # The runtime ablation (bench/ablation, --runtime): smol and async-std (its tokio1 bridge for
  # reqwest), async-io's timers, and hyper's client connection on their sockets.
  librust-smol-dev librust-async-std-dev librust-async-io-dev librust-hyper-dev
)

check_only=0
if [[ ${1:-} == --check ]]; then check_only=1; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Stale: no binary, or any source, manifest, lock file or cargo config newer than it.
stale=0
for b in "$BIN" "$TLS_BIN"; do
  if [[ ! -x $b ]]; then
    stale=1
  elif [[ -n $(find "$PEER/src" "$PEER/build.rs" "$PEER/Cargo.toml" "$PEER/Cargo.lock" \
    "$PEER/.cargo/config.toml" -newer "$b" -print -quit 2>/dev/null) ]]; then
    stale=1
  fi
done

if ((check_only)); then
  status=0
  if ((${#missing[@]})); then echo "setup-peers: missing packages: ${missing[*]}"; status=1; fi
  if ((stale)); then echo "setup-peers: the Rust peer needs building: $BIN, $TLS_BIN"; status=1; fi
  if ((status == 0)); then echo "setup-peers: packages present, Rust peer up to date"; fi
  exit $status
fi

if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "setup-peers: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup-peers: all ${#PACKAGES[@]} packages present"
fi

if ((stale)); then
  echo "setup-peers: building the Rust peer with $("$CARGO" --version) and $("$RUSTC" --version)"
  # TLS first, copied aside; then the plain build, which recompiles only reqwest and the peer.
  target_dir=${CHIMERA_CARGO_TARGET_DIR:-$PEER/target}
  mkdir -p "$target_dir" "$PEER/target/release"
  (cd "$PEER" && CARGO_TARGET_DIR="$target_dir" RUSTC="$RUSTC" RUSTDOC=/usr/bin/rustdoc \
    "$CARGO" build --release --offline --features tls)
  cp "$target_dir/release/rust-peer" "$TLS_BIN.tmp" && mv "$TLS_BIN.tmp" "$TLS_BIN"
  (cd "$PEER" && CARGO_TARGET_DIR="$target_dir" RUSTC="$RUSTC" RUSTDOC=/usr/bin/rustdoc \
    "$CARGO" build --release --offline)
  if [[ $target_dir != "$PEER/target" ]]; then
    cp "$target_dir/release/rust-peer" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
  fi
  # cargo keeps an unchanged binary's old time; the staleness test above needs a new one
  touch "$BIN" "$TLS_BIN"
  echo "setup-peers: built $BIN and $TLS_BIN"
else
  echo "setup-peers: Rust peer up to date: $BIN"
fi
