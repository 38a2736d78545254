#!/usr/bin/python3
"""The runtime ablation, both sides (the study's TR115): every Rust peer variant and every
chimeraforge executor on the same workload, through the same harness as bench/compare.

  /usr/bin/python3 bench/ablation/ablation.py                      # 3 repetitions, 16 agents
  /usr/bin/python3 bench/ablation/ablation.py --study              # 5 x 5 requests, 16 agents
  /usr/bin/python3 bench/ablation/ablation.py --runs 2 --agents 4 --out /tmp/abl
  /usr/bin/python3 bench/ablation/ablation.py --synth-url http://127.0.0.1:PORT
  bash bench/ablation/run.sh [the same arguments]                  # builds and sets up first

The workload is bench/compare's concurrency row: N agents x K sequential streaming requests
(Ollama protocol) against `chimeraforge synth-server` (first token at once, 50 tokens/s per
stream, 20 tokens), and the lone agent (N = 1) of the same variant and repetition for the
baselines. The variants run one after the other, alternating (A B C ... A B C ...), each
repetition in the same order. Figures (efficiency, contention, scaling, stall_rate, system_tps)
are bench/compare/compare.py's own functions on each program's records (docs/records.md),
which bench/peers/check_records.py validates first.

Writes DIR/ablation.json (documented in docs/ablation.md) and DIR/ablation.md (the TR115-style
table: per variant mean, sd, min and max over repetitions, the study's figures beside). A
variant that cannot run (the Rust peer not built, or built before --runtime existed; a run that
fails) is a row that says why. Exit status 0 when every variant measured, 1 when some could
not, 2 for a usage error or when no variant ran at all.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench/compare"))
import compare as cmp  # noqa: E402  (bench/compare/compare.py: the shared harness)

SCHEMA = 1
EXECUTORS = cmp.EXECUTORS  # single, shared, per-core, thread-per-agent

TR115_SOURCE = ("../shared/seed/000_e50ba627883fb695.txt, section 4.3 \"Runtime Ablation "
                "Study\" (Source: TR115 v2)")
TR115_QUOTES = {
    "tokio": "Tokio (Default): Recommended. Achieved 98.7% efficiency with the highest "
             "consistency (1.21pp std dev).",
    "smol": "Smol (1KB): Viable for embedded scenarios, but showed slightly higher variance.",
    "async-std": "Async-std: Failed. Incompatible with the reqwest HTTP client bridge, leading "
                 "to serialization.",
    "tokio-local": "Tokio (LocalSet): Failed. Thread-pinning caused catastrophic load imbalance "
                   "when processing large context windows.",
}
# What the study reports per runtime, as numbers where it gives them.
TR115_FIGURES = {
    "tokio": {"efficiency": 0.987, "efficiency_sd": 0.0121, "verdict": "recommended"},
    "smol": {"efficiency": None, "efficiency_sd": None, "verdict": "viable, slightly higher "
                                                                   "variance"},
    "async-std": {"efficiency": None, "efficiency_sd": None, "verdict": "failed (serialization "
                                                                        "through the reqwest "
                                                                        "bridge)"},
    "tokio-local": {"efficiency": None, "efficiency_sd": None, "verdict": "failed (load "
                                                                          "imbalance)"},
}


class Variant:
    """One row: a Rust peer runtime/client pairing or a chimeraforge executor."""

    def __init__(self, name, side, runtime, client, flags, study_key=None, note=""):
        self.name, self.side, self.runtime, self.client = name, side, runtime, client
        self.flags, self.study_key, self.note = flags, study_key, note
        self.unavailable = None  # why the variant cannot run, or None

    def to_json(self):
        return {"name": self.name, "side": self.side, "runtime": self.runtime,
                "client": self.client, "flags": self.flags, "note": self.note}


def variants():
    rust = [
        Variant("rust-tokio", "rust", "tokio multi-threaded (#[tokio::main] default, one worker "
                "per core)", "reqwest (one shared Client)",
                ["--runtime", "tokio", "--client", "reqwest"], "tokio",
                "today's Rust peer; the study's recommended runtime"),
        Variant("rust-tokio-local", "rust", "tokio current-thread + LocalSet (spawn_local)",
                "reqwest (one shared Client)", ["--runtime", "tokio-local", "--client", "reqwest"],
                "tokio-local"),
        Variant("rust-smol", "rust", "smol global executor, one thread per core (SMOL_THREADS)",
                "hyper client::conn over smol's async-io sockets, one connection per agent",
                ["--runtime", "smol", "--client", "hyper"], "smol",
                "reqwest cannot run on smol natively; hyper (reqwest's own HTTP layer) can"),
        Variant("rust-async-std", "rust", "async-std global executor, one thread per core",
                "hyper client::conn over async-std's TcpStream, one connection per agent",
                ["--runtime", "async-std", "--client", "hyper"], "async-std",
                "reqwest cannot run on async-std natively; hyper can"),
        Variant("rust-async-std-reqwest", "rust", "async-std global executor, one thread per "
                "core", "reqwest through async-std's tokio1 bridge (a tokio runtime's threads do "
                "the socket I/O)", ["--runtime", "async-std", "--client", "reqwest"],
                "async-std", "the study's pairing for async-std"),
        Variant("rust-smol-reqwest", "rust", "smol global executor, one thread per core",
                "reqwest through a tokio runtime entered on every poll (as async-compat does)",
                ["--runtime", "smol", "--client", "reqwest"], "smol",
                "the same client as rust-tokio, over a bridge"),
        Variant("rust-tokio-hyper", "rust", "tokio multi-threaded (default)",
                "hyper client::conn over tokio's TcpStream, one connection per agent",
                ["--runtime", "tokio", "--client", "hyper"], "tokio",
                "control: separates the client from the runtime in the smol and async-std rows"),
    ]
    ours = [Variant(f"chimeraforge-{e}", "chimeraforge", f"executor {e}",
                    "chimeraforge's HTTP client (one pool)", ["--executor", e],
                    None, EXECUTOR_NOTES[e]) for e in EXECUTORS]
    return rust + ours


EXECUTOR_NOTES = {
    "single": "one thread, one event loop (the counterpart of asyncio)",
    "shared": "one event loop run by every core's thread (the counterpart of tokio "
              "multi-threaded)",
    "per-core": "one loop per core, threads pinned, agent i on loop i mod cores (the "
                "counterpart of a LocalSet per core)",
    "thread-per-agent": "one OS thread per agent blocking on each call, I/O on a shared loop",
}

SUMMARY_FIGURES = ("efficiency", "contention", "scaling", "stall_rate", "system_tps",
                   "delivery_lag_p99", "balance")


# --------------------------------------------------------------------------------------------

def rust_peer_supports_runtime(path):
    """None when the peer has --runtime, else why not."""
    if not os.access(path, os.X_OK):
        return f"the Rust peer is not built ({path}): run bash scripts/setup-peers.sh"
    try:
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the Rust peer ({path}) does not run: {exc}"
    if "--runtime" not in out:
        return (f"the Rust peer ({path}) predates --runtime: rebuild it with bash "
                f"scripts/setup-peers.sh")
    return None


class ExternalSynth:
    """A synthetic server someone else started (--synth-url)."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.argv = []

    def stop(self):
        pass


def synth_options(url):
    try:
        return cmp.http(url + "/stats").get("options", {})
    except (urllib.error.URLError, OSError, ValueError):
        return {}


def argv_for(args, variant, url, agents, records):
    common = ["--endpoint", url, "--backend", "ollama", "--agents", str(agents),
              "--requests-per-agent", str(args.requests_per_agent), "--model", "synth",
              "--prompt", args.prompt, "--max-tokens", str(args.tokens), "--records",
              str(records), "--record-lags"]
    if variant.side == "rust":
        return [args.rust_peer, *common, "--timeout", str(args.run_timeout), *variant.flags]
    return [args.cli, "multi", *common, "--no-calibrate", "--quiet", "--results", "",
            *variant.flags]


def one_run(args, work, variant, url, agents, rep, lone=None):
    """Runs one program once; (run dict, records or None)."""
    stem = f"{variant.name}-n{agents}-r{rep}"
    records = work / f"{stem}.jsonl"
    argv = argv_for(args, variant, url, agents, records)
    res = cmp.run_child(argv, args.run_timeout, work / f"{stem}.out", work / f"{stem}.err")
    run = {"variant": variant.name, "rep": rep, "agents": agents, "command": shlex.join(argv),
           "exit_code": res["exit_code"], "wall_s": round(res["wall_s"], 3), "failed": False,
           "error": "", "figures": {}, "rss_peak": res["rss_peak"]}
    error = None
    if res["spawn_error"]:
        error = f"could not start: {res['spawn_error']}"
    elif res["timed_out"]:
        error = f"timed out after {args.run_timeout:g} s (killed)"
    elif not records.exists():
        error = (f"wrote no records (exit code {res['exit_code']}): "
                 + (cmp.tail(work / f"{stem}.err", 3) or "no output"))
    else:
        violations = cmp.check_records_file(records)
        if violations:
            error = "records fail check_records.py: " + "; ".join(violations[:3])
    recs = None
    if error is None:
        _header, recs = cmp.read_records(records)
        if not any(r.get("ok") for r in recs):
            first = next((r.get("error") for r in recs if r.get("error")), "no records")
            error = f"no request succeeded: {first}"
    if error is None:
        if lone is None:  # the lone agent: its own baselines
            figs = cmp.run_figures(recs, agents)
            floor = cmp.loopback_floor(recs)
            figs["efficiency"] = cmp.efficiency(figs["system_tps"], 1, figs["decode_tps_client"])
            figs["scaling"] = 1.0 if figs["system_tps"] else None
            figs["contention"] = cmp.contention(recs, floor)
            figs["loopback_floor"] = None if floor is None else floor / cmp.NS_PER_MS
            run["baseline"] = {"decode_tps_client": figs["decode_tps_client"],
                               "floor_ns": floor, "system_tps": figs["system_tps"]}
        else:
            figs = cmp.run_figures(recs, agents, lone["decode_tps_client"], lone["floor_ns"],
                                   lone["system_tps"])
        run["figures"] = {k: figs.get(k) for k in (*SUMMARY_FIGURES, "decode_tps_client",
                                                    "loopback_floor", "requests", "errors",
                                                    "tokens")}
        if figs["errors"]:
            first = next(r["error"] for r in recs if not r.get("ok"))
            run["note"] = f"{figs['errors']} of {figs['requests']} requests failed; first: " \
                          f"{first[:300]}"
    else:
        run["failed"] = True
        run["error"] = error
    return run, recs


def spread(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(vals),
            "sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def summarize(variant, runs, args):
    mine = [r for r in runs if r["variant"] == variant.name and r["agents"] == args.agents]
    lone = [r for r in runs if r["variant"] == variant.name and r["agents"] == 1]
    ok = [r for r in mine if not r["failed"]]
    failed = [r for r in mine + lone if r["failed"]]
    out = variant.to_json()
    out["study_key"] = variant.study_key
    if variant.unavailable:
        out["status"], out["reason"] = "not run", variant.unavailable
    elif not ok:
        out["status"] = "failed"
        out["reason"] = failed[0]["error"] if failed else "no run"
    else:
        out["status"] = "ok" if not failed else "partial"
        out["reason"] = "" if not failed else f"{len(failed)} run(s) failed; first: " \
                                              f"{failed[0]['error']}"
    out["figures"] = {k: spread([r["figures"].get(k) for r in ok]) for k in SUMMARY_FIGURES}
    out["failed_runs"] = len(failed)
    out["repetitions"] = len({r["rep"] for r in mine})
    if variant.study_key:
        out["study"] = dict(TR115_FIGURES[variant.study_key],
                            quote=TR115_QUOTES[variant.study_key], source=TR115_SOURCE)
    else:
        out["study"] = None
    return out


# --------------------------------------------------------------------------------------------

def pct(x, digits=2):
    return "n/a" if x is None else f"{x * 100:.{digits}f}"


def cell(s, digits=2):
    if s["n"] == 0:
        return "n/a"
    text = pct(s["mean"], digits)
    if s["sd"] is not None:
        text += f" ± {pct(s['sd'], digits)}"
    return text


def minmax(s, digits=2):
    if s["n"] == 0:
        return "n/a"
    return f"{pct(s['min'], digits)} – {pct(s['max'], digits)}"


def study_cell(v):
    st = v.get("study")
    if not st:
        return "—"
    if st["efficiency"] is not None:
        return f"{st['efficiency'] * 100:.1f}% (sd {st['efficiency_sd'] * 100:.2f} pp)"
    return st["verdict"]


def write_markdown(path, result):
    w, m = result["workload"], result["machine"]
    lines = [
        "# Runtime ablation, both sides (the study's TR115)", "",
        f"Measured {result['date']} with `{result['command']}` ({result['runs']} repetitions, "
        f"the variants alternating; wall time {result['wall_s']:.0f} s).", "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['os']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_end'])} (a shared machine: other work ran "
        f"beside this)",
        f"- commit {result['git_commit']}; {result['chimeraforge']}",
        f"- Rust peer: {result['rust_peer'].get('rustc', 'n/a')}; crates "
        f"{result['rust_peer'].get('crates', 'n/a')}",
        f"- workload: {w['agents']} agents x {w['requests_per_agent']} sequential streaming "
        f"requests of {w['tokens']} tokens (Ollama protocol) against {w['server']} at "
        f"{w['tokens_per_s']} tokens/s per stream, first token after {w['ttft_ms']} ms; the "
        f"lone agent (N = 1) of the same variant and repetition gives each run's baselines", "",
        "Each cell: mean ± sample sd over repetitions (percent; sd in percentage points), and "
        "min – max. `efficiency` = system_tps(N) / (N x the lone agent's decode_tps_client), "
        "as METRICS.md defines it: a client that loses nothing reads about T/(T-1) "
        f"({w['tokens'] / max(1, w['tokens'] - 1) * 100:.1f}% for {w['tokens']} tokens), not "
        "100%. `scaling` = system_tps(N) / (N x system_tps(1)) has no such bias. `contention` "
        "= (sum of every chunk's delivery lag − chunks x the lone agent's median lag) / time "
        "spent in requests: the share of request time tokens waited in the client; near 0 or "
        "negative means none measurable. The study's figures are quoted beside; it gives a "
        "number for tokio only and does not state its workload or its efficiency formula.", "",
        "| variant | runtime | client | efficiency % | efficiency min – max | contention % | "
        "contention min – max | scaling % | stall_rate % | n | TR115 (study) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in result["variants"]:
        f = v["figures"]
        if v["status"] in ("not run", "failed"):
            lines.append(f"| {v['name']} | {v['runtime']} | {v['client']} | "
                         f"{v['status']}: {v['reason']} | | | | | | 0 | {study_cell(v)} |")
            continue
        n = f"{f['efficiency']['n']}" + (f" ({v['failed_runs']} failed)" if v["failed_runs"]
                                          else "")
        lines.append(
            f"| {v['name']} | {v['runtime']} | {v['client']} | {cell(f['efficiency'])} | "
            f"{minmax(f['efficiency'])} | {cell(f['contention'], 3)} | "
            f"{minmax(f['contention'], 3)} | {cell(f['scaling'])} | {cell(f['stall_rate'], 3)} "
            f"| {n} | {study_cell(v)} |")
    lines += ["", "## The study's words (TR115)", "", f"Source: {TR115_SOURCE}.", ""]
    for key in ("tokio", "smol", "async-std", "tokio-local"):
        lines.append(f"- {TR115_QUOTES[key]}")
    lines += ["", "The study says it evaluated five runtimes and names these four.", "",
              "## Variants", ""]
    for v in result["variants"]:
        lines.append(f"- `{v['name']}`: {v['runtime']}; {v['client']}"
                     + (f". {v['note']}" if v["note"] else "")
                     + (f". Flags: `{' '.join(v['flags'])}`" if v["flags"] else ""))
    problems = [r for r in result["repetitions"] if r["failed"] or r.get("note")]
    lines += ["", "## Failures and notes", ""]
    if not problems and all(v["status"] == "ok" for v in result["variants"]):
        lines.append("Every run of every variant completed, and every request succeeded.")
    for v in result["variants"]:
        if v["status"] == "not run":
            lines.append(f"- `{v['name']}` not run: {v['reason']}")
    for r in problems:
        what = r["error"] if r["failed"] else r["note"]
        lines.append(f"- `{r['variant']}`, N = {r['agents']}, repetition {r['rep'] + 1}: {what}"
                     f" (command: `{r['command']}`)")
    lines += ["", "Figures computed by bench/compare/compare.py's functions from each program's "
              "records (docs/records.md); ablation.json has every run.", ""]
    Path(path).write_text("\n".join(lines))


# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="The runtime ablation, both sides (TR115): every Rust peer runtime variant "
                    "and every chimeraforge executor, alternating, on the same workload against "
                    "the synthetic server; writes DIR/ablation.json and DIR/ablation.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  /usr/bin/python3 bench/ablation/ablation.py\n"
               "  /usr/bin/python3 bench/ablation/ablation.py --study\n"
               "  /usr/bin/python3 bench/ablation/ablation.py --runs 2 --agents 4 --out /tmp/a\n")
    p.add_argument("--runs", type=int, help="repetitions of every variant (default 3; --study 5)")
    p.add_argument("--agents", type=int, default=16, help="concurrent agents N (16)")
    p.add_argument("--study", action="store_true",
                   help="the study-size run: 5 repetitions of 5 requests per agent (unless "
                        "--runs or --requests-per-agent say otherwise); about 4 minutes")
    p.add_argument("--out", default=str(ROOT / "bench/results"),
                   help="where ablation.json and ablation.md go (default bench/results)")
    p.add_argument("--synth-url", help="use this running chimeraforge synth-server (its own "
                                       "rate and first-token delay) instead of starting one")
    p.add_argument("--variants", nargs="+", metavar="NAME",
                   help="only these variants (names as in the table; default all)")
    p.add_argument("--requests-per-agent", type=int,
                   help="sequential requests per agent (3; --study 5)")
    p.add_argument("--tokens", type=int, default=20, help="tokens per request (20)")
    p.add_argument("--rate", type=float, default=50.0,
                   help="tokens/s per stream of the synthetic server started here (50)")
    p.add_argument("--prompt", default="Write one line of banter for a tavern keeper.")
    p.add_argument("--run-timeout", type=float, default=120.0,
                   help="seconds one program run may take before it is killed (120)")
    p.add_argument("--cli", default=os.environ.get("CHIMERA_CLI") or
                   str(ROOT / "build/apps/chimeraforge/chimeraforge"),
                   help="the chimeraforge binary (default $CHIMERA_CLI, else "
                        "build/apps/chimeraforge/chimeraforge)")
    p.add_argument("--rust-peer", default=str(ROOT / "bench/peers/rust/target/release/rust-peer"))
    p.add_argument("--keep-records", metavar="DIR",
                   help="keep every records file and log in DIR (default: a temporary folder)")
    a = p.parse_args(argv)
    if a.runs is None:
        a.runs = 5 if a.study else 3
    if a.requests_per_agent is None:
        a.requests_per_agent = 5 if a.study else 3
    if a.runs < 1 or a.agents < 2 or a.requests_per_agent < 1 or a.tokens < 2:
        p.error("--runs and --requests-per-agent must be at least 1, --agents and --tokens at "
                "least 2")
    known = [v.name for v in variants()]
    for name in a.variants or []:
        if name not in known:
            p.error(f"--variants: unknown variant '{name}' (known: {', '.join(known)})")
    return a


def main(argv=None):
    args = parse_args(argv)
    if not os.access(args.cli, os.X_OK):
        print(f"ablation.py: {args.cli} is missing: build first (bash scripts/build.sh) or "
              f"pass --cli", file=sys.stderr)
        return 2
    cmp.install_cleanup()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.keep_records) if args.keep_records else \
        Path(tempfile.mkdtemp(prefix="chimera-ablation-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = [v for v in variants() if not args.variants or v.name in args.variants]
    why = rust_peer_supports_runtime(args.rust_peer)
    for v in rows:
        if v.side == "rust" and why:
            v.unavailable = why
    command = shlex.join([sys.executable, str(Path(sys.argv[0]))] + (
        sys.argv[1:] if argv is None else list(argv)))
    t0 = time.monotonic()
    loadavg_start = os.getloadavg()
    if args.synth_url:
        server = ExternalSynth(args.synth_url)
        try:
            cmp.http(server.url + "/health")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            print(f"ablation.py: --synth-url {args.synth_url}: no synthetic server answers "
                  f"there ({exc})", file=sys.stderr)
            return 2
    else:
        server = cmp.start_synth(args.cli, "synth", 0, args.rate, args.tokens, 1, work)
    opts = synth_options(server.url)
    runs = []
    interrupted = False
    try:
        for rep in range(args.runs):
            for v in rows:
                if v.unavailable:
                    continue
                lone_run, _ = one_run(args, work, v, server.url, 1, rep)
                runs.append(lone_run)
                lone = lone_run.get("baseline")
                if lone is None:
                    runs.append({"variant": v.name, "rep": rep, "agents": args.agents,
                                 "command": "", "failed": True, "figures": {},
                                 "error": f"the lone agent's run failed: {lone_run['error']}"})
                    print(f"[rep {rep + 1}] {v.name:<26} FAILED (lone agent): "
                          f"{lone_run['error']}", flush=True)
                    continue
                run, _ = one_run(args, work, v, server.url, args.agents, rep, lone)
                runs.append(run)
                f = run["figures"]
                if run["failed"]:
                    print(f"[rep {rep + 1}] {v.name:<26} FAILED: {run['error']}", flush=True)
                else:
                    print(f"[rep {rep + 1}] {v.name:<26} eff {pct(f['efficiency'])}%  "
                          f"cont {pct(f['contention'], 3)}%  scaling {pct(f['scaling'])}%  "
                          f"wall {run['wall_s']:.2f} s", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("ablation.py: interrupted; writing what was measured", file=sys.stderr)
    finally:
        server.stop()
        cmp.stop_all_children()
    rust_env = {}
    for path in sorted(work.glob("rust-*-n1-r0.jsonl")):
        try:
            header, _ = cmp.read_records(path)
            rust_env = (header or {}).get("env", {})
            break
        except (OSError, ValueError):
            pass
    result = {
        "kind": "ablation", "schema": SCHEMA, "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git_commit": cmp.git_commit(),
        "chimeraforge": cmp.command_output([args.cli, "--version"]) or "unknown",
        "rust_peer": {"path": args.rust_peer, "rustc": rust_env.get("rustc"),
                      "crates": rust_env.get("crates")},
        "machine": {"cpu": cmp.cpu_model(), "cores": os.cpu_count(), "os": platform.platform(),
                    "loadavg_start": loadavg_start, "loadavg_end": os.getloadavg()},
        "wall_s": time.monotonic() - t0, "interrupted": interrupted, "runs": args.runs,
        "workload": {"agents": args.agents, "requests_per_agent": args.requests_per_agent,
                     "tokens": args.tokens, "backend": "ollama",
                     "tokens_per_s": opts.get("tokens_per_s", args.rate if not args.synth_url
                                              else None),
                     "ttft_ms": opts.get("ttft_ms", 0 if not args.synth_url else None),
                     "server": (f"the synthetic server at {args.synth_url}" if args.synth_url
                                else "chimeraforge synth-server started here"),
                     "synth_url": args.synth_url},
        "definitions": {k: {"unit": u, "source": s, "formula": d}
                        for k, (u, s, d) in cmp.FIGURES.items()
                        if k in (*SUMMARY_FIGURES, "delivery_lag", "loopback_floor")},
        "study": {"source": TR115_SOURCE, "quotes": TR115_QUOTES, "figures": TR115_FIGURES},
        "variants": [summarize(v, runs, args) for v in rows],
        "repetitions": runs,
    }
    (out / "ablation.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(out / "ablation.md", result)
    if not args.keep_records:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {out / 'ablation.json'} and {out / 'ablation.md'} "
          f"({result['wall_s']:.0f} s)\n")
    print((out / "ablation.md").read_text())
    if interrupted:
        return 130
    statuses = [v["status"] for v in result["variants"]]
    if all(s in ("not run", "failed") for s in statuses):
        return 2
    return 0 if all(s == "ok" for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
