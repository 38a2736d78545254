#!/usr/bin/env bash
# Writes apps/chimeraforge-client/hot-functions.txt: the functions of chimeraforge-client that
# its usual runs execute, and the data they refer to, for the link to place side by side (--symbol-ordering-file, see
# apps/chimeraforge-client/CMakeLists.txt and docs/performance.md).
#
#   bash scripts/client-hot-functions.sh [BUILD_DIR]     # default: build
#
# Runs the built client under valgrind's callgrind against its own synthetic server (multi with
# one and four agents as bench/compare runs it, generate as the start-up probe, over both
# protocols, and endpoints check) and keeps every function of the program that ran, those that
# every run executes first, then grouped by the runs that execute them. Rebuild the client
# afterwards. A stale list is harmless: names that no longer exist are skipped by the
# linker, and the program stays correct; only its resident set grows back toward the unordered
# layout's.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
bin="$build/apps/chimeraforge/chimeraforge-client"
out="$root/apps/chimeraforge-client/hot-functions.txt"

if [[ ! -x "$bin" ]]; then
  echo "client-hot-functions: $bin not found; build the chimeraforge-client target first" >&2
  exit 2
fi
command -v valgrind >/dev/null || { echo "client-hot-functions: valgrind not found" >&2; exit 2; }

work="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" synth-server --port 0 --ttft-ms 0 --tokens-per-s 2000 --tokens 20 --threads 1 \
  >"$work/server.out" 2>&1 &
server=$!
url=""
for _ in $(seq 100); do
  url="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/server.out" || true)"
  [[ -n "$url" ]] && break
  sleep 0.1
done
if [[ -z "$url" ]]; then
  echo "client-hot-functions: the synthetic server did not start:" >&2
  cat "$work/server.out" >&2
  exit 1
fi

n=0
profile() {
  n=$((n + 1))
  valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$work/cg.$n" "$bin" "$@" >"$work/run.$n.out" 2>"$work/run.$n.err" || {
    echo "client-hot-functions: '$*' failed:" >&2
    tail -5 "$work/run.$n.err" >&2
    exit 1
  }
}

for backend in ollama openai; do
  for agents in 1 4; do
    profile multi --endpoint "$url" --backend "$backend" --model synth --prompt "Say something." \
      --agents "$agents" --requests-per-agent 3 --max-tokens 20 \
      --records "$work/records.$backend.$agents.jsonl" --record-lags --no-calibrate --quiet \
      --results "" --executor single
  done
  profile generate --endpoint "$url" --backend "$backend" --model synth --prompt hi \
    --num-predict 1 --quiet
  profile generate --endpoint "$url" --backend "$backend" --model synth --prompt hi \
    --num-predict 8 --json
done
profile endpoints check "$url"

python3 - "$bin" "$out" "$work"/cg.* <<'EOF'
import os, re, subprocess, sys

binary, out, profiles = os.path.realpath(sys.argv[1]), sys.argv[2], sys.argv[3:]
ran = {}  # function -> the runs (bit i: profiles[i]) that executed it
for i, path in enumerate(profiles):
    obj = None
    with open(path) as f:
        for line in f:
            if line.startswith("ob="):
                obj = os.path.realpath(line[3:].strip())
            elif line.startswith("fn=") and obj == binary:
                # callgrind marks recursion levels ('2) and contexts; the symbol is before them
                name = re.split(r"'", line[3:].strip())[0]
                ran[name] = ran.get(name, 0) | (1 << i)
nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                    check=True).stdout
symbols = [p for p in (l.split() for l in nm.splitlines()) if len(p) == 3 and p[1] in "tTwWiI"]
functions = {p[2] for p in symbols}
hot = {name: runs for name, runs in ran.items() if name in functions}

# A statically linked C library picks its string and math routines for the CPU at start-up
# (IFUNC): under valgrind it picks others than natively. The choices of a native run are read
# from the program's IRELATIVE slots in a process of its own (its synthetic server, started here).
relocs = subprocess.run(["readelf", "-rW", binary], capture_output=True, text=True,
                        check=True).stdout
slots = [int(l.split()[0], 16) for l in relocs.splitlines() if "R_X86_64_IRELATIVE" in l]
if slots:
    by_address = {}
    for p in symbols:
        by_address.setdefault(int(p[0], 16), []).append(p[2])
    proc = subprocess.Popen([binary, "synth-server", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        proc.stdout.readline()  # listening: start-up, relocations included, is done
        with open(f"/proc/{proc.pid}/mem", "rb", buffering=0) as mem:
            for slot in slots:
                mem.seek(slot)
                target = int.from_bytes(mem.read(8), "little")
                for name in by_address.get(target, []):
                    hot[name] = (1 << len(profiles)) - 1  # as if every run executed it
    finally:
        proc.kill()
        proc.wait()
# What every run executes first, then the functions of each set of runs together, so that one
# command's code is not spread among the others'.
hot = sorted(hot, key=lambda name: (-bin(hot[name]).count("1"), hot[name], name))

# The read-only data and tables those functions refer to (RIP-relative operands), in the order
# first referred to, so that they too share pages.
kinds = {p[2]: p[1] for p in (l.split() for l in nm.splitlines()) if len(p) == 3}
wanted = set(hot)
data, seen = [], set()
head = re.compile(r"^[0-9a-f]+ <(.+)>:$")
ref = re.compile(r"# [0-9a-f]+ <([^>+]+)")
dis = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", binary], stdout=subprocess.PIPE,
                       text=True)
inside = False
for line in dis.stdout:
    if not line.startswith(" "):
        m = head.match(line.rstrip())
        if m:
            inside = m.group(1) in wanted
        continue
    if inside and "#" in line:
        m = ref.search(line)
        if m and m.group(1) not in seen and kinds.get(m.group(1), "?") in "rRdDvV":
            seen.add(m.group(1))
            data.append(m.group(1))
if dis.wait() != 0:
    sys.exit("client-hot-functions: objdump failed")

with open(out, "w") as f:
    f.write("# chimeraforge-client's functions that its usual runs execute, then the data they refer\n"
            "# to, for lld's --symbol-ordering-file. Written by scripts/client-hot-functions.sh;\n"
            "# do not edit.\n")
    f.write("\n".join(hot + data) + "\n")
print(f"client-hot-functions: {len(hot)} functions and {len(data)} data symbols -> {out}")
EOF
