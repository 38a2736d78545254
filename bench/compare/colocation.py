#!/usr/bin/env python3
"""Does a client's stall rate follow its loop thread sharing a CPU with the server's?

The unpinned `stall_rate` and `contention` rows at 256 agents (bench/compare) come out in two
kinds of repetition: a few percent of chunks late, or a quarter to a half. This runs a
program RUNS times against one synthetic server (50 tokens/s streams of 20 tokens, first token
at once, one I/O thread: the harness's concurrency workload), nothing pinned, and while each
run lasts samples every 5 ms which CPU the program's busiest thread and the server's busiest
thread are on (the `processor` field of /proc/PID/task/TID/stat; busiest by CPU time so far).
Per run it prints the stall rate (chunks whose delivery lag exceeds 1 ms, METRICS.md) and the
share of samples in which the two threads were on the same CPU; then the correlation between
the two over the runs (the sampling itself takes a little CPU: compare runs, not absolutes).
With --out, one JSON object per run is appended to that file.

Usage: colocation.py [--runs 12] [--agents 256] [--program chimeraforge|rust] [--out FILE]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from first_request import free_port, wait_port  # the same folder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def threads(pid):
    """{tid: (cpu it last ran on, utime + stime in ticks)} for a process's threads."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the ")" that ends the command name, field 3 (state) is index 0: utime and
        # stime are fields 14 and 15, processor field 39.
        out[tid] = (int(fields[36]), int(fields[11]) + int(fields[12]))
    return out


def busiest_cpu(pid):
    t = threads(pid)
    return max(t.values(), key=lambda v: v[1])[0] if t else None


def program_argv(a, url, records):
    common = ["--endpoint", url, "--backend", "ollama", "--agents", str(a.agents),
              "--requests-per-agent", str(a.requests), "--model", "synth", "--prompt", "hi",
              "--max-tokens", str(a.tokens), "--records", records]
    if a.program == "chimeraforge":
        return [a.client, "multi", *common, "--no-calibrate", "--quiet", "--results", "",
                "--executor", "single"]
    return [a.rust_peer, *common]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--agents", type=int, default=256)
    p.add_argument("--requests", type=int, default=3, help="requests per agent (3)")
    p.add_argument("--tokens", type=int, default=20, help="tokens per request (20)")
    p.add_argument("--program", choices=["chimeraforge", "rust"], default="chimeraforge")
    p.add_argument("--cli", default=os.path.join(ROOT, "build/apps/chimeraforge/chimeraforge"),
                   help="runs the synthetic server")
    p.add_argument("--client", help="the program run as chimeraforge (default "
                   "chimeraforge-client beside --cli, else --cli)")
    p.add_argument("--rust-peer",
                   default=os.path.join(ROOT, "bench/peers/rust/target/release/rust-peer"))
    p.add_argument("--out", help="append one JSON object per run to this file")
    a = p.parse_args()
    if not a.client:
        beside = os.path.join(os.path.dirname(a.cli), "chimeraforge-client")
        a.client = beside if os.access(beside, os.X_OK) else a.cli
    for path in (a.cli, a.client if a.program == "chimeraforge" else a.rust_peer):
        if not os.access(path, os.X_OK):
            sys.exit(f"colocation.py: {path} is not an executable (build it first)")

    port = free_port()
    server = subprocess.Popen([a.cli, "synth-server", "--port", str(port), "--ttft-ms", "0",
                               "--tokens-per-s", "50", "--tokens", str(a.tokens), "--threads",
                               "1", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stalls, shared = [], []
    try:
        wait_port(port, server, "colocation.py")
        with tempfile.TemporaryDirectory() as tmp:
            records = os.path.join(tmp, "records.jsonl")
            for run in range(a.runs):
                argv = program_argv(a, f"http://127.0.0.1:{port}", records)
                proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                same = total = 0
                while proc.poll() is None:
                    c, s = busiest_cpu(proc.pid), busiest_cpu(server.pid)
                    if c is not None and s is not None:
                        total += 1
                        same += c == s
                    time.sleep(0.005)
                if proc.returncode != 0:
                    sys.exit(f"colocation.py: {argv[0]} exited with {proc.returncode}")
                n_stalls = n_chunks = 0
                with open(records) as f:
                    for line in f:
                        r = json.loads(line)
                        if "stalls" in r:
                            n_stalls += r["stalls"]
                            n_chunks += r["chunks"]
                stall = 100.0 * n_stalls / max(1, n_chunks)
                share = 100.0 * same / max(1, total)
                stalls.append(stall)
                shared.append(share)
                print(f"run {run + 1:2d}: stall_rate {stall:5.1f}%   same CPU as the server "
                      f"in {same:3d} of {total:3d} samples ({share:5.1f}%)", flush=True)
                if a.out:
                    with open(a.out, "a") as f:
                        f.write(json.dumps({
                            "date": datetime.datetime.now(datetime.timezone.utc)
                            .strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "program": a.program, "agents": a.agents, "run": run + 1,
                            "stall_rate_pct": round(stall, 2), "same_cpu_pct": round(share, 1),
                            "samples": total, "cpus": os.cpu_count()}) + "\n")
    finally:
        server.terminate()
        server.wait()
    if len(stalls) > 2 and statistics.pstdev(stalls) > 0 and statistics.pstdev(shared) > 0:
        r = statistics.correlation(stalls, shared)
        print(f"correlation (Pearson) of stall_rate and same-CPU share over {len(stalls)} runs: "
              f"{r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
