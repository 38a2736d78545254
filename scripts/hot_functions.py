#!/usr/bin/env python3
"""Writes a symbol ordering file for lld (--symbol-ordering-file) from callgrind profiles.

Used by scripts/client-hot-functions.sh (chimeraforge-client) and scripts/serve-hot-functions.sh
(chimeraforge, for serve's request path). Keeps every function of BINARY that the profiles show
executing (a cost of its own), those that every profile executes first, then grouped by the
profiles that execute them, so that one workload's code is not spread among the others'; then
the data those functions refer to (RIP-relative operands), in the order first referred to.

Usage: hot_functions.py BINARY OUT WHAT [--distinct-names] PROFILE...
  WHAT            the list's first comment line: whose functions these are
  --distinct-names  leaves out local symbols whose name several objects define (a `.isra.0`
                  clone of a library function is in nearly every object): lld places every
                  symbol of a listed name, and in an object compiled without a section per
                  function it moves that object's whole text with it
Profiles must be written with --demangle=no --compress-strings=no --compress-pos=no.
"""
import os
import re
import subprocess
import sys
from collections import Counter


def executed(profile, binary):
    """The functions of `binary` with a cost of their own in one callgrind profile."""
    cost = Counter()
    obj = fn = None
    after_call = False
    with open(profile) as f:
        for line in f:
            if line.startswith("ob="):
                obj = os.path.realpath(line[3:].strip())
            elif line.startswith("fn="):
                # callgrind marks recursion levels ('2) and contexts; the symbol is before them
                fn = re.split(r"'", line[3:].strip())[0] if obj == binary else None
                after_call = False
            elif line.startswith("calls="):
                after_call = True  # the next cost line is the call's, not the function's own
            elif line[:1].isdigit():
                if after_call:
                    after_call = False
                elif fn is not None:
                    parts = line.split()
                    if len(parts) >= 2:
                        cost[fn] += int(parts[1])
    return {name for name, ir in cost.items() if ir > 0}


def native_ifunc_choices(binary, symbols, every):
    """A statically linked C library picks its string and math routines for the CPU at start-up
    (IFUNC): under valgrind it picks others than natively. The choices of a native run are read
    from the program's IRELATIVE slots in a process of its own (its synthetic server)."""
    relocs = subprocess.run(["readelf", "-rW", binary], capture_output=True, text=True,
                            check=True).stdout
    slots = [int(l.split()[0], 16) for l in relocs.splitlines() if "R_X86_64_IRELATIVE" in l]
    chosen = {}
    if not slots:
        return chosen
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
                    chosen[name] = every  # as if every run executed it
    finally:
        proc.kill()
        proc.wait()
    return chosen


def referred_data(binary, functions, kinds):
    """The read-only data and tables `functions` refer to, in the order first referred to."""
    data, seen = [], set()
    head = re.compile(r"^[0-9a-f]+ <(.+)>:$")
    ref = re.compile(r"# [0-9a-f]+ <([^>+]+)")
    dis = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", binary],
                           stdout=subprocess.PIPE, text=True)
    inside = False
    for line in dis.stdout:
        if not line.startswith(" "):
            m = head.match(line.rstrip())
            if m:
                inside = m.group(1) in functions
            continue
        if inside and "#" in line:
            m = ref.search(line)
            if m and m.group(1) not in seen and kinds.get(m.group(1), "?") in "rRdDvV":
                seen.add(m.group(1))
                data.append(m.group(1))
    if dis.wait() != 0:
        sys.exit("hot_functions.py: objdump failed")
    return data


def main():
    args = sys.argv[1:]
    distinct = "--distinct-names" in args
    args = [a for a in args if a != "--distinct-names"]
    if len(args) < 4:
        sys.exit(__doc__)
    binary, out, what, profiles = os.path.realpath(args[0]), args[1], args[2], args[3:]

    ran = {}  # function -> the profiles (bit i: profiles[i]) that executed it
    for i, path in enumerate(profiles):
        for name in executed(path, binary):
            ran[name] = ran.get(name, 0) | (1 << i)
    nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                        check=True).stdout
    entries = [p for p in (l.split() for l in nm.splitlines()) if len(p) == 3]
    symbols = [p for p in entries if p[1] in "tTwWiI"]
    functions = {p[2] for p in symbols}
    defined = Counter(p[2] for p in entries)
    hot = {name: runs for name, runs in ran.items()
           if name in functions and not (distinct and defined[name] > 1)}
    hot.update(native_ifunc_choices(binary, symbols, (1 << len(profiles)) - 1))
    order = sorted(hot, key=lambda name: (-bin(hot[name]).count("1"), hot[name], name))
    kinds = {p[2]: p[1] for p in entries}
    data = referred_data(binary, set(order), kinds)
    if distinct:
        data = [name for name in data if defined[name] == 1]

    script = os.path.basename(os.environ.get("HOT_FUNCTIONS_SCRIPT", "hot_functions.py"))
    with open(out, "w") as f:
        f.write(f"# {what}, then the data they refer\n"
                f"# to, for lld's --symbol-ordering-file. Written by scripts/{script};\n"
                "# do not edit.\n")
        f.write("\n".join(order + data) + "\n")
    print(f"{script}: {len(order)} functions and {len(data)} data symbols -> {out}")


if __name__ == "__main__":
    main()
