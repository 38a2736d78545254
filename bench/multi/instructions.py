#!/usr/bin/env python3
"""The user-space instructions the client executes per request and per streamed token.

Runs `multi` (the client under test, by default build/apps/chimeraforge/chimeraforge-client)
under callgrind against the synthetic server (first token at once, 100,000 tokens/s, so that
nothing waits on the clock) three times: AGENTS agents making 2 and 12 requests of one token,
and 4 requests of 41 tokens (4 requests of one token read off the line of the first two). The
differences give the instructions of one more request and of one more token, with start-up, the
process's exit and the server's pace taken out.
Instructions do not depend on the machine's load, so two builds compare on a busy machine too
(run it on each: the second binary's record beside the first's). Prints the two figures and
appends a record to bench/results/client-instructions.jsonl.

    bench/multi/instructions.py [--client BINARY] [--backend ollama|openai] [--agents N]
                                [--top K]       # also the K functions with the most instructions
                                                # of their own per request
Needs valgrind (scripts/setup.sh installs it).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "common"))
sys.path.insert(0, str(ROOT / "bench" / "compare"))
from compare import start_synth  # noqa: E402  (the harness's synthetic server)
from provenance import Provenance  # noqa: E402


def totals(path):
    """Instructions per function (their own) and in all, from a callgrind output file."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", str(path)], check=True,
                         capture_output=True, text=True).stdout
    total, per_fn = None, {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = n
        else:
            name = m.group(2).replace("???:", "")
            per_fn[name] = per_fn.get(name, 0) + n
    if total is None:
        raise RuntimeError(f"no total in {path}")
    return total, per_fn


def run_once(client, backend, url, agents, requests, tokens, work):
    out = work / f"cg.{agents}.{requests}.{tokens}.out"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(client), "multi",
            "--endpoint", url, "--backend", backend, "--agents",
            str(agents), "--requests-per-agent", str(requests), "--model", "synth", "--prompt",
            "hi there", "--max-tokens", str(tokens), "--no-calibrate", "--quiet", "--results", "",
            "--executor", "single"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return totals(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--client", default=str(ROOT / "build/apps/chimeraforge/chimeraforge-client"))
    ap.add_argument("--backend", default="ollama", choices=["ollama", "openai"])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench/results/client-instructions.jsonl"))
    args = ap.parse_args()
    client = Path(args.client)
    if not os.access(client, os.X_OK):
        sys.exit(f"instructions.py: {client} is not an executable (build it: bash scripts/build.sh)")
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit(f"instructions.py: {tool} is not installed (scripts/setup.sh installs valgrind)")
    if args.agents < 1:
        sys.exit("instructions.py: --agents must be at least 1")
    prov = Provenance(build_dir=client.parent.parent.parent)
    a = args.agents
    with tempfile.TemporaryDirectory(prefix="chimera-client-instructions.") as tmp:
        work = Path(tmp)
        results = {}
        for requests, tokens in ((2, 1), (12, 1), (4, 41)):
            synth = start_synth(str(client), f"synth-{tokens}", 0, 100000, tokens, 1, work)
            try:
                results[(requests, tokens)] = run_once(client, args.backend, synth.url, a,
                                                       requests, tokens, work)
            finally:
                synth.stop()
        (t2, f2), (t12, f12), (t41, _) = (results[(2, 1)], results[(12, 1)], results[(4, 41)])
        # 4 requests of one token: the 2- and 12-request runs give it, by their line.
        t4 = t2 + (t12 - t2) * (4 - 2) / (12 - 2)
        per_request = (t12 - t2) / (a * 10)
        per_token = (t41 - t4) / (a * 4 * 40)
        figures = {"per_request": round(per_request), "per_token": round(per_token)}
        print(f"{client}: {figures['per_request']:,} instructions per request of one token, "
              f"{figures['per_token']:,} per further token ({args.backend}, {a} agents, "
              "callgrind)")
        top = []
        if args.top > 0:
            diff = {k: (f12.get(k, 0) - f2.get(k, 0)) / (a * 10) for k in set(f2) | set(f12)}
            for name, n in sorted(diff.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"  {n:9,.0f}  {name[:150]}")
                top.append({"function": name, "per_request": round(n)})
    record = {
        "kind": "client_instructions",
        "client": str(client),
        "backend": args.backend,
        "agents": a,
        "instructions": figures,
        "source": "measured: callgrind's instruction counts, differences of whole runs",
        "formula": "per_request = (I(12 requests) - I(2 requests)) / (agents * 10); per_token = "
                   "(I(4 requests of 41 tokens) - I(4 requests of 1)) / (agents * 4 * 40)",
        "provenance": prov.stamp(),
    }
    if top:
        record["top"] = top
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
