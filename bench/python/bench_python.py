#!/usr/bin/python3
"""The hybrid's benchmark: the Python-orchestrated engine against the C++ engine alone and
against pure Python (asyncio + httpx), at 1, 16, 256 and 1,000 agents.

Programs, alternating on the same synthetic server (first token at once, 50 tokens/s per
stream, a pace that does not drop with load, so that only the client can lose time):

  chimeraforge          `chimeraforge multi` (the C++ engine alone, executor single)
  python-engine         bench/python/engine_agents.py --mode result: asyncio agents in Python
                        awaiting engine.chat(); the engine streams and measures each chunk
  python-engine-stream  engine_agents.py --mode stream: every chunk handed to Python
                        (`async for chunk in engine.stream(...)`), figures taken in Python
  python                bench/peers/python/peer.py (asyncio + httpx, the Python peer)

Every program writes the per-request records of docs/records.md; the figures are computed here
by the peers harness's own code (bench/compare/compare.py: run_figures, efficiency,
contention), with each program's own N=1 run of the same repetition as its lone agent, and
rss_peak from wait4 of the child. Every program gets --stagger-ms = one token interval.

  /usr/bin/python3 bench/python/bench_python.py               # 5 repetitions (about 8 min)
  /usr/bin/python3 bench/python/bench_python.py --reps 2 --agents 1 16

Writes bench/results/python.jsonl (environment, one line per program run with every figure,
one summary line per figure and row) and bench/results/python.md (the table).
"""

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("chimeraforge", "python-engine", "python-engine-stream", "python")
LABELS = {"chimeraforge": "C++ engine alone", "python-engine": "Python-orchestrated engine",
          "python-engine-stream": "Python-orchestrated, per-chunk in Python",
          "python": "pure Python (asyncio + httpx)"}


def load_compare():
    path = ROOT / "bench/compare/compare.py"
    spec = importlib.util.spec_from_file_location("chimera_compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


C = load_compare()
sys.path.insert(0, str(ROOT / "bench/common"))
from provenance import Provenance  # noqa: E402


def program_argv(a, program, url, n, k, records):
    common = ["--agents", str(n), "--requests-per-agent", str(k), "--model", "synth",
              "--prompt", a.prompt, "--max-tokens", str(a.tokens), "--records", str(records),
              "--record-lags", "--stagger-ms", f"{a.stagger_ms:g}"]
    if program == "chimeraforge":
        return [a.cli, "multi", "--endpoint", url, "--backend", "ollama", *common,
                "--no-calibrate", "--quiet", "--results", "", "--executor", a.executor]
    if program == "python":
        return [a.python, str(ROOT / "bench/peers/python/peer.py"), "--endpoint", url,
                "--backend", "ollama", *common, "--timeout", str(a.run_timeout)]
    mode = "stream" if program == "python-engine-stream" else "result"
    return [a.python, str(ROOT / "bench/python/engine_agents.py"), "--endpoint", url,
            "--backend", "ollama", *common, "--mode", mode, "--executor", a.executor,
            "--timeout", str(a.run_timeout)]


def run_one(a, program, server, n, k, rep, work, lone):
    records = work / f"n{n}-{program}-r{rep}.jsonl"
    argv = program_argv(a, program, server.url, n, k, records)
    res = C.run_child(argv, a.run_timeout, work / f"n{n}-{program}-r{rep}.out",
                      work / f"n{n}-{program}-r{rep}.err")
    run = {"kind": "run", "program": program, "agents": n, "requests_per_agent": k,
           "rep": rep, "command": shlex.join(argv), "exit_code": res["exit_code"],
           "wall_s": round(res["wall_s"], 3), "failed": False, "error": ""}
    figs = {"rss_peak": res["rss_peak"]}
    error = None
    if res["spawn_error"] or res["timed_out"]:
        error = res["spawn_error"] or f"timed out after {a.run_timeout} s"
    elif not records.exists():
        error = f"wrote no records (exit {res['exit_code']}): " + \
            C.tail(work / f"n{n}-{program}-r{rep}.err")
    else:
        violations = C.check_records_file(records)
        if violations:
            error = "records fail check_records.py: " + "; ".join(violations[:3])
    if error is None:
        _head, recs = C.read_records(records)
        lone_tps, floor = lone.get((program, rep), (None, None))
        figs.update(C.run_figures(recs, n, lone_tps, floor))
        if n == 1:
            floor = C.loopback_floor(recs)
            lone[(program, rep)] = (figs["decode_tps_client"], floor)
            figs["efficiency"] = C.efficiency(figs["system_tps"], 1, figs["decode_tps_client"])
            figs["contention"] = C.contention(recs, floor)
            figs["loopback_floor"] = None if floor is None else floor / 1e6
        if figs["errors"]:
            first = next(r["error"] for r in recs if not r.get("ok"))
            run["error"] = f"{figs['errors']} requests failed; first: {first[:200]}"
    else:
        run["failed"] = True
        run["error"] = error
    run["figures"] = figs
    return run


def mean_sd(values):
    return C.mean_sd(values)


# (key, label, scale, unit, better)
FIGS = [("overhead_ttft_p50", "overhead_ttft p50", 1000, "µs", "lower"),
        ("overhead_ttft_p99", "overhead_ttft p99", 1000, "µs", "lower"),
        ("efficiency", "efficiency", 100, "%", "higher"),
        ("contention", "contention", 100, "%", "lower"),
        ("stall_rate", "stall_rate", 100, "%", "lower"),
        ("delivery_lag_p99", "delivery_lag p99", 1000, "µs", "lower"),
        ("rss_peak", "rss_peak", 1e-6, "MB", "lower")]


def values(runs, program, n, key):
    return {r["rep"]: r["figures"].get(key) for r in runs
            if r["program"] == program and r["agents"] == n and not r["failed"]
            and r["figures"].get(key) is not None}


def ratio(runs, program, base, n, key):
    """Per repetition: program's figure / base's figure (contention: the difference, in
    percentage points, since contention sits near zero and can go negative), mean and sd."""
    a, b = values(runs, program, n, key), values(runs, base, n, key)
    if key == "contention":
        return mean_sd([(a[k] - b[k]) * 100 for k in a if k in b])
    return mean_sd([a[k] / b[k] for k in a if k in b and b[k] not in (0, None)])


def fmt(v, scale, unit):
    if v is None:
        return "n/a"
    x = v * scale
    if unit == "%":
        return f"{x:.2f}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}"


def cell(runs, program, n, key, scale, unit):
    vals = list(values(runs, program, n, key).values())
    if not vals:
        return "failed" if any(r["program"] == program and r["agents"] == n for r in runs) else "n/a"
    m, sd = mean_sd(vals)
    return fmt(m, scale, unit) + (f" ± {fmt(sd, scale, unit)}" if sd is not None else "")


def verdict(key, better, r_engine, r_python_vs_engine, base_value=None):
    """Within 10% of C++ alone, and ahead of pure Python. Contention (compared as differences
    in percentage points): within 10% when the engine's is at most C++'s plus a tenth of it or
    plus 1 point, whichever is larger (near zero a tenth is below the noise)."""
    out = []
    if r_engine is not None:
        if key == "contention":
            allowed = max(1.0, abs(base_value or 0) * 100 * 0.1)
            within = r_engine <= allowed
        else:
            within = r_engine >= 0.9 if better == "higher" else r_engine <= 1.1
        out.append("within 10%" if within else "not within 10%")
    if r_python_vs_engine is not None:
        if key == "contention":
            ahead = r_python_vs_engine > 0
        else:
            ahead = r_python_vs_engine < 1.0 if better == "higher" else r_python_vs_engine > 1.0
        out.append("ahead of Python" if ahead else "not ahead of Python")
    return ", ".join(out) or "n/a"


def fmt_ratio(m_sd, key=""):
    m, sd = m_sd
    if m is None:
        return "n/a"
    if key == "contention":
        return f"{m:+.2f}" + (f" ± {sd:.2f}" if sd is not None else "") + " pp"
    return f"{m:.2f}" + (f" ± {sd:.2f}" if sd is not None else "") + "x"


def write_table(path, a, env, runs):
    lines = ["# The hybrid: Python-orchestrated engine vs C++ engine alone vs pure Python", "",
             f"Measured {env['date']} with `{env['command']}` ({a.reps} repetitions, the four "
             f"programs alternating; harness wall time {env.get('wall_s', 0):.0f} s).", "",
             f"- machine: {env['cpu']}, {env['cores']} cores (shared), load average at start "
             f"{', '.join(f'{x:.2f}' for x in env['loadavg_start'])}, at end "
             f"{', '.join(f'{x:.2f}' for x in env.get('loadavg_end', (0, 0, 0)))}",
             f"- commit {env['git_commit']}; {env['compiler']} ({env['build_type']}); "
             f"executor `{a.executor}` for the C++ engine and the Python-orchestrated one",
             f"- server: `chimeraforge synth-server`, first token at once, {a.rate:g} tokens/s "
             f"per stream, {a.tokens} tokens per request; K = {a.requests} requests per agent "
             f"below 1,000 agents, {a.requests_large} from 1,000; `--stagger-ms "
             f"{a.stagger_ms:g}` (one token interval) for every program",
             f"- Python {platform.python_version()} (`{a.python}`)", "",
             "Each cell: mean ± sample sd over repetitions. Ratios are per repetition (the "
             "programs ran one after the other), then mean ± sd. `engine ÷ C++` is the "
             "Python-orchestrated engine (result mode) over the C++ engine alone; `Python ÷ "
             "engine` is pure Python over the Python-orchestrated engine. For contention, which "
             "sits near zero and can go negative, the two columns are differences in percentage "
             "points instead, and \"within 10%\" means at most a tenth of C++'s contention or "
             "1 point above it, whichever is larger. Verdict: the goal is within 10% of C++ "
             "alone and ahead of pure Python.", ""]
    head = ("| agents | figure | unit | " + " | ".join(LABELS[p] for p in PROGRAMS)
            + " | engine ÷ C++ | Python ÷ engine | verdict |")
    lines += [head, "| ---: | --- | --- | " + " | ".join("---:" for _ in PROGRAMS)
              + " | ---: | ---: | --- |"]
    for n in a.agents:
        for key, label, scale, unit, better in FIGS:
            if key == "efficiency" and n == 1:
                continue  # 1 by construction
            if not any(values(runs, p, n, key) for p in PROGRAMS):
                continue
            re_ = ratio(runs, "python-engine", "chimeraforge", n, key)
            rp = ratio(runs, "python", "python-engine", n, key)
            cells = [cell(runs, p, n, key, scale, unit) for p in PROGRAMS]
            base = mean_sd(list(values(runs, "chimeraforge", n, key).values()))[0]
            lines.append(f"| {n:,} | {label} | {unit} | " + " | ".join(cells) + f" | "
                         f"{fmt_ratio(re_, key)} | {fmt_ratio(rp, key)} | "
                         f"{verdict(key, better, re_[0], rp[0], base)} |")
    failed = [r for r in runs if r["failed"] or r["error"]]
    lines += ["", "## Failures and notes", ""]
    if not failed:
        lines.append("Every run of every program completed, and every request succeeded.")
    for r in failed:
        lines.append(f"- {r['program']}, {r['agents']} agents, repetition {r['rep'] + 1}: "
                     f"{r['error']}")
    lines += ["", "Figures as METRICS.md and docs/records.md define them, computed by "
              "bench/compare/compare.py's code from each program's records; "
              "bench/results/python.jsonl has every run.", ""]
    Path(path).write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--agents", type=int, nargs="+", default=[1, 16, 256, 1000])
    p.add_argument("--programs", nargs="+", choices=PROGRAMS, default=list(PROGRAMS))
    p.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream (50)")
    p.add_argument("--tokens", type=int, default=20, help="tokens per request (20)")
    p.add_argument("--requests", type=int, default=3, help="requests per agent below 1,000 (3)")
    p.add_argument("--requests-large", type=int, default=2,
                   help="requests per agent from 1,000 agents (2)")
    p.add_argument("--stagger-ms", type=float, help="default: one token interval, 1000/rate")
    p.add_argument("--executor", default="single")
    p.add_argument("--prompt", default="Write one line of banter for a tavern keeper.")
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--cli", help="default: BUILD/apps/chimeraforge/chimeraforge")
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--run-timeout", type=float, default=180.0)
    p.add_argument("--out-dir", default=str(ROOT / "bench/results"))
    p.add_argument("--tag", default="python")
    p.add_argument("--keep-records", metavar="DIR")
    a = p.parse_args(argv)
    a.agents = sorted(set(a.agents) | {1})
    if a.stagger_ms is None:
        a.stagger_ms = 1000.0 / a.rate
    build = Path(a.build)
    a.cli = a.cli or str(build / "apps/chimeraforge/chimeraforge")
    if not os.access(a.cli, os.X_OK):
        sys.exit(f"bench_python.py: {a.cli} is missing: build first")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(build / "python")] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x])
    C.install_cleanup()
    cache = C.cmake_cache(build)
    provenance = Provenance(build_dir=build)
    env = {"kind": "environment", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "git_commit": C.git_commit(), "cpu": C.cpu_model(), "cores": os.cpu_count(),
           "os": platform.platform(), "loadavg_start": os.getloadavg(),
           "command": shlex.join([sys.executable] + sys.argv), **C.compiler_info(cache)}
    work = Path(a.keep_records) if a.keep_records else Path(tempfile.mkdtemp(prefix="chimera-pybench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    server = C.start_synth(a.cli, "synth", 0, a.rate, a.tokens, 1, work)
    runs = []
    lone = {}
    try:
        for rep in range(a.reps):
            for n in a.agents:
                k = a.requests_large if n >= 1000 else a.requests
                for program in a.programs:
                    run = run_one(a, program, server, n, k, rep, work, lone)
                    runs.append(run)
                    f = run["figures"]
                    print(f"[rep {rep + 1}] N={n:<5} {program:<21} "
                          + ("FAILED " + run["error"] if run["failed"] else
                             f"overhead p50 {fmt(f.get('overhead_ttft_p50'), 1000, 'µs')} µs  "
                             f"eff {fmt(f.get('efficiency'), 100, '%')}%  "
                             f"cont {fmt(f.get('contention'), 100, '%')}%  "
                             f"rss {fmt(f.get('rss_peak'), 1e-6, 'MB')} MB  "
                             f"wall {run['wall_s']:.2f} s"), flush=True)
    except KeyboardInterrupt:
        print("interrupted; writing what was measured", file=sys.stderr)
    finally:
        server.stop()
        C.stop_all_children()
    env["loadavg_end"] = os.getloadavg()
    env["wall_s"] = time.monotonic() - t0
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = provenance.stamp()
    with open(out / f"{a.tag}.jsonl", "w", encoding="utf-8") as f:
        f.write(json.dumps(dict(env, provenance=stamp)) + "\n")
        for r in runs:
            f.write(json.dumps(dict(r, provenance=stamp)) + "\n")
        for n in a.agents:
            for key, label, scale, unit, better in FIGS:
                for program in a.programs:
                    m, sd = mean_sd(list(values(runs, program, n, key).values()))
                    f.write(json.dumps({
                        "kind": "summary", "agents": n, "program": program, "figure": key,
                        "mean": m, "sd": sd, "unit": "ms" if key != "rss_peak" and unit == "µs"
                        else ("bytes" if key == "rss_peak" else "fraction"),
                        "source": "measured" if key.startswith(("overhead", "delivery", "rss"))
                        else "derived",
                        "ratio_to_chimeraforge": ratio(runs, program, "chimeraforge", n, key)[0],
                        "git_commit": env["git_commit"], "date": env["date"],
                        "provenance": stamp}) + "\n")
    write_table(out / f"{a.tag}.md", a, env, runs)
    if not a.keep_records:
        shutil.rmtree(work, ignore_errors=True)
    print((out / f"{a.tag}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
