#!/usr/bin/python3
"""The concurrency benchmark: `chimeraforge multi` on every executor at N = 1 to 10,000 agents
against the synthetic server, and real llama-servers one vs two ("Dual") vs one with -np 2.

Writes one JSON line per run to bench/results/multi.jsonl (the figures, their sources, the
exact command and the provenance of bench/common/provenance.py) and a Markdown table, mean ±
sample sd over --reps repetitions of every cell, to bench/results/multi.md. Repetitions
alternate the executors (rep 1: single, shared, ...; rep 2: single, shared, ...).

  python3 bench/multi/bench_multi.py                  # everything, 3 repetitions
  python3 bench/multi/bench_multi.py --part synth --agents 1 16 256
  python3 bench/multi/bench_multi.py --part llama --agents 2 4 8 16

Stdlib only. Needs a built tree (bash scripts/build.sh).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench/common"))
from provenance import Provenance  # noqa: E402

EXECUTORS = ["single", "shared", "per-core", "thread-per-agent"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


RUN_TIMEOUT_S = 600.0  # one `multi` run; a stuck one becomes a failed run, not a stuck harness


def run_multi(cli, args, env_note, provenance):
    argv = [cli, "multi", "--json", "--quiet", "--results", ""] + args
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        p = subprocess.CompletedProcess(argv, None, "",
                                        f"killed after {RUN_TIMEOUT_S:.0f} s: {e.stderr or ''}")
    except OSError as e:
        p = subprocess.CompletedProcess(argv, None, "", f"cannot run {cli}: {e}")
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
    fig["provenance"] = provenance.stamp()
    return fig


def fmt_pct(v):
    return "n/a" if v is None else f"{v * 100:.3f}%"


def fmt_ms(v):
    return "n/a" if v is None else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"),
                    help="build directory whose chimeraforge and llama-server run")
    ap.add_argument("--cli", default=None, help="chimeraforge binary (default: in --build)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every cell")
    ap.add_argument("--part", choices=["all", "synth", "llama"], default="all")
    ap.add_argument("--agents", type=int, nargs="+", default=None)
    ap.add_argument("--executors", nargs="+", default=EXECUTORS)
    ap.add_argument("--out", default=str(ROOT / "bench/results/multi.jsonl"))
    ap.add_argument("--table", default=str(ROOT / "bench/results/multi.md"))
    ap.add_argument("--llama-server", default=None, help="llama-server binary")
    ap.add_argument("--model", default=None,
                    help="GGUF (default: test-models/tiny.gguf in --build)")
    a = ap.parse_args()
    a.cli = a.cli or str(Path(a.build) / "apps/chimeraforge/chimeraforge")
    a.model = a.model or str(Path(a.build) / "test-models/tiny.gguf")
    if not os.access(a.cli, os.X_OK):
        sys.exit(f"{a.cli} is missing: build first (bash scripts/build.sh)")
    if a.reps < 1:
        sys.exit("--reps must be at least 1")

    provenance = Provenance(build_dir=a.build)
    # Run a private copy: a rebuild of the tree during the benchmark must not swap the binary
    # under it (the provenance's commit is the tree's at this moment too).
    private = Path(tempfile.mkdtemp(prefix="chimera-bench-multi-"))
    a.cli = str(shutil.copy2(a.cli, private / "chimeraforge"))
    env = {"date": time.strftime("%Y-%m-%d"), "reps": a.reps}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    out = open(a.out, "a", encoding="utf-8")
    results = []

    def keep(fig):
        """Each run's record is appended as soon as it is made: an interrupted or failed
        benchmark keeps what it measured."""
        results.append(fig)
        out.write(json.dumps(fig) + "\n")
        out.flush()

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
                for rep, ex in [(rep, ex) for rep in range(a.reps) for ex in a.executors]:
                    fig = run_multi(a.cli, ["--agents", str(n), "--endpoint",
                                            f"http://127.0.0.1:{port}", "--backend", "ollama",
                                            "--model", "synth", "--executor", ex,
                                            "--requests-per-agent", str(k),
                                            "--max-tokens", str(tokens),
                                            # starts spread over one token interval
                                            "--stagger-ms", str(1000 / rate)],
                                    dict(env, part="synth", server="chimeraforge synth-server",
                                         tokens_per_s=rate, tokens=tokens, rep=rep),
                                    provenance)
                    keep(fig)
                    print(f"synth N={n:>5} {ex:<17} rep {rep + 1} eff {fmt_pct(fig.get('efficiency'))} "
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
            cache = (Path(a.build) / "CMakeCache.txt").read_text()
            m = re.search(r"^CHIMERA_LLAMA_SERVER:\w+=(.*)$", cache, re.M)
            server_bin = m.group(1) if m else "llama-server"
        model = Path(a.model)
        if not model.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([a.cli, "model", "synth", "--preset", "tiny", "--out", str(model)],
                           check=True)
        provenance.set_model(model)
        provenance.server = f"{server_bin} (layouts below), --cache-ram 0"
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
                for n, rep in [(n, rep) for rep in range(a.reps) for n in ns]:
                    fig = run_multi(a.cli, ["--agents", str(n), *eps, "--backend", "openai",
                                            "--max-concurrency", str(servers[0][0]),
                                            "--executor", "single",
                                            "--requests-per-agent", "4", "--max-tokens", "64",
                                            "--temperature", "0"],
                                    dict(env, part="llama", layout=name,
                                         server="llama-server", model=str(model),
                                         model_bytes=model.stat().st_size, rep=rep),
                                    provenance)
                    keep(fig)
                    print(f"llama {name:<20} N={n:>2} rep {rep + 1} tps {fig.get('system_tps', 0):.0f} "
                          f"ttft p50/p99 {fmt_ms(fig.get('ttft_client_p50_ms'))}/"
                          f"{fmt_ms(fig.get('ttft_client_p99_ms'))} ms errors {fig.get('errors')}",
                          flush=True)
            finally:
                for p in procs:
                    p.stop()

    out.close()
    shutil.rmtree(private, ignore_errors=True)
    # The table shows both parts: a part not run now comes from its last run in the file.
    for part in {"synth", "llama"} - {r.get("part") for r in results}:
        results += last_run_of(a.out, part)
    write_table(results, a.table, provenance)
    print(f"results appended to {a.out}; table in {a.table}")


def last_run_of(path, part):
    """The records of the last run of `part` in the results file (one provenance start)."""
    try:
        records = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError):
        return []
    records = [r for r in records if r.get("part") == part]
    if not records:
        return []
    started = (records[-1].get("provenance") or {}).get("started")
    return [r for r in records if (r.get("provenance") or {}).get("started") == started]


def mean_sd(values):
    """Mean and sample sd of the values that are not None; (None, None) when none are."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def cells(results, key_fields):
    """Runs grouped by key_fields, in first-seen order."""
    out = {}
    for r in results:
        out.setdefault(tuple(r.get(k) for k in key_fields), []).append(r)
    return out


def fmt_cell(runs, key, scale=1.0, digits=2, suffix=""):
    m, sd = mean_sd([None if r.get(key) is None else r[key] * scale for r in runs])
    if m is None:
        return "n/a"
    return f"{m:.{digits}f}{suffix}" + ("" if sd is None else f" ± {sd:.{digits}f}{suffix}")


def write_table(results, path, provenance):
    runs = {}  # one line per harness run the rows come from
    legacy = [r for r in results if not r.get("provenance")]
    for r in results:
        if r.get("provenance"):
            runs.setdefault(r["provenance"]["started"], []).append(r["provenance"])
    lines = []
    if legacy:
        lines.append(f"Rows of parts {sorted({r.get('part') for r in legacy})}: legacy records "
                     f"without provenance (commit {legacy[0].get('git_commit', 'unknown')} as "
                     f"recorded, {legacy[0].get('date', 'no date')}), one run per cell.")
    for started, stamps in runs.items():
        p, last = stamps[0], stamps[-1]
        state = p["git"]["commit"][:12] + (" (dirty tree)" if p["git"]["dirty"] else "")
        lines.append(f"Measured {started} on {p['machine']['cpu']} ({p['machine']['cores']} "
                     f"cores), commit {state}, load average {p['loadavg_before'][0]:.2f} before "
                     f"and {last['loadavg_after'][0]:.2f} after, with `{p['command']}`.")
    reps = max((r.get("rep", 0) + 1 for r in results), default=0)
    lines += ["", f"Mean ± sample sd over each cell's repetitions (up to {reps}; a cell of one "
                  "run shows no spread).", ""]
    synth = [r for r in results if r.get("part") == "synth"]
    if synth:
        lines += ["Against `chimeraforge synth-server` (first token at once; 50 tokens/s and 50 "
                  "tokens per stream, 2 calls per agent, up to 1,000 agents; 5 tokens/s and 10 "
                  "tokens, 1 call, at 10,000; agents' starts spread over one token interval):", "",
                  "| agents | executor | efficiency % | contention % | stall_rate % | "
                  "ttft p50 ms | ttft p99 ms | rss_peak MB | errors |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for (n, ex), runs in cells(synth, ("agents", "executor")).items():
            errors = sum(r.get("errors") or 0 for r in runs)
            failed = sum(1 for r in runs if r.get("exit_code") != 0)
            lines.append(
                f"| {n} | {ex} | {fmt_cell(runs, 'efficiency', 100, 1)} | "
                f"{fmt_cell(runs, 'contention', 100, 2)} | {fmt_cell(runs, 'stall_rate', 100, 1)} | "
                f"{fmt_cell(runs, 'ttft_client_p50_ms')} | {fmt_cell(runs, 'ttft_client_p99_ms', 1, 1)} | "
                f"{fmt_cell(runs, 'rss_peak', 1e-6, 1)} | {errors}"
                + (f" ({failed} runs failed)" if failed else "") + " |")
        lines.append("")
    llama = [r for r in results if r.get("part") == "llama"]
    if llama:
        lines += ["Against real llama-servers (tiny model, 64 tokens per call, 4 calls per agent, "
                  "the machine's 2 cores shared by the servers):", "",
                  "| layout | agents | tokens/s | ttft p50 ms | ttft p99 ms | errors |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        ordered = sorted(cells(llama, ("layout", "agents")).items(),
                         key=lambda kv: (list(dict.fromkeys(r["layout"] for r in llama))
                                         .index(kv[0][0]), kv[0][1]))
        for (layout, n), runs in ordered:
            lines.append(f"| {layout} | {n} | {fmt_cell(runs, 'system_tps', 1, 0)} | "
                         f"{fmt_cell(runs, 'ttft_client_p50_ms')} | "
                         f"{fmt_cell(runs, 'ttft_client_p99_ms', 1, 1)} | "
                         f"{sum(r.get('errors') or 0 for r in runs)} |")
    Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
