#!/usr/bin/env bash
# Packs what bench/gpu/run.sh needs on another machine into one compressed file: the CLI (for
# `model synth`), chimera_banter_bench, chimera_inproc_bench and llama-server of one build tree,
# stripped, with the shared libraries they need that a bare machine may lack, and the two
# tokenizer vocabularies the synthetic models take. The layout is an installed tree's
# (include/chimera/core/install_paths.hpp), so CHIMERA_PREFIX=<unpacked folder> finds it all:
#
#   bin/                       chimeraforge, chimera_banter_bench, chimera_inproc_bench
#   lib/chimeraforge/          llama-server and, in a portable build, llama.cpp's shared
#                              libraries and CPU backend modules
#   lib/deps/                  the other shared libraries (Boost, fmt, cmark-gfm, OpenSSL, ...)
#   share/chimeraforge/vocab/  ggml-vocab-llama-bpe.gguf, ggml-vocab-llama-spm.gguf
#   MANIFEST                   build tree, llama.cpp build, commit, CUDA version, file sizes
#
# Left out, because the target provides them and they must match its driver or system: the C
# and C++ runtimes (glibc, libstdc++, libgcc_s) and CUDA's libraries (libcudart, libcublas,
# libcublasLt, libcuda), which run.sh finds on the target.
#
#   bench/gpu/pack.sh --build DIR [--out FILE]    (default FILE: DIR/gpu-pack.tar.xz)
#
# Builds the three targets in DIR first (ninja -j2). Prints the packed size: a device call
# carries at most 64 MiB, the working tree included.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

BUILD=""
OUT_FILE=""
while (($#)); do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --out) OUT_FILE=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "pack: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n $BUILD && -f $BUILD/CMakeCache.txt ]] ||
  { echo "pack: --build DIR must name a configured build tree" >&2; exit 2; }
BUILD="$(cd "$BUILD" && pwd)"
OUT_FILE=${OUT_FILE:-$BUILD/gpu-pack.tar.xz}
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD/CMakeCache.txt"; }

SERVER=$(cache_value CHIMERA_LLAMA_SERVER)
[[ -x $SERVER ]] || { echo "pack: no llama-server at '$SERVER' (CHIMERA_LLAMA_SERVER)" >&2; exit 1; }
SERVER_DIR=$(dirname "$SERVER")
# The pinned source beside the build in the cache: <cache>/llama.cpp-<commit>-src/src/models.
LLAMA_COMMIT=$(sed -n 's|.*/llama\.cpp-\([0-9a-f]*\)-.*|\1|p' <<<"$SERVER")
SRC_MODELS="$(cache_value CHIMERA_CACHE_DIR)/llama.cpp-$LLAMA_COMMIT-src/src/models"
[[ -f $SRC_MODELS/ggml-vocab-llama-bpe.gguf ]] ||
  { echo "pack: no vocabularies in $SRC_MODELS" >&2; exit 1; }

cmake --build "$BUILD" --target chimeraforge chimera_banter_bench chimera_inproc_bench -- -j2 \
  >/dev/null || { echo "pack: building the targets in $BUILD failed" >&2; exit 1; }

STAGE=$(mktemp -d -t chimera-gpu-pack.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,lib/chimeraforge,lib/deps,share/chimeraforge/vocab}
cp "$BUILD/apps/chimeraforge/chimeraforge" "$BUILD/bench/banter/chimera_banter_bench" \
  "$BUILD/bench/inproc/chimera_inproc_bench" "$STAGE/bin/"
cp "$SERVER" "$STAGE/lib/chimeraforge/"
# A portable build: llama.cpp's shared libraries (in ../lib) and CPU modules (beside the server).
shopt -s nullglob
for f in "$SERVER_DIR"/libggml-*.so "$SERVER_DIR/../lib"/lib{llama,ggml,mtmd}*.so*; do
  cp -P "$f" "$STAGE/lib/chimeraforge/"
done
shopt -u nullglob
cp "$SRC_MODELS"/ggml-vocab-llama-{bpe,spm}.gguf "$STAGE/share/chimeraforge/vocab/"

# The shared libraries the binaries load, less the system's runtimes and CUDA's.
system_lib() {
  case $1 in
    linux-vdso* | ld-linux* | libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | \
      libstdc++.so* | libgcc_s.so* | libcuda.so* | libcudart.so* | libcublas*.so* | \
      libnvidia*.so*) return 0 ;;
  esac
  return 1
}
export LD_LIBRARY_PATH="$STAGE/lib/chimeraforge${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for elf in "$STAGE"/bin/* "$STAGE"/lib/chimeraforge/*; do
  [[ -L $elf ]] && continue
  while read -r name _ path _; do
    system_lib "$name" && continue
    [[ $path != not ]] || { echo "pack: $(basename "$elf") needs $name, which is not found" >&2; exit 1; }
    [[ -n $path ]] || continue
    [[ -e $STAGE/lib/chimeraforge/$name || -e $STAGE/lib/deps/$name ]] && continue
    cp -L "$path" "$STAGE/lib/deps/$name"
  done < <(ldd "$elf" | awk '/=>/ {print $1, $2, $3, $4}')
done
for elf in "$STAGE"/bin/* "$STAGE"/lib/chimeraforge/* "$STAGE"/lib/deps/*; do
  [[ -L $elf ]] || strip --strip-unneeded "$elf" 2>/dev/null || true
done

{
  echo "build_dir=$BUILD"
  echo "llama_server=$SERVER"
  echo "commit=$(git -C "$ROOT" rev-parse HEAD)"
  echo "dirty=$([[ -n $(git -C "$ROOT" status --porcelain) ]] && echo true || echo false)"
  echo "packed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cuda=$(cache_value CHIMERA_LLAMA_CUDA)"
  echo "cuda_architectures=$(cache_value CMAKE_CUDA_ARCHITECTURES)"
  echo "portable=$(cache_value CHIMERA_PORTABLE)"
  nvcc=$(cache_value CHIMERA_NVCC)
  if [[ -x $nvcc ]]; then
    echo "nvcc=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  fi
  echo "cuda_libraries_needed=$(for elf in "$STAGE"/bin/* "$STAGE"/lib/chimeraforge/*; do
    ldd "$elf" 2>/dev/null; done | awk '/libcu|libnvidia/ {print $1}' | sort -u | tr '\n' ' ')"
  echo "unpacked_bytes=$(du -sb "$STAGE" | cut -f1)"
} >"$STAGE/MANIFEST"

mkdir -p "$(dirname "$OUT_FILE")"
# One xz stream with a dictionary larger than the whole tree: the programs of a static build
# each hold the same llama.cpp (CUDA kernels included), and a later copy then costs next to
# nothing. Single-threaded on purpose: xz's threads cut the stream into independent blocks.
tar -C "$STAGE" -cf - . | xz -T1 --lzma2=preset=6,dict=256MiB >"$OUT_FILE.tmp"
mv "$OUT_FILE.tmp" "$OUT_FILE"
echo "pack: $OUT_FILE"
(cd "$STAGE" && du -b bin/* lib/chimeraforge/* lib/deps/* | sort -rn | head -12 |
  awk '{printf "  %8.1f MB  %s\n", $1 / 1e6, $2}')
awk -v u="$(du -sb "$STAGE" | cut -f1)" -v c="$(stat -c %s "$OUT_FILE")" \
  'BEGIN { printf "pack: %.1f MB unpacked, %.1f MiB packed\n", u / 1e6, c / 1048576 }'
