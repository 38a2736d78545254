#!/usr/bin/env python3
"""The first request's overhead against the rest, for one or more builds of chimeraforge-client.

`overhead_ttft` p99 at one agent (bench/compare) is the slowest of ten requests, which is nearly
always a process's first. This runs `CLIENT multi --agents 1 --requests-per-agent 10` against a
synthetic server (first token after 10 ms, Ollama protocol), RUNS times per client, the clients
alternating, and prints per client: the first request's overhead (t_first_token_ns -
first_byte_server_ns, METRICS.md), the median of the other nine, the slowest of ten, and in how
many runs that was under 0.2 ms. Medians over the runs, in microseconds.

Usage: first_request.py [--runs 20] [--cli build/apps/chimeraforge/chimeraforge] NAME=CLIENT...
  e.g. first_request.py old=/tmp/client-before new=build/apps/chimeraforge/chimeraforge-client
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, who="first_request.py"):
    """Returns once the synthetic server `proc` listens on `port` (10 s at most); exits naming
    `who` when it dies or does not listen. colocation.py uses it too."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit("%s: the synthetic server exited (%s)" % (who, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("%s: nothing listens on port %d" % (who, port))


def one_run(client, url, records):
    subprocess.run([client, "multi", "--endpoint", url, "--backend", "ollama", "--agents", "1",
                    "--requests-per-agent", "10", "--model", "synth", "--prompt", "hi",
                    "--max-tokens", "8", "--records", records, "--no-calibrate", "--quiet",
                    "--results", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    with open(records) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if r.get("t_first_token_ns") and r.get("first_byte_server_ns")]
    rows.sort(key=lambda r: r["t_send_ns"])
    return [(r["t_first_token_ns"] - r["first_byte_server_ns"]) / 1000 for r in rows]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--cli", default=os.path.join(HERE, "../../build/apps/chimeraforge/chimeraforge"),
                   help="the chimeraforge binary whose synth-server is used")
    p.add_argument("clients", nargs="+", metavar="NAME=CLIENT")
    a = p.parse_args()
    clients = []
    for arg in a.clients:
        name, sep, path = arg.partition("=")
        if not sep or not os.access(path, os.X_OK):
            sys.exit("first_request.py: %r is not NAME=EXECUTABLE" % arg)
        clients.append((name, path))
    port = free_port()
    server = subprocess.Popen([a.cli, "synth-server", "--port", str(port), "--ttft-ms", "10",
                               "--tokens-per-s", "100", "--tokens", "8", "-q"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server)
        url = "http://127.0.0.1:%d" % port
        runs = {name: [] for name, _ in clients}
        with tempfile.TemporaryDirectory() as d:
            for i in range(a.runs):
                order = clients if i % 2 == 0 else clients[::-1]
                for name, path in order:
                    runs[name].append(one_run(path, url, os.path.join(d, name + ".jsonl")))
        for name, _ in clients:
            ov = [o for o in runs[name] if len(o) == 10]
            first = [o[0] for o in ov]
            rest = [statistics.median(o[1:]) for o in ov]
            slowest = [max(o) for o in ov]
            print("%s: first %.0f us (%.0f - %.0f), others %.0f us, slowest of ten %.0f us, "
                  "under 200 us in %d of %d runs" % (
                      name, statistics.median(first), min(first), max(first),
                      statistics.median(rest), statistics.median(slowest),
                      sum(1 for s in slowest if s < 200), len(ov)))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
