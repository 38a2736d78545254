#!/usr/bin/python3
"""The concurrency benchmark: `chimeraforge multi` on every executor at N = 1 to 10,000 agents
against the synthetic server, and real llama-servers one vs two ("Dual") vs one with -np 2.

Writes one JSON line per run to bench/results/multi.jsonl (the figures, their sources, the
environment and the exact command) and a Markdown table to bench/results/multi.md.

  python3 bench/multi/bench_multi.py                  # everything (about 10 minutes)
  python3 bench/multi/bench_multi.py --part synth --agents 1 16 256
  python3 bench/multi/bench_multi.py --part llama --agents 2 4 8 16

Stdlib only. Needs a built tree (bash scripts/build.sh).
"""
import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS = ["single", "shared", "per-core", "thread-per-agent"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit():
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def wait_http(port, path="/health", timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if b" 200 " in s.recv(256):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class Server:
    """A child process stopped on exit (SIGTERM, then SIGKILL)."""

    def __init__(self, argv, port, log):
        self.argv = argv
        self.log = open(log, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_http(port):
            self.stop()
            sys.exit(f"server did not come up: {' '.join(argv)} (log: {log})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_multi(cli, args, env_note):
    argv = [cli, "multi", "--json", "--quiet", "--results", ""] + args
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - t0
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    try:
        fig = json.loads(line)
    except json.JSONDecodeError:
        fig = {"error": (p.stderr or p.stdout)[-500:]}
    fig["exit_code"] = p.returncode
    fig["process_wall_s"] = round(wall, 3)
    fig["command"] = " ".join(argv)
    fig.update(env_note)
    return fig


def fmt_pct(v):
    return "n/a" if v is None else f"{v * 100:.3f}%"


def fmt_ms(v):
    return "n/a" if v is None else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", default=str(ROOT / "build/apps/chimeraforge/chimeraforge"))
    ap.add_argument("--part", choices=["all", "synth", "llama"], default="all")
    ap.add_argument("--agents", type=int, nargs="+", default=None)
    ap.add_argument("--executors", nargs="+", default=EXECUTORS)
    ap.add_argument("--out", default=str(ROOT / "bench/results/multi.jsonl"))
    ap.add_argument("--table", default=str(ROOT / "bench/results/multi.md"))
    ap.add_argument("--llama-server", default=None, help="llama-server binary")
    ap.add_argument("--model", default=str(ROOT / "build/test-models/tiny.gguf"))
    a = ap.parse_args()
    if not os.access(a.cli, os.X_OK):
        sys.exit(f"{a.cli} is missing: build first (bash scripts/build.sh)")

    env = {"git_commit": git_commit(), "cpu": cpu_model(), "cores": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d"), "machine": platform.machine()}
    results = []
    logs = Path("/tmp/chimeraforge-bench-multi")
    logs.mkdir(exist_ok=True)

    if a.part in ("all", "synth"):
        ns = a.agents or [1, 16, 256, 1000, 10000]
        for n in ns:
            # 50 tokens/s each up to 1,000 agents, 5 tokens/s at 10,000 (the synthetic server's
            # stated capacity); the first token at once, so that only the client can lose time.
            rate, tokens, k = (50, 50, 2) if n <= 1000 else (5, 10, 1)
            port = free_port()
            server = Server([a.cli, "synth-server", "--port", str(port), "--ttft-ms", "0",
                             "--tokens-per-s", str(rate), "--tokens", str(tokens)],
                            port, logs / f"synth-{n}.log")
            try:
                for ex in a.executors:
                    fig = run_multi(a.cli, ["--agents", str(n), "--endpoint",
                                            f"http://127.0.0.1:{port}", "--backend", "ollama",
                                            "--model", "synth", "--executor", ex,
                                            "--requests-per-agent", str(k),
                                            "--max-tokens", str(tokens),
                                            # starts spread over one token interval
                                            "--stagger-ms", str(1000 / rate)],
                                    dict(env, part="synth", server="chimeraforge synth-server",
                                         tokens_per_s=rate, tokens=tokens))
                    results.append(fig)
                    print(f"synth N={n:>5} {ex:<17} eff {fmt_pct(fig.get('efficiency'))} "
                          f"cont {fmt_pct(fig.get('contention'))} "
                          f"stall {fmt_pct(fig.get('stall_rate'))} "
                          f"ttft p50/p99 {fmt_ms(fig.get('ttft_client_p50_ms'))}/"
                          f"{fmt_ms(fig.get('ttft_client_p99_ms'))} ms "
                          f"rss {fig.get('rss_peak', 0) / 1e6:.1f} MB "
                          f"errors {fig.get('errors')}", flush=True)
            finally:
                server.stop()

    if a.part in ("all", "llama"):
        server_bin = a.llama_server
        if server_bin is None:
            cache = (ROOT / "build/CMakeCache.txt").read_text()
            m = re.search(r"^CHIMERA_LLAMA_SERVER:\w+=(.*)$", cache, re.M)
            server_bin = m.group(1) if m else "llama-server"
        model = Path(a.model)
        if not model.exists():
            subprocess.run([a.cli, "model", "synth", "--preset", "tiny", "--out", str(model)],
                           check=True)
        ns = a.agents or [2, 4, 8, 16]
        # Every layout gets the machine's 2 cores: one server with 2 threads, or two with 1 each.
        layouts = {
            "one server (-np 1)": [(1, 2)],
            "one server (-np 2)": [(2, 2)],
            "two servers (Dual)": [(1, 1), (1, 1)],
        }
        for name, servers in layouts.items():
            ports = [free_port() for _ in servers]
            procs = []
            try:
                for (np_, threads), port in zip(servers, ports):
                    procs.append(Server([server_bin, "-m", str(model), "--port", str(port),
                                         "--host", "127.0.0.1", "-np", str(np_),
                                         "-c", str(1024 * np_), "-t", str(threads),
                                         "--no-warmup", "--cache-ram", "0"],
                                        port, logs / f"llama-{port}.log"))
                eps = []
                for (np_, _), port in zip(servers, ports):
                    eps += ["--endpoint", f"http://127.0.0.1:{port}"]
                for n in ns:
                    fig = run_multi(a.cli, ["--agents", str(n), *eps, "--backend", "openai",
                                            "--max-concurrency", str(servers[0][0]),
                                            "--executor", "single",
                                            "--requests-per-agent", "4", "--max-tokens", "64",
                                            "--temperature", "0"],
                                    dict(env, part="llama", layout=name,
                                         server="llama-server", model=str(model),
                                         model_bytes=model.stat().st_size))
                    results.append(fig)
                    print(f"llama {name:<20} N={n:>2} tps {fig.get('system_tps', 0):.0f} "
                          f"ttft p50/p99 {fmt_ms(fig.get('ttft_client_p50_ms'))}/"
                          f"{fmt_ms(fig.get('ttft_client_p99_ms'))} ms errors {fig.get('errors')}",
                          flush=True)
            finally:
                for p in procs:
                    p.stop()

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    write_table(results, a.table, env)
    print(f"results appended to {a.out}; table in {a.table}")


def write_table(results, path, env):
    lines = [f"Measured {env['date']} on {env['cpu']} ({env['cores']} cores), commit "
             f"{env['git_commit']}, with `python3 bench/multi/bench_multi.py`.", ""]
    synth = [r for r in results if r.get("part") == "synth"]
    if synth:
        lines += ["Against `chimeraforge synth-server` (first token at once; 50 tokens/s and 50 "
                  "tokens per stream, 2 calls per agent, up to 1,000 agents; 5 tokens/s and 10 "
                  "tokens, 1 call, at 10,000; agents' starts spread over one token interval):", "",
                  "| agents | executor | efficiency | contention | stall_rate | ttft p50 ms | "
                  "ttft p99 ms | rss_peak MB | errors |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in synth:
            lines.append(
                f"| {r.get('agents', '?')} | {r.get('executor', '?')} | "
                f"{fmt_pct(r.get('efficiency'))} | {fmt_pct(r.get('contention'))} | "
                f"{fmt_pct(r.get('stall_rate'))} | {fmt_ms(r.get('ttft_client_p50_ms'))} | "
                f"{fmt_ms(r.get('ttft_client_p99_ms'))} | "
                f"{r.get('rss_peak', 0) / 1e6:.1f} | {r.get('errors', r.get('error'))} |")
        lines.append("")
    llama = [r for r in results if r.get("part") == "llama"]
    if llama:
        lines += ["Against real llama-servers (tiny model, 64 tokens per call, 4 calls per agent, "
                  "the machine's 2 cores shared by the servers):", "",
                  "| layout | agents | tokens/s | ttft p50 ms | ttft p99 ms | errors |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in llama:
            lines.append(f"| {r.get('layout')} | {r.get('agents')} | "
                         f"{r.get('system_tps', 0):.0f} | {fmt_ms(r.get('ttft_client_p50_ms'))} | "
                         f"{fmt_ms(r.get('ttft_client_p99_ms'))} | {r.get('errors')} |")
    Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
