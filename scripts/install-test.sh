#!/usr/bin/env bash
# Checks that Chimeraforge can be taken home: what `cmake --install`, `pip install .` and the
# Debian package give a user works without the build tree, and the portable libchimera_c.so runs
# clean under valgrind.
#
#   scripts/install-test.sh [--build DIR] [--portable DIR] [CHECK...]
#
# CHECKs (default: tree python deb valgrind):
#   tree      `cmake --install` into a temporary prefix, which is then moved (an installed tree
#             must be relocatable). With the build tree and ~/.cache/chimeraforge hidden (a
#             private mount namespace puts empty folders over them) and HOME in a temporary
#             folder: the installed `chimeraforge --version` and `chimeraforge run` on the
#             installed sample data; a CMake project with find_package(chimera) that streams one
#             in-process request; examples/c/banter_host.c built with
#             `pkg-config --cflags --libs chimera`.
#   python    a virtual environment, `pip install .` offline (Debian's setuptools and wheel
#             from /usr/share/python-wheels), `python -m chimeraforge --version`, one in-process
#             generation, and no .pth written into the user site-packages.
#   deb       `cpack -G DEB`, `apt-get install ./chimeraforge_<version>_<arch>.deb`,
#             `chimeraforge --version` and `chimeraforge run --data /usr/share/chimeraforge/sample`,
#             then `apt-get purge`, checking that none of the package's files is left. Needs
#             root (or sudo) and changes the system while it runs: skipped otherwise.
#   valgrind  the C ABI test (tests/capi/capi_test.c) on the portable libchimera_c.so under
#             `valgrind --error-exitcode=1`. Configures DIR (default build-portable) with
#             -DCHIMERA_PORTABLE=ON if needed and builds only libchimera_c and the test; the
#             portable llama.cpp is cached in ~/.cache/chimeraforge (the first build takes longer).
#
# --build DIR: the build tree to install from (default build/; built here if out of date:
# the targets the checks need only). Each check prints its time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

BUILD=build
PORTABLE=build-portable
checks=()
while (($#)); do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --portable) PORTABLE=$2; shift 2 ;;
    tree|python|deb|valgrind) checks+=("$1"); shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-test: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
((${#checks[@]})) || checks=(tree python deb valgrind)
BUILD="$(cd "$BUILD" && pwd)"
VERSION=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$BUILD/CMakeCache.txt")
[[ -n $VERSION ]] || { echo "install-test: $BUILD is not a configured build tree" >&2; exit 2; }
CACHE_DIR=$(sed -n 's/^CHIMERA_CACHE_DIR:PATH=//p' "$BUILD/CMakeCache.txt")
PY=/usr/bin/python3

WORK=$(mktemp -d -t chimera-install-test.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

say() { printf 'install-test: %s\n' "$*"; }
fail() { printf 'install-test: FAILED: %s\n' "$*" >&2; exit 1; }
run_timed() {  # name command...
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  awk -v n="$name" -v a="$start" -v b="$end" 'BEGIN { printf "install-test: %s passed in %.1f s\n", n, b - a }'
}
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}
can_be_root() { [[ $(id -u) -eq 0 ]] || sudo -n true 2>/dev/null; }

# A tiny model for the in-process checks, made by the build tree's CLI before anything is hidden.
tiny_model() {
  local model="$WORK/tiny.gguf"
  if [[ ! -f $model ]]; then
    "$BUILD/apps/chimeraforge/chimeraforge" model synth --preset tiny --seed 42 --out "$model" \
      --quiet >/dev/null
  fi
  echo "$model"
}

# Runs a command with the build tree and the llama.cpp cache out of sight: a private mount
# namespace with empty folders mounted over them, so the command sees the machine a user who
# only has the installed files would see. Falls back to running as is (saying so) where mount
# namespaces are not allowed.
hidden() {
  local hide=("$BUILD")
  [[ -n $CACHE_DIR && -d $CACHE_DIR ]] && hide+=("$CACHE_DIR")
  if unshare -m true 2>/dev/null; then
    local script='set -e; for d in "${@:2:$1}"; do mount -t tmpfs -o size=1m,mode=0555 none "$d"; done; shift $(($1 + 1)); exec "$@"'
    unshare -m bash -c "$script" hide "${#hide[@]}" "${hide[@]}" "$@"
  elif unshare -rm true 2>/dev/null; then
    local script='set -e; for d in "${@:2:$1}"; do mount -t tmpfs -o size=1m none "$d"; done; shift $(($1 + 1)); exec "$@"'
    unshare -rm bash -c "$script" hide "${#hide[@]}" "${hide[@]}" "$@"
  else
    say "note: no mount namespaces here; the build tree stays visible"
    "$@"
  fi
}

build_targets() {  # dir targets...
  local dir=$1
  shift
  cmake --build "$dir" --target "$@" -- -j"$(nproc)" >"$WORK/build.log" 2>&1 ||
    { tail -50 "$WORK/build.log" >&2; fail "building $* in $dir"; }
}

# --- tree ----------------------------------------------------------------------------------
check_tree() {
  local t0=$SECONDS
  build_targets "$BUILD" chimeraforge chimeraforge-client chimera_shared chimera_c chimera_serve_shared
  say "  [$((SECONDS - t0))s] built; installing"
  local model staged prefix
  model=$(tiny_model)
  staged="$WORK/staged"
  prefix="$WORK/moved-prefix"
  cmake --install "$BUILD" --prefix "$staged" >"$WORK/install.log" ||
    { cat "$WORK/install.log" >&2; fail "cmake --install"; }
  mv "$staged" "$prefix"

  local f
  for f in bin/chimeraforge bin/chimeraforge-client lib/libchimera_c.so "lib/libchimera_c.so.${VERSION%%.*}" \
    lib/libchimera.so "lib/libchimera.so.${VERSION%%.*}" include/chimera.h \
    lib/libchimera_serve.so "lib/libchimera_serve.so.${VERSION%%.*}" include/chimera/serve/server.hpp \
    include/chimera/version.h include/chimera/backends/backend.hpp \
    lib/cmake/chimera/chimera-config.cmake lib/cmake/chimera/chimera-targets.cmake \
    lib/pkgconfig/chimera.pc share/chimeraforge/vocab/ggml-vocab-llama-spm.gguf \
    share/chimeraforge/sample share/chimeraforge/examples/c/banter_host.c \
    share/doc/chimeraforge/copyright; do
    [[ -e "$prefix/$f" ]] || fail "the installed tree lacks $f"
  done
  [[ $(readelf -d "$prefix/lib/libchimera_c.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p') == \
    "libchimera_c.so.${VERSION%%.*}" ]] || fail "libchimera_c.so has no SONAME libchimera_c.so.${VERSION%%.*}"
  # The project built llama.cpp (it was not found installed): its llama-server goes along.
  if grep -q "^CHIMERA_LLAMA_SERVER:FILEPATH=$CACHE_DIR" "$BUILD/CMakeCache.txt"; then
    [[ -x "$prefix/lib/chimeraforge/llama-server" ]] || fail "no lib/chimeraforge/llama-server"
  fi

  # What follows runs with the build tree and the cache hidden, HOME empty.
  local home="$WORK/home"
  mkdir -p "$home"
  cat >"$WORK/tree-checks.sh" <<'EOS'
set -euo pipefail
prefix=$1 model=$2 version=$3 work=$4 consumer_src=$5
export HOME=$work/home XDG_CACHE_HOME=
unset CHIMERA_VOCAB_DIR CHIMERA_LLAMA_SERVER CHIMERA_PREFIX
export PATH="$prefix/bin:/usr/local/bin:/usr/bin:/bin"
step() { echo "install-test:   [${SECONDS}s] $*"; }
step "--version"
got=$(chimeraforge --version)
[[ $got == "chimeraforge $version" ]] || { echo "--version printed '$got'" >&2; exit 1; }
step "chimeraforge run"
# The tiny model is synthesized from the installed vocabulary, into the empty HOME's cache.
chimeraforge run --data "$prefix/share/chimeraforge/sample" --out "$work/run-out" --quiet
[[ -s $work/run-out/report.md && -s $work/run-out/metrics.json ]] || { echo "run wrote no report" >&2; exit 1; }
[[ -f $HOME/.cache/chimeraforge/models/tiny-seed42.gguf ]] || { echo "no tiny model in the empty HOME" >&2; exit 1; }
if [[ -x $prefix/lib/chimeraforge/llama-server ]]; then
  "$prefix/lib/chimeraforge/llama-server" --version >/dev/null 2>&1 ||
    { echo "the installed llama-server does not run" >&2; exit 1; }
fi

step "find_package consumer"
cmake -S "$consumer_src" -B "$work/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_PREFIX_PATH=$prefix" >"$work/consumer.log" 2>&1 || { cat "$work/consumer.log" >&2; exit 1; }
cmake --build "$work/consumer" >>"$work/consumer.log" 2>&1 || { cat "$work/consumer.log" >&2; exit 1; }
"$work/consumer/consumer" "$model" >"$work/consumer.out" 2>"$work/consumer.err" ||
  { cat "$work/consumer.out" "$work/consumer.err" >&2; exit 1; }
grep -q "chunks streamed in-process" "$work/consumer.err"

step "pkg-config host"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[[ $(pkg-config --modversion chimera) == "$version" ]] || { echo "chimera.pc has the wrong version" >&2; exit 1; }
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
cc -Wall -Wextra -Werror "$prefix/share/chimeraforge/examples/c/banter_host.c" \
  $(pkg-config --cflags --libs chimera) "-Wl,-rpath,$(pkg-config --variable=libdir chimera)" \
  -o "$work/banter_host"
"$work/banter_host" "$prefix/share/chimeraforge/examples/scenes/tavern.toml" 2 \
  >"$work/banter.out" 2>"$work/banter.err" || { cat "$work/banter.out" "$work/banter.err" >&2; exit 1; }
grep -q "figures" "$work/banter.err"
step "done"
EOS
  hidden bash "$WORK/tree-checks.sh" "$prefix" "$model" "$VERSION" "$WORK" \
    "$ROOT/tests/install/consumer" || fail "the installed tree (see above)"
  # The model came from the build tree before anything was hidden; the consumer ran on it.
  say "tree: installed, moved, and used without the build tree: --version, run, find_package consumer (with serve), pkg-config host"
}

# --- python --------------------------------------------------------------------------------
check_python() {
  local model venv user_site pth_before pth_after
  model=$(tiny_model)
  venv="$WORK/venv"
  user_site=$("$PY" -c 'import site; print(site.getusersitepackages())')
  pth_before=$(ls -l --time-style=+%s "$user_site/chimeraforge.pth" 2>/dev/null || true)
  "$PY" -m venv "$venv"
  # Offline: the build requirements (setuptools, wheel) come from Debian's wheels; the CMake
  # build reuses $BUILD, so only an out-of-date module is rebuilt.
  CHIMERA_BUILD_DIR="$BUILD" "$venv/bin/pip" install -q --no-index \
    --find-links /usr/share/python-wheels "$ROOT" >"$WORK/pip.log" 2>&1 ||
    { cat "$WORK/pip.log" >&2; fail "pip install ."; }
  pth_after=$(ls -l --time-style=+%s "$user_site/chimeraforge.pth" 2>/dev/null || true)
  [[ $pth_before == "$pth_after" ]] || fail "pip install wrote $user_site/chimeraforge.pth"

  local got
  got=$(cd "$WORK" && "$venv/bin/python" -m chimeraforge --version)
  [[ $got == "chimeraforge $VERSION" ]] || fail "python -m chimeraforge --version printed '$got'"
  (cd "$WORK" && hidden "$venv/bin/python" - "$model" "$venv" <<'EOP'
import asyncio, sys
import chimeraforge as cf

model, venv = sys.argv[1], sys.argv[2]
assert cf.__file__.startswith(venv), f"imported {cf.__file__}, not the virtual environment's"

async def main():
    ep = cf.Endpoint(model, backend="llama", llama=cf.LlamaOptions(parallel=1, ctx_per_seq=512))
    with cf.Engine(pools=cf.Pool(endpoints=[ep])) as engine:
        chunks = [c.text async for c in engine.stream("Once upon a time", max_tokens=8,
                                                      temperature=0.0)]
        r = await engine.generate("Once upon a time", max_tokens=8, temperature=0.0)
        assert r.ok and r.tokens_out == 8, r
        print(f"python: {r.tokens_out} tokens in-process, {len(chunks)} streamed chunks")

asyncio.run(main())
EOP
  ) || fail "the pip-installed package (see above)"
  say "python: pip install . offline in a venv; --version and one in-process generation; no .pth"
}

# --- deb -----------------------------------------------------------------------------------
check_deb() {
  if ! can_be_root; then
    say "deb: SKIPPED (installing a package needs root or sudo)"
    return 0
  fi
  if dpkg-query -W -f='${Status}' chimeraforge 2>/dev/null | grep -q "install ok installed"; then
    say "deb: SKIPPED (a chimeraforge package is installed already; this check would remove it)"
    return 0
  fi
  build_targets "$BUILD" chimeraforge chimera_shared chimera_c chimera_serve_shared
  (cd "$WORK" && cpack -G DEB --config "$BUILD/CPackConfig.cmake" >"$WORK/cpack.log" 2>&1) ||
    { cat "$WORK/cpack.log" >&2; fail "cpack -G DEB"; }
  local deb
  deb=$(ls "$WORK"/chimeraforge_"$VERSION"_*.deb 2>/dev/null | head -1)
  [[ -n $deb ]] || fail "cpack wrote no chimeraforge_${VERSION}_<arch>.deb ($(ls "$WORK"))"
  dpkg-deb -f "$deb" Depends | grep -q libc6 || fail "$deb has no computed dependencies"

  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q --no-install-recommends "$deb" >"$WORK/apt.log" 2>&1 ||
    { cat "$WORK/apt.log" >&2; fail "apt-get install $deb"; }
  local files
  files=$(dpkg-query -L chimeraforge)
  local ok=1
  (
    cd "$WORK"
    export HOME="$WORK/deb-home"
    mkdir -p "$HOME"
    got=$(/usr/bin/chimeraforge --version)
    [[ $got == "chimeraforge $VERSION" ]] || { echo "--version printed '$got'" >&2; exit 1; }
    got=$(/usr/bin/chimeraforge-client --version)
    [[ $got == "chimeraforge-client $VERSION" ]] ||
      { echo "chimeraforge-client --version printed '$got'" >&2; exit 1; }
    hidden /usr/bin/chimeraforge run --data /usr/share/chimeraforge/sample --out "$WORK/deb-out" \
      --quiet
    [[ -s $WORK/deb-out/report.md ]] || { echo "no report" >&2; exit 1; }
  ) || ok=0
  as_root apt-get purge -y -q chimeraforge >>"$WORK/apt.log" 2>&1 ||
    { cat "$WORK/apt.log" >&2; fail "apt-get purge chimeraforge"; }
  ((ok)) || fail "the installed package (see above)"
  local left=()
  while IFS= read -r f; do
    # Folders the package shares with the system (/usr, /usr/lib, ...) stay; its own do not.
    if [[ -e $f && ! ( -d $f && $f != *chimera* ) ]]; then left+=("$f"); fi
  done <<<"$files"
  ((${#left[@]} == 0)) || fail "left behind after purge: ${left[*]}"
  say "deb: $(basename "$deb") installed, --version and run worked, purged leaving nothing"
}

# --- valgrind ------------------------------------------------------------------------------
check_valgrind() {
  command -v valgrind >/dev/null || fail "valgrind is not installed (scripts/setup.sh)"
  if [[ ! -f $PORTABLE/CMakeCache.txt ]] ||
    ! grep -q '^CHIMERA_PORTABLE:BOOL=ON' "$PORTABLE/CMakeCache.txt"; then
    cmake -S "$ROOT" -B "$PORTABLE" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHIMERA_PORTABLE=ON \
      -DCHIMERA_BUILD_PYTHON=OFF >"$WORK/portable-configure.log" 2>&1 ||
      { tail -50 "$WORK/portable-configure.log" >&2; fail "configuring $PORTABLE"; }
  fi
  build_targets "$PORTABLE" chimera_capi_test
  local lib test
  test="$PORTABLE/tests/chimera_capi_test"
  lib=$(ldd "$test" | awk '/libchimera_c/ {print $3}')
  # Not `ldd | grep -q`: grep stops at the first match, ldd dies of SIGPIPE, and pipefail
  # turns that into a failure.
  [[ $(ldd "$lib") == *libggml-base* ]] || fail "$lib is not the portable build (no libggml-base.so)"
  # The test's waits stretched 20 times, its time budgets not judged: valgrind runs it about
  # that much slower.
  CHIMERA_TEST_TIME_SCALE=20 valgrind --error-exitcode=1 -q "$test" \
    >"$WORK/valgrind.log" 2>&1 || { tail -80 "$WORK/valgrind.log" >&2; fail "valgrind on $test"; }
  say "valgrind: the C ABI test on the portable libchimera_c.so, memcheck clean"
}

for c in "${checks[@]}"; do
  run_timed "$c" "check_$c"
done
