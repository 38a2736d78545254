#!/usr/bin/python3
"""Side-by-side comparison: chimeraforge, the Python peer and the Rust peer, measured one way.

One command runs the three programs alternately (A B C A B C ...) on the same servers and the
same machine, reads the per-request records each writes (docs/records.md), and computes every
figure of METRICS.md itself, with one implementation for all three:

  single agent    synthetic server and llama-server (tiny model): overhead_ttft, ttft_client,
                  decode_tps_client against the server's own rate, e2e
  process         rss_peak (ru_maxrss from wait4 of each child) at 1 agent and at the largest N;
                  startup (harness t0 before spawning -> the server's first_request_ns)
  concurrency     efficiency, contention, stall_rate (and scaling, balance, system_tps) at
                  N = 1, 2, 16, 256, 1,000 against the synthetic server (first token at once,
                  50 tokens/s per stream)

  /usr/bin/python3 bench/compare/compare.py            # the full comparison (5 repetitions)
  /usr/bin/python3 bench/compare/compare.py --quick    # a smoke run: 2 repetitions, small N
  /usr/bin/python3 bench/compare/compare.py --pin off  # unpinned rows only (half the time)
  bash bench/compare/run.sh                            # build and set up first, then the above

Writes bench/results/compare.jsonl (JSON lines: the environment, one line per program run with
every figure, its unit and its source, and one summary line per figure), bench/results/compare.md
(the table: mean +- sample sd over repetitions and each peer's ratio to chimeraforge) and PNG
plots in bench/results/plots/. --quick writes compare-quick.* and plots/compare-quick/ instead,
so a smoke run never replaces a full one.

Pinned and unpinned (--pin both, the default): every row but llama-server's runs twice per
repetition, first unpinned, then pinned: the synthetic servers on CPU 0 and the program under
test (and the harness) on the other CPUs, so that at 256 and 1,000 agents the figures measure
the client rather than two processes sharing two cores. Pinned rows are named "<row>-pinned".

Standard library only, plus matplotlib (Debian's python3-matplotlib) for the plots; without it
the plots are skipped and said so. Run it with /usr/bin/python3.
"""

import argparse
import atexit
import importlib.util
import json
import math
import os
import platform
import re
import select
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench/common"))
from provenance import (Provenance, build_dir_of, cmake_cache, cpu_model,  # noqa: E402
                        git_state)
PROGRAMS = ("chimeraforge", "python", "rust")
# bench/compare/floor/stream_floor.c: the least a client can do on the synthetic server's rows
# (one thread, one read per readiness, no JSON parsing), run only when named in --programs. What
# it shows is the machine's share of a figure; what a program shows above it is its own.
FLOOR = "floor"
PINNED = "-pinned"  # suffix of the rows measured with --pin's layout
EXECUTORS = ("single", "shared", "per-core", "thread-per-agent")
STALL_NS = 1_000_000  # docs/records.md: a chunk whose delivery_lag exceeds 1 ms is a stall
NS_PER_MS = 1e6

# Every figure the harness stores: unit, source (METRICS.md: measured, server or derived) and
# how it is computed. Distribution figures get _p50, _p90, _p99 and _max suffixes.
FIGURES = {
    "ttft_client": ("ms", "measured", "t_first_token_ns - t_send_ns, per request"),
    "overhead_ttft": ("ms", "measured", "t_first_token_ns - first_byte_server_ns, per request"),
    "e2e": ("ms", "measured", "t_done_ns - t_send_ns, per request"),
    "delivery_lag": ("ms", "measured", "callback time - server_sent_ns, per chunk (lags_ns)"),
    "decode_tps_client": ("tokens/s", "measured",
                          "(tokens_out - 1) / (t_last_token_ns - t_first_token_ns) * 1e9, "
                          "median over the run's requests"),
    "system_tps": ("tokens/s", "derived",
                   "sum tokens_out / (max t_last_token_ns - min t_send_ns) * 1e9"),
    "efficiency": ("fraction", "derived",
                   "system_tps(N) / (N * decode_tps_client of the N=1 run, same program and "
                   "repetition)"),
    "scaling": ("fraction", "derived",
                "system_tps(N) / (N * system_tps of the N=1 run, same program and repetition): "
                "efficiency without its tokens/(tokens-1) bias"),
    "loopback_floor": ("ms", "derived", "median of the N=1 run's lags_ns (same program and "
                                        "repetition)"),
    "contention": ("fraction", "derived",
                   "(sum lag_sum_ns - sum chunks * loopback_floor) / sum (t_done_ns - t_send_ns)"),
    "stall_rate": ("fraction", "derived", "sum stalls / sum chunks"),
    "balance": ("fraction", "derived",
                "sum agent durations / (N * max agent duration); duration = last t_done_ns - "
                "first t_send_ns"),
    "start_spread": ("ms", "measured",
                     "max - min over agents of each agent's first t_send_ns: the time over "
                     "which the agents' first requests went out"),
    "server_lateness": ("fraction", "server",
                        "the synthetic server's /stats lateness_ns_sum (how far behind its own "
                        "schedule it wrote each token chunk, no client work in it) / sum "
                        "(t_done_ns - t_send_ns): contention's counterpart for the server"),
    "server_late_rate": ("fraction", "server",
                         "the synthetic server's /stats tokens_late / tokens_sent: token chunks "
                         "it wrote more than 1 ms after their time, stall_rate's counterpart"),
    "requests": ("count", "measured", "records in the file"),
    "errors": ("count", "measured", "records with ok=false"),
    "tokens": ("count", "server", "sum of server-reported tokens_out over ok records"),
    "rss_peak": ("bytes", "measured", "ru_maxrss of the child from os.wait4 (peak resident set)"),
    "startup": ("ms", "measured", "synth-server first_request_ns - harness t0 (monotonic_ns "
                                  "right before spawning)"),
    "decode_tps_server": ("tokens/s", "server", "the server's own rate"),
    "ttft_server": ("ms", "server", "the server's own time before the first token"),
    "wall": ("s", "measured", "process wall time: spawn to exit"),
}
DIST = ("p50", "p90", "p99", "max")


# --------------------------------------------------------------------------------------------
# Figures from records (docs/records.md, "How the harness computes the figures")
# --------------------------------------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below
    it (p in (0, 100]). None for no values."""
    if not values:
        return None
    s = sorted(values)
    rank = math.ceil(round(p * len(s) / 100.0, 9))
    return s[min(max(rank, 1), len(s)) - 1]


def mean_sd(values):
    """Mean and sample standard deviation (None when fewer than two values)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    return m, sd


def read_records(path):
    """(header, records) of a records file: the header line, then one object per request."""
    header, records = None, []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            obj = json.loads(line)
            if i == 0 and obj.get("kind") == "header":
                header = obj
            else:
                records.append(obj)
    return header, records


def request_figures(r):
    """The per-request figures of one ok record, in ns (decode_tps_client in tokens/s); None
    where the record cannot give one."""
    out = {"ttft_client": None, "overhead_ttft": None, "decode_tps_client": None, "e2e": None}
    if not r.get("ok"):
        return out
    t_send, t_first = r["t_send_ns"], r.get("t_first_token_ns")
    t_last, t_done = r.get("t_last_token_ns"), r["t_done_ns"]
    first_byte, tokens = r.get("first_byte_server_ns"), r.get("tokens_out")
    out["e2e"] = t_done - t_send
    if t_first is not None:
        out["ttft_client"] = t_first - t_send
        if first_byte is not None:
            out["overhead_ttft"] = t_first - first_byte
    if tokens is not None and tokens >= 2 and t_first is not None and t_last is not None \
            and t_last > t_first:
        out["decode_tps_client"] = (tokens - 1) / (t_last - t_first) * 1e9
    return out


def system_tps(records):
    """All tokens delivered (server-reported counts) / (last token - first send) * 1e9."""
    sends = [r["t_send_ns"] for r in records]
    lasts = [r["t_last_token_ns"] for r in records if r.get("t_last_token_ns") is not None]
    tokens = sum(r["tokens_out"] for r in records if r.get("tokens_out") is not None)
    if not sends or not lasts or max(lasts) <= min(sends):
        return None
    return tokens / (max(lasts) - min(sends)) * 1e9


def with_server_times(records):
    """The records whose chunks carry the server's send times (synthetic server only)."""
    return [r for r in records if r.get("first_byte_server_ns") is not None]


def stall_rate(records):
    rs = with_server_times(records)
    chunks = sum(r["chunks"] for r in rs)
    return sum(r["stalls"] for r in rs) / chunks if chunks else None


def all_lags(records):
    return [lag for r in records for lag in (r.get("lags_ns") or [])]


def loopback_floor(lone_records):
    """The median delivery_lag of a lone agent (ns), from its lags_ns."""
    return percentile(all_lags(lone_records), 50)


def contention(records, floor_ns):
    """(sum lag_sum_ns - sum chunks * floor) / sum (t_done_ns - t_send_ns)."""
    rs = with_server_times(records)
    if floor_ns is None or not rs:
        return None
    busy = sum(r["t_done_ns"] - r["t_send_ns"] for r in rs)
    if busy <= 0:
        return None
    waiting = sum(r["lag_sum_ns"] for r in rs) - sum(r["chunks"] for r in rs) * floor_ns
    return waiting / busy


def first_sends(records):
    """{agent: the t_send_ns of its first request}."""
    first = {}
    for r in records:
        a = r["agent"]
        first[a] = min(first.get(a, r["t_send_ns"]), r["t_send_ns"])
    return first


def balance(records, agents=None):
    """sum agent durations / (N * max agent duration); how evenly agents finish."""
    first, last = first_sends(records), {}
    for r in records:
        a = r["agent"]
        last[a] = max(last.get(a, r["t_done_ns"]), r["t_done_ns"])
    durations = [last[a] - first[a] for a in first]
    n = agents or len(durations)
    if not durations or max(durations) <= 0:
        return None
    return sum(durations) / (n * max(durations))


def start_spread(records):
    """How far apart the agents' first requests went out (ns): a program that sends one agent's
    request long before the others' has `efficiency` count the gap against its whole run."""
    first = first_sends(records)
    return max(first.values()) - min(first.values()) if len(first) > 1 else None


def server_timeliness(stats, records):
    """server_lateness and server_late_rate of a run from the synthetic server's /stats, reset
    just before the run: how late the server itself was, which no client can make up."""
    out = {"server_lateness": None, "server_late_rate": None}
    if not stats or "lateness_ns_sum" not in stats:
        return out  # a synthetic server without the timeliness counters
    busy = sum(r["t_done_ns"] - r["t_send_ns"] for r in with_server_times(records))
    if busy > 0:
        out["server_lateness"] = stats["lateness_ns_sum"] / busy
    if stats.get("tokens_sent"):
        out["server_late_rate"] = stats["tokens_late"] / stats["tokens_sent"]
    return out


def synth_stats(server, reset=False):
    """The synthetic server's /stats (with reset: POST /stats/reset) as (JSON, None), or
    (None, what failed)."""
    path, data, what = (("/stats/reset", b"", "POST /stats/reset") if reset else
                        ("/stats", None, "GET /stats"))
    try:
        return http(server.url + path, data=data), None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"{what} failed: {exc}"


def efficiency(sys_tps, agents, lone_decode_tps):
    if sys_tps is None or not lone_decode_tps or not agents:
        return None
    return sys_tps / (agents * lone_decode_tps)


def run_figures(records, agents=None, lone_decode_tps=None, floor_ns=None, lone_system_tps=None):
    """Every records-based figure of one run, as {name: value}: times in ms, rates in
    tokens/s, shares as fractions. lone_decode_tps, floor_ns and lone_system_tps come from the
    N=1 run of the same program and repetition (efficiency, contention and scaling need
    them)."""
    ok = [r for r in records if r.get("ok")]
    per = [request_figures(r) for r in ok]
    out = {"requests": len(records), "errors": len(records) - len(ok),
           "tokens": sum(r["tokens_out"] for r in ok if r.get("tokens_out") is not None)}
    for name in ("ttft_client", "overhead_ttft", "e2e"):
        vals = [p[name] for p in per if p[name] is not None]
        for q, pct in zip(DIST, (50, 90, 99, 100)):
            v = percentile(vals, pct)
            out[f"{name}_{q}"] = None if v is None else v / NS_PER_MS
    lags = all_lags(records)
    for q, pct in zip(DIST, (50, 90, 99, 100)):
        v = percentile(lags, pct)
        out[f"delivery_lag_{q}"] = None if v is None else v / NS_PER_MS
    out["decode_tps_client"] = percentile(
        [p["decode_tps_client"] for p in per if p["decode_tps_client"] is not None], 50)
    out["system_tps"] = system_tps(records)
    out["stall_rate"] = stall_rate(records)
    out["balance"] = balance(records, agents)
    spread = start_spread(records)
    out["start_spread"] = None if spread is None else spread / NS_PER_MS
    out["efficiency"] = efficiency(out["system_tps"], agents, lone_decode_tps)
    out["scaling"] = efficiency(out["system_tps"], agents, lone_system_tps)
    out["contention"] = contention(records, floor_ns)
    out["loopback_floor"] = None if floor_ns is None else floor_ns / NS_PER_MS
    return out


def figure_meta(key):
    """(unit, source, formula) of a stored figure key such as ttft_client_p99."""
    base = key
    for q in DIST:
        if key.endswith("_" + q) and key[:-len(q) - 1] in FIGURES:
            base = key[:-len(q) - 1]
    return FIGURES.get(base, ("", "derived", ""))


def labelled(figs, overrides=None):
    """{name: {"value", "unit", "source"}} for the results file (formulas are in the summary
    lines and the environment line, once)."""
    out = {}
    for key, value in figs.items():
        unit, source, _ = figure_meta(key)
        entry = {"value": value, "unit": unit, "source": source}
        if overrides and key in overrides:
            entry.update(overrides[key])
        out[key] = entry
    return out


# --------------------------------------------------------------------------------------------
# Child processes: every one is registered, and stopped on exit and on Ctrl-C
# --------------------------------------------------------------------------------------------

_CHILDREN = {}  # pid -> Popen


def _signal_group(proc, sig):
    try:
        os.killpg(getattr(proc, "pgid", proc.pid), sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def stop_child(proc, grace_s=3.0):
    """SIGTERM to the child's process group, SIGKILL after grace_s; reaps it."""
    if proc.returncode is None and proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    _CHILDREN.pop(proc.pid, None)


def stop_all_children():
    for proc in list(_CHILDREN.values())[::-1]:
        try:
            stop_child(proc)
        except Exception:  # noqa: BLE001 - cleanup must reach every child
            pass


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup():
    atexit.register(stop_all_children)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def spawn(argv, stdout, stderr, cwd=ROOT, stdin=subprocess.DEVNULL):
    """Starts a child in its own session (Ctrl-C reaches only the harness, which stops it)."""
    proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=stdin,
                            cwd=str(cwd), start_new_session=True)
    _CHILDREN[proc.pid] = proc
    return proc


def wait_child(proc, timeout_s):
    """Waits for a child with os.wait4: (exit code, rusage, timed_out). A child still running
    after timeout_s is killed (its whole group) and reported as timed out."""
    deadline = time.monotonic() + timeout_s
    timed_out = False
    pidfd = None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            if pidfd is not None:
                left = deadline - time.monotonic()
                if left > 0:
                    select.select([pidfd], [], [], left)
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            else:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == 0:
                    time.sleep(0.005)
            if pid == proc.pid:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                _signal_group(proc, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
    finally:
        if pidfd is not None:
            os.close(pidfd)
    proc.returncode = os.waitstatus_to_exitcode(status)
    _CHILDREN.pop(proc.pid, None)
    return proc.returncode, usage, timed_out


# Linux keeps a process's peak resident set across execve, and a child made with fork or vfork
# starts from its parent's: ru_maxrss of a program spawned straight from this Python process
# would read at least the harness's own peak (about 25 MB). So the harness makes itself a
# child subreaper and starts each measured program from /bin/sh in the background: the program
# is forked from the small shell, the shell exits at once, the program is handed to the harness,
# and wait4 reports the program's own peak (at least the shell's ~1 MB, below any program here).
# The forked shell waits on a pipe from the harness (the shell's stdin, moved to fd 3 because a
# background job's stdin is /dev/null) before it execs the program, so the program cannot end,
# and be reaped by the shell, before the harness has adopted it.
_WRAPPER = ('pidfile=$1; shift; exec 3<&0; '
            '{ read -r _ <&3 || exit 125; exec 3<&-; exec "$@"; } & echo $! > "$pidfile"')
PR_SET_CHILD_SUBREAPER = 36
_SUBREAPER = None


def become_subreaper():
    global _SUBREAPER
    if _SUBREAPER is None:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            _SUBREAPER = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _SUBREAPER = False
    return _SUBREAPER


class Adopted:
    """A program handed to the harness by the shell that started it (see _WRAPPER): enough of
    Popen's interface for wait_child and stop_child."""

    def __init__(self, pid, pgid):
        self.pid, self.pgid, self.returncode = pid, pgid, None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig):
        os.kill(self.pid, sig)


def run_child(argv, timeout_s, out_path, err_path, own_rss=True):
    """Runs one program to completion: dict with t0_ns (taken right before spawning), exit
    code, rss_peak (bytes, the program's ru_maxrss from wait4), wall_s and timed_out.

    own_rss=False spawns the program directly (for startup, where no shell may come first);
    its rss_peak then includes the harness's and is not reported."""
    wrapped = own_rss and become_subreaper()
    pidfile = Path(str(out_path) + ".pid")
    if wrapped:
        pidfile.unlink(missing_ok=True)
        argv_run = ["/bin/sh", "-c", _WRAPPER, "sh", str(pidfile), *argv]
    else:
        argv_run = list(argv)
    gate_r, gate_w = os.pipe() if wrapped else (subprocess.DEVNULL, None)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic_ns()
        try:
            proc = spawn(argv_run, out, err, stdin=gate_r)
        except OSError as exc:
            if wrapped:
                os.close(gate_r)
                os.close(gate_w)
            return {"t0_ns": t0, "exit_code": None, "rss_peak": None, "wall_s": 0.0,
                    "timed_out": False, "spawn_error": f"{argv_run[0]}: {exc.strerror or exc}"}
    if wrapped:
        os.close(gate_r)
        try:
            code, _usage, _ = wait_child(proc, 30)
            pid = int(pidfile.read_text().strip())
            adopted = Adopted(pid, proc.pid)
            _CHILDREN[pid] = adopted
            os.write(gate_w, b"go\n")  # the shell has exited: the program is ours to reap
        except (OSError, ValueError):
            return {"t0_ns": t0, "exit_code": None, "rss_peak": None, "wall_s": 0.0,
                    "timed_out": False,
                    "spawn_error": f"/bin/sh could not start {argv[0]} (exit code "
                                   f"{proc.returncode})"}
        finally:
            os.close(gate_w)  # without the go line, the waiting shell exits 125
        proc = adopted
    code, usage, timed_out = wait_child(proc, timeout_s - (time.monotonic_ns() - t0) / 1e9)
    t1 = time.monotonic_ns()
    return {"t0_ns": t0, "exit_code": code, "rss_peak": usage.ru_maxrss * 1024 if own_rss else None,
            "wall_s": (t1 - t0) / 1e9, "timed_out": timed_out, "spawn_error": None}


def tail(path, lines=12, limit=2000):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    text = "\n".join(text.rstrip().splitlines()[-lines:])
    return text[-limit:]


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------

def set_affinity(pid, cpus):
    """Pins every thread of a process (threads it starts later inherit the set)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass  # a thread that has just ended


class Pinning:
    """The --pin layout: servers on the first CPU the harness may use, the programs under test
    (spawned by the harness, so they inherit its set) and the harness on the others."""

    def __init__(self):
        self.all = sorted(os.sched_getaffinity(0))
        self.server = set(self.all[:1])
        self.client = set(self.all[1:])
        self.possible = len(self.all) >= 2

    def describe(self):
        cpus = ",".join(str(c) for c in sorted(self.client))
        return f"servers on CPU {self.all[0]}, programs under test on CPU {cpus}"

    def apply(self, servers, pinned):
        for server in servers:
            if server.name == "llama":
                continue  # llama-server's row runs unpinned only (it decodes on many threads)
            set_affinity(server.proc.pid, self.server if pinned else set(self.all))
        os.sched_setaffinity(0, self.client if pinned else set(self.all))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, data=None, timeout=10.0):
    """GET (or POST data) a URL; the body decoded as JSON."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


class Server:
    """A server child process with its log in a file; stopped by stop() or on exit."""

    def __init__(self, name, argv, log_path, ready_timeout_s=60.0, port=None):
        self.name = name
        self.argv = argv
        self.log_path = Path(log_path)
        self.port = port
        self._log = open(self.log_path, "wb")
        self.proc = spawn(argv, self._log, subprocess.STDOUT)
        self._wait_ready(ready_timeout_s)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout_s):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            if self.port is None:
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)",
                              self.log_path.read_text(errors="replace"))
                if m:
                    self.port = int(m.group(1))
            if self.port is not None:
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                        if resp.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not come up ({shlex.join(self.argv)}); "
                           f"its log:\n{tail(self.log_path, 20)}")

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        stop_child(self.proc)
        self._log.close()


def start_synth(cli, name, ttft_ms, rate, tokens, threads, log_dir):
    argv = [cli, "synth-server", "--port", "0", "--ttft-ms", str(ttft_ms),
            "--tokens-per-s", str(rate), "--tokens", str(tokens), "--threads", str(threads)]
    return Server(name, argv, Path(log_dir) / f"{name}.log")


def start_llama(binary, model, threads, log_dir, attempts=3):
    last = None
    for _ in range(attempts):  # a free port can be taken between the probe and the bind
        port = free_port()
        argv = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                "-c", "2048", "-np", "1", "-t", str(threads), "--no-webui", "--cache-ram", "0",
                "--ignore-eos"]
        try:
            return Server("llama-server", argv, Path(log_dir) / "llama-server.log",
                          ready_timeout_s=120.0, port=port)
        except RuntimeError as exc:
            last = exc
    raise last


# llama-server's per-request timing lines (its log; the same numbers as the `timings` object).
_LLAMA_EVAL = re.compile(r"(?<!prompt )eval time =\s*([\d.]+) ms /\s*(\d+) tokens \(\s*[\d.]+ ms "
                         r"per token,\s*([\d.]+) tokens per second\)")
_LLAMA_PROMPT = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")


def llama_timings(log_text):
    """(decode rates in tokens/s, prompt times in ms) that llama-server logged per request."""
    rates = [float(m.group(3)) for m in _LLAMA_EVAL.finditer(log_text)]
    prompts = [float(m.group(1)) for m in _LLAMA_PROMPT.finditer(log_text)]
    return rates, prompts


# --------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------

def command_output(argv, timeout=10):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
        return (p.stdout or p.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit():
    """The commit, "+uncommitted changes" when the tree is dirty (the provenance object has the
    diff's hash too)."""
    git = git_state()
    return git["commit"] + ("+uncommitted changes" if git.get("dirty") else "")


def compiler_info(cache):
    cxx = cache.get("CMAKE_CXX_COMPILER", "")
    version = command_output([cxx, "--version"]).splitlines()[0] if cxx else ""
    build_type = cache.get("CMAKE_BUILD_TYPE", "")
    flags = " ".join(x for x in (cache.get("CMAKE_CXX_FLAGS", ""),
                                 cache.get(f"CMAKE_CXX_FLAGS_{build_type.upper()}", "")) if x)
    return {"compiler": version or cxx or "unknown", "build_type": build_type,
            "flags": flags.strip()}


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
                    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
                    15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K"}


def gguf_file_type(path):
    """The model's weight type from the GGUF metadata key general.file_type ("unknown" if the
    file does not say)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                return "unknown"
            version, = struct.unpack("<I", f.read(4))
            if version < 2:
                return "unknown"
            _tensors, kv_count = struct.unpack("<QQ", f.read(16))

            def read_str():
                n, = struct.unpack("<Q", f.read(8))
                return f.read(n)

            def skip_value(vtype):
                if vtype in _GGUF_SCALARS:
                    f.read(struct.calcsize(_GGUF_SCALARS[vtype]))
                elif vtype == 8:
                    read_str()
                elif vtype == 9:
                    etype, n = struct.unpack("<IQ", f.read(12))
                    if etype in _GGUF_SCALARS:
                        f.seek(n * struct.calcsize(_GGUF_SCALARS[etype]), os.SEEK_CUR)
                    else:
                        for _ in range(n):
                            skip_value(etype)
                else:
                    raise ValueError(vtype)

            for _ in range(kv_count):
                key = read_str()
                vtype, = struct.unpack("<I", f.read(4))
                if key == b"general.file_type" and vtype in _GGUF_SCALARS:
                    value, = struct.unpack(_GGUF_SCALARS[vtype],
                                           f.read(struct.calcsize(_GGUF_SCALARS[vtype])))
                    return _GGUF_FILE_TYPES.get(int(value), f"file_type {value}")
                skip_value(vtype)
    except (OSError, ValueError, struct.error):
        pass
    return "unknown"


def environment(args, cache):
    env = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git_commit": git_commit(),
           "cpu": cpu_model(), "cores": os.cpu_count(), "os": platform.platform(),
           "loadavg_start": os.getloadavg()}
    env.update(compiler_info(cache))
    env["chimeraforge"] = command_output([args.cli, "--version"]) or "unknown"
    env["chimeraforge_measured"] = Path(args.client).name
    env["executor"] = args.executor
    env["busy_poll_us"] = args.busy_poll_us
    env["pin_threads"] = args.pin_threads == "true"
    env["harness_command"] = shlex.join([sys.executable] + sys.argv)
    env["harness_python"] = platform.python_version()
    return env


# --------------------------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------------------------

class Scenario:
    """One row of the comparison: a server, a protocol and a workload."""

    def __init__(self, name, server, backend, model, agents, requests, max_tokens):
        self.name, self.server, self.backend, self.model = name, server, backend, model
        self.agents, self.requests, self.max_tokens = agents, requests, max_tokens


class TlsFront:
    """nginx (Debian's) as a TLS-terminating reverse proxy in front of the harness's servers,
    one https port per server, with a CA and a server certificate for localhost made here by
    the openssl command: every program reaches https://localhost:PORT and verifies the
    certificate against that CA (--ca-file), host name included, as in a real deployment."""

    def __init__(self, work):
        self.dir = Path(work) / "tls"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nginx = next((p for p in ("/usr/sbin/nginx", "/usr/bin/nginx")
                           if os.access(p, os.X_OK)), None)
        self.openssl = shutil.which("openssl")
        if not self.nginx or not self.openssl:
            sys.exit("compare.py --tls: needs nginx and openssl (scripts/setup.sh installs both)")
        self.ca = self.dir / "ca.pem"
        self.ports = {}  # upstream port -> https port
        self.proc = None
        self.argv = []
        d = self.dir
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for argv in (
                [self.openssl, "req", "-x509", *ec, "-keyout", d / "ca.key", "-out", self.ca,
                 "-days", "2", "-subj", "/CN=Chimeraforge bench CA"],
                [self.openssl, "req", *ec, "-keyout", d / "server.key", "-out", d / "server.csr",
                 "-subj", "/CN=localhost"],
                [self.openssl, "x509", "-req", "-in", d / "server.csr", "-CA", self.ca, "-CAkey",
                 d / "ca.key", "-CAcreateserial", "-out", d / "server.pem", "-days", "2",
                 "-extfile", d / "server.ext"]):
            subprocess.run([str(x) for x in argv], check=True, capture_output=True)

    def add(self, upstream_port):
        self.ports[upstream_port] = free_port()
        return f"https://localhost:{self.ports[upstream_port]}"

    def start(self):
        d = self.dir
        # As a reverse proxy for streams is set up: HTTP/1.1 and keep-alive to the upstream,
        # no buffering (each token goes on at once), keep-alive with the clients.
        proxy = ('proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; '
                 'proxy_read_timeout 600s;')
        servers = "".join(
            f"server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {d}/server.pem; "
            f"ssl_certificate_key {d}/server.key; keepalive_requests 100000; "
            f"location / {{ {proxy} proxy_pass http://up{up}; }} }}\n"
            f"upstream up{up} {{ server 127.0.0.1:{up}; keepalive 1024; }}\n"
            for up, port in self.ports.items())
        (d / "nginx.conf").write_text(
            f"daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; "
            f"error_log {d}/error.log warn; worker_rlimit_nofile 65536;\n"
            f"events {{ worker_connections 16384; }}\n"
            f"http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; "
            f"fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n"
            f"{servers}}}\n")
        self.argv = [self.nginx, "-e", str(d / "error.log"), "-p", str(d), "-c",
                     str(d / "nginx.conf")]
        with open(d / "nginx.out", "wb") as log:  # the child keeps its own descriptor
            self.proc = spawn(self.argv, log, log)
        end = time.monotonic() + 10
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > end or self.proc.poll() is not None:
                        sys.exit(f"compare.py --tls: nginx did not start; see {d}/error.log")
                    time.sleep(0.05)

    def describe(self):
        version = command_output([self.nginx, "-v"]).strip() or "nginx"
        return (f"{version}, one worker, TLS 1.2/1.3 with an ECDSA P-256 certificate for "
                f"localhost from a CA made by openssl, keep-alive to clients and upstream, no "
                f"proxy buffering; programs verify it with --ca-file")

    def stop(self):
        if self.proc is not None:
            stop_child(self.proc)
            self.proc = None


def program_argv(args, program, scen, url, records):
    common = ["--agents", str(scen.agents), "--requests-per-agent", str(scen.requests),
              "--model", scen.model, "--prompt", args.prompt, "--max-tokens", str(scen.max_tokens),
              "--records", str(records), "--record-lags"]
    if scen.agents > 1 and getattr(args, "stagger_ms", 0) > 0:
        common += ["--stagger-ms", str(args.stagger_ms)]
    if getattr(args, "ca_file", None):
        common += ["--ca-file", str(args.ca_file)]
    if program == "chimeraforge":
        return [args.client, "multi", "--endpoint", url, "--backend", scen.backend, *common,
                "--no-calibrate", "--quiet", "--results", "", "--executor", args.executor,
                "--busy-poll-us", str(args.busy_poll_us)] + (
                    ["--pin-threads", "false"] if args.pin_threads == "false" else [])
    timeout = ["--timeout", str(args.run_timeout)]
    if program == "python":
        return [args.python, args.python_peer, "--endpoint", url, "--backend", scen.backend,
                *common, *timeout]
    if program == FLOOR:
        return [args.floor, "--endpoint", url, "--backend", scen.backend, *common, *timeout]
    return [args.rust_peer, "--endpoint", url, "--backend", scen.backend, *common, *timeout]


def startup_argv(args, program, url):
    ca = ["--ca-file", str(args.ca_file)] if getattr(args, "ca_file", None) else []
    if program == "chimeraforge":
        return [args.client, "generate", "--endpoint", url, "--backend", "ollama", "--model",
                "synth", "--prompt", "hi", "--num-predict", "1", "--quiet", *ca]
    probe = ["--endpoint", url, "--backend", "ollama", "--model", "synth", "--prompt", "hi",
             "--max-tokens", "1", "--startup-probe", *ca]
    if program == "python":
        return [args.python, args.python_peer, *probe]
    if program == FLOOR:
        return [args.floor, *probe]
    return [args.rust_peer, *probe]


_CHECKER = None


def records_checker():
    """bench/peers/check_records.py's Checker: every records file is validated before use."""
    global _CHECKER
    if _CHECKER is None:
        path = ROOT / "bench/peers/check_records.py"
        spec = importlib.util.spec_from_file_location("check_records", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _CHECKER = module.Checker
    return _CHECKER


def check_records_file(path):
    """The violations check_records.py finds (empty when the file is sound)."""
    checker = records_checker()(str(path), False, False, None, 20)
    checker.run()
    return checker.errors


class Harness:
    def __init__(self, args, env, work_dir, provenance=None):
        self.args = args
        self.env = env
        self.provenance = provenance or Provenance(build_dir=build_dir_of(args.cli))
        self.work = Path(work_dir)
        self.runs = []          # one dict per program run (the results file's "run" lines)
        self.samples = {}       # (row, program) -> per-request values for the TTFT plots
        self.headers = {}       # program -> the first records header seen (its environment)
        self.lone = {}          # (program, rep) -> (decode_tps_client, floor_ns) of the N=1 run
        self.servers = {}       # name -> Server
        self.fronts = {}        # name -> the https URL of nginx in front of it (--tls)
        self.tls = None         # the TlsFront (--tls)
        self.server_info = {}   # name -> description for the results
        self.workload_notes = []
        self.plot_note = ""

    # -- one program run -----------------------------------------------------------------
    def run_scenario(self, program, scen, rep, row, extra=None):
        a = self.args
        server = self.servers[scen.server]
        stem = f"{row}-{program}-r{rep}"
        records = self.work / f"{stem}.jsonl"
        argv = program_argv(a, program, scen, self.fronts.get(scen.server, server.url), records)
        log_offset = server.log_size()
        # The synthetic server's counters cover this run alone (its own lateness, below).
        timed_server = row.startswith("conc") and scen.server == "synth-conc"
        server_stats, stats_error = None, None
        if timed_server:
            _, stats_error = synth_stats(server, reset=True)
        res = run_child(argv, a.run_timeout, self.work / f"{stem}.out", self.work / f"{stem}.err")
        if timed_server and stats_error is None:
            server_stats, stats_error = synth_stats(server)
        run = {"kind": "run", "row": row, "program": program, "agents": scen.agents,
               "requests_per_agent": scen.requests, "max_tokens": scen.max_tokens,
               "rep": rep, "server": scen.server, "backend": scen.backend,
               "command": shlex.join(argv), "exit_code": res["exit_code"],
               "wall_s": round(res["wall_s"], 3), "failed": False, "error": "", "notes": [],
               "stderr_tail": ""}
        figs = {"rss_peak": res["rss_peak"], "wall": round(res["wall_s"], 3)}
        error = None
        if res["spawn_error"]:
            error = f"could not start: {res['spawn_error']}"
        elif res["timed_out"]:
            error = f"timed out after {a.run_timeout} s (killed)"
        elif not records.exists():
            error = f"wrote no records (exit code {res['exit_code']})"
        else:
            violations = check_records_file(records)
            if violations:
                error = "records fail check_records.py: " + "; ".join(violations[:3])
        header, recs = (None, [])
        if error is None:
            try:
                header, recs = read_records(records)
            except (OSError, ValueError) as exc:
                error = f"unreadable records: {exc}"
        if error is None and not any(r.get("ok") for r in recs):
            first = next((r.get("error") for r in recs if r.get("error")), "no records")
            error = f"no request succeeded (exit code {res['exit_code']}): {first}"
        if error is None:
            if header and program not in self.headers:
                self.headers[program] = header
            lone_key = (program, rep, row.endswith(PINNED))
            lone_tps, floor, lone_sys = (self.lone.get(lone_key, (None, None, None))
                                         if row.startswith("conc") else (None, None, None))
            figs.update(run_figures(recs, scen.agents, lone_tps, floor, lone_sys))
            if timed_server:
                figs.update(server_timeliness(server_stats, recs))
                if stats_error is not None:
                    run["notes"].append(f"no server timeliness figures: {stats_error}")
            if scen.agents == 1 and row.startswith("conc"):
                floor = loopback_floor(recs)
                self.lone[lone_key] = (figs["decode_tps_client"], floor,
                                             figs["system_tps"])
                figs["efficiency"] = efficiency(figs["system_tps"], 1, figs["decode_tps_client"])
                figs["scaling"] = efficiency(figs["system_tps"], 1, figs["system_tps"])
                figs["contention"] = contention(recs, floor)
                figs["loopback_floor"] = None if floor is None else floor / NS_PER_MS
            if res["exit_code"] not in (0, None):
                run["notes"].append(f"exit code {res['exit_code']}")
            if figs["errors"]:
                first = next(r["error"] for r in recs if not r.get("ok"))
                run["notes"].append(f"{figs['errors']} of {figs['requests']} requests failed; "
                                    f"first: {first[:300]}")
            wrong = sum(1 for r in recs if r.get("ok") and r.get("tokens_out") != scen.max_tokens)
            if wrong:
                run["notes"].append(f"{wrong} ok requests reported tokens_out != "
                                    f"{scen.max_tokens}")
            key = (row, program)
            bucket = self.samples.setdefault(key, {"ttft_client": [], "overhead_ttft": []})
            for r in recs:
                p = request_figures(r)
                for name in bucket:
                    if p[name] is not None:
                        bucket[name].append(p[name] / NS_PER_MS)
        overrides = {}
        if extra:
            extra_figs, overrides = extra(server, log_offset, recs if error is None else [])
            figs.update(extra_figs)
        if error is not None:
            run["failed"] = True
            run["error"] = error
            run["stderr_tail"] = tail(self.work / f"{stem}.err") or tail(self.work / f"{stem}.out")
        run["figures"] = labelled(figs, overrides)
        run["env"] = self.run_env(program, scen.server)
        self.runs.append(run)
        self.progress(run)
        return run

    def run_startup(self, program, rep, probe, row="startup"):
        a = self.args
        server = self.servers["synth-conc"]
        argv = startup_argv(a, program, self.fronts.get("synth-conc", server.url))
        stem = f"{row}-{program}-r{rep}-{probe}"
        run = {"kind": "run", "row": row, "program": program, "agents": 1,
               "requests_per_agent": 1, "max_tokens": 1, "rep": rep, "probe": probe,
               "server": "synth-conc", "backend": "ollama", "command": shlex.join(argv),
               "failed": False, "error": "", "notes": [], "stderr_tail": ""}
        _, error = synth_stats(server, reset=True)
        res = run_child(argv, a.run_timeout, self.work / f"{stem}.out", self.work / f"{stem}.err",
                        own_rss=False)
        run["exit_code"], run["wall_s"] = res["exit_code"], round(res["wall_s"], 3)
        figs = {"wall": round(res["wall_s"], 3), "startup": None}
        t_ask = time.monotonic_ns()
        if error is None:
            if res["spawn_error"]:
                error = f"could not start: {res['spawn_error']}"
            elif res["timed_out"]:
                error = f"timed out after {a.run_timeout} s (killed)"
            elif res["exit_code"] != 0:
                error = f"exit code {res['exit_code']}"
        if error is None:
            stats, error = synth_stats(server)
        if error is None:
            first = stats.get("first_request_ns")
            if not first or not res["t0_ns"] < first < t_ask:
                error = "the server saw no request from the program"
            else:
                figs["startup"] = (first - res["t0_ns"]) / NS_PER_MS
        if error is not None:
            run["failed"] = True
            run["error"] = error
            run["stderr_tail"] = tail(self.work / f"{stem}.err") or tail(self.work / f"{stem}.out")
        run["figures"] = labelled(figs)
        run["env"] = self.run_env(program, "synth-conc")
        self.runs.append(run)
        self.progress(run)
        return run

    def run_env(self, program, server):
        e = {"git_commit": self.env["git_commit"], "cpu": self.env["cpu"],
             "cores": self.env["cores"], "compiler": self.env["compiler"],
             "server": self.server_info.get(server, {}).get("name", server)}
        if server == "llama":
            e["model"] = self.server_info["llama"].get("model")
        if program == "chimeraforge":
            e["executor"] = self.args.executor
            e["busy_poll_us"] = self.args.busy_poll_us
            e["pin_threads"] = self.args.pin_threads == "true"
        return e

    def progress(self, run):
        f = run["figures"]

        def v(key, fmt="{:.3f}"):
            x = f.get(key, {}).get("value")
            return "-" if x is None else fmt.format(x)

        head = f"[rep {run['rep'] + 1}] {run['row']:<20} {run['program']:<12}"
        if run["failed"]:
            print(f"{head} FAILED: {run['error']}", flush=True)
            return
        if run["row"].startswith("startup"):
            print(f"{head} startup {v('startup', '{:.1f}')} ms  rss {v('rss_peak', '{:.0f}')} B",
                  flush=True)
            return
        print(f"{head} ok {f['requests']['value'] - f['errors']['value']}/{f['requests']['value']}"
              f"  ttft p50 {v('ttft_client_p50')} ms  overhead p50 {v('overhead_ttft_p50')} ms"
              f"  decode {v('decode_tps_client', '{:.1f}')}/s  eff {v('efficiency')}"
              f"  cont {v('contention', '{:.5f}')}  stall {v('stall_rate', '{:.4f}')}"
              f"  server late {v('server_lateness', '{:.5f}')}/{v('server_late_rate', '{:.4f}')}"
              f"  rss {v('rss_peak', '{:.0f}')} B  wall {run['wall_s']:.2f} s", flush=True)


def warm_llama(server, prompt):
    """One request of the harness's own to llama-server, untimed, with the programs' prompt.

    Made before each program's run, so that no program pays the server's first request and
    each finds the server in the same state, warm and its slot holding this prompt, whatever
    ran before it: the program that runs first in a repetition otherwise follows a pause of the
    server (the start-up and synthetic-server rows, or the previous repetition's concurrency
    rows)."""
    try:
        http(server.url + "/v1/chat/completions", data=json.dumps(
            {"messages": [{"role": "user", "content": prompt}], "max_tokens": 8,
             "stream": False}).encode(), timeout=120)
    except (urllib.error.URLError, OSError, ValueError):
        pass


def llama_extra(scen):
    """decode_tps_server and ttft_server of a llama-server run: the median of what the server
    logged for this run's requests (its `timings`: predicted_per_second, prompt_ms)."""

    def extra(server, offset, _records):
        time.sleep(0.3)  # the server logs a request's timings just after the stream ends
        rates, prompts = llama_timings(server.log_since(offset))
        figs = {"decode_tps_server": percentile(rates, 50),
                "ttft_server_p50": percentile(prompts, 50)}
        note = {"note": f"llama-server's own timings, median of {len(rates)} requests"}
        return figs, {"decode_tps_server": dict(note), "ttft_server_p50": dict(note)}

    return extra


def synth_extra(rate, ttft_ms):
    def extra(_server, _offset, _records):
        note = {"note": "the synthetic server's configured value"}
        return ({"decode_tps_server": float(rate), "ttft_server_p50": float(ttft_ms)},
                {"decode_tps_server": dict(note), "ttft_server_p50": dict(note)})

    return extra


def find_model(args, cli, log):
    if args.model_file:
        return Path(args.model_file)
    for p in (ROOT / "build/test-models/tiny.gguf", ROOT / "build/models/tiny.gguf"):
        if p.exists():
            return p
    model = ROOT / "build/models/tiny.gguf"
    model.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing the tiny model: {model}", flush=True)
    res = run_child([cli, "model", "synth", "--preset", "tiny", "--out", str(model), "--quiet"],
                    600, log / "model-synth.out", log / "model-synth.err")
    if res["exit_code"] != 0 or not model.exists():
        raise RuntimeError(f"chimeraforge model synth failed: {tail(log / 'model-synth.err')}")
    return model


# --------------------------------------------------------------------------------------------
# Summary, table and plots
# --------------------------------------------------------------------------------------------

def rep_values(runs, row, program, key):
    """{rep: value} of one figure; a startup row's several probes per repetition are reduced
    to their median."""
    by_rep = {}
    for r in runs:
        if r["row"] != row or r["program"] != program or r["failed"]:
            continue
        v = r["figures"].get(key, {}).get("value")
        if v is not None:
            by_rep.setdefault(r["rep"], []).append(v)
    return {rep: percentile(vs, 50) for rep, vs in by_rep.items()}


def summarize(runs, row, key, programs, base="chimeraforge"):
    """Per program: mean, sd, n over repetitions, and the per-repetition ratio to base (the
    same repetition, so the two were measured one after the other) as mean, sd."""
    out = {}
    base_vals = rep_values(runs, row, base, key)
    for program in programs:
        vals = rep_values(runs, row, program, key)
        m, sd = mean_sd(list(vals.values()))
        # A ratio of a figure that is zero or negative (contention below the floor, no
        # stalls) says nothing; such repetitions give none.
        ratios = [vals[k] / base_vals[k] for k in vals
                  if k in base_vals and base_vals[k] is not None and base_vals[k] > 0
                  and vals[k] > 0]
        rm, rsd = mean_sd(ratios) if program != base else (None, None)
        failed = sum(1 for r in runs if r["row"] == row and r["program"] == program
                     and r["failed"])
        total = len({r["rep"] for r in runs if r["row"] == row and r["program"] == program})
        out[program] = {"mean": m, "sd": sd, "n": len(vals), "ratio_mean": rm, "ratio_sd": rsd,
                        "ratio_n": len(ratios), "failed_runs": failed, "reps": total}
    return out


# (row, key, label, scale, unit shown, better) for the Markdown table.
def table_rows(args):
    rows = [("Single agent, synthetic server", [
        ("single-synth", "overhead_ttft_p50", "overhead_ttft p50", 1, "ms", "lower"),
        ("single-synth", "overhead_ttft_p99", "overhead_ttft p99", 1, "ms", "lower"),
        ("single-synth", "ttft_client_p50", "ttft_client p50", 1, "ms", "lower"),
        ("single-synth", "ttft_client_p99", "ttft_client p99", 1, "ms", "lower"),
        ("single-synth", "decode_tps_client", "decode_tps_client", 1, "tokens/s", "higher"),
        ("single-synth", "decode_tps_server", "decode_tps_server (configured)", 1, "tokens/s",
         ""),
        ("single-synth", "e2e_p50", "e2e p50", 1, "ms", "lower"),
        ("single-synth", "e2e_p99", "e2e p99", 1, "ms", "lower"),
    ]), ("Single agent, llama-server (tiny model)", [
        ("single-llama", "ttft_client_p50", "ttft_client p50", 1, "ms", "lower"),
        ("single-llama", "ttft_client_p99", "ttft_client p99", 1, "ms", "lower"),
        ("single-llama", "ttft_server_p50", "ttft_server p50 (server's prompt_ms)", 1, "ms", ""),
        ("single-llama", "decode_tps_client", "decode_tps_client", 1, "tokens/s", "higher"),
        ("single-llama", "decode_tps_server", "decode_tps_server (server's timings)", 1,
         "tokens/s", ""),
        ("single-llama", "e2e_p50", "e2e p50", 1, "ms", "lower"),
        ("single-llama", "e2e_p99", "e2e p99", 1, "ms", "lower"),
    ])]
    ns = args.agents
    proc = [(f"conc-{ns[0]}", "rss_peak", f"rss_peak, {ns[0]} agent", 1e-6, "MB", "lower"),
            (f"conc-{ns[-1]}", "rss_peak", f"rss_peak, {ns[-1]:,} agents", 1e-6, "MB", "lower"),
            ("startup", "startup", "startup (spawn -> first request byte at the server)", 1, "ms",
             "lower")]
    rows.append(("Process", proc))
    conc = []
    for key, label, scale, unit, better in (
            ("efficiency", "efficiency", 100, "%", "higher"),
            ("scaling", "scaling", 100, "%", "higher"),
            ("contention", "contention", 100, "%", "lower"),
            ("stall_rate", "stall_rate", 100, "%", "lower"),
            ("balance", "balance", 100, "%", "higher"),
            ("system_tps", "system_tps", 1, "tokens/s", "higher"),
            ("delivery_lag_p99", "delivery_lag p99", 1, "ms", "lower"),
            ("start_spread", "start_spread", 1, "ms", ""),
            ("server_lateness", "server_lateness (the server's own)", 100, "%", ""),
            ("server_late_rate", "server_late_rate (the server's own)", 100, "%", ""),
            ("loopback_floor", "loopback_floor (N=1)", 1, "ms", "lower")):
        for n in ns:
            if key == "loopback_floor" and n != ns[0]:
                continue
            conc.append((f"conc-{n}", key, label if key == "loopback_floor" else
                         f"{label}, N={n:,}", scale, unit, better))
    rows.append(("Concurrency, synthetic server", conc))
    if args.pin == "off":
        return rows
    # Pinned rows first (the goals apply to both, pinned first); llama-server's row is unpinned.
    pinned = [(f"{title}, pinned", [(row + PINNED, *rest) for row, *rest in entries])
              for title, entries in rows if "llama-server" not in title]
    return pinned + rows


def fmt_value(v, unit):
    if v is None:
        return "n/a"
    a = abs(v)
    if unit == "%":
        return f"{v:.3f}" if a < 1 else f"{v:.2f}"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_cell(s, scale, unit):
    if s["n"] == 0:
        return "failed" if s["failed_runs"] else "n/a"
    m = s["mean"] * scale
    text = fmt_value(m, unit)
    if s["sd"] is not None:
        text += " ± " + fmt_value(s["sd"] * scale, unit)
    if s["failed_runs"]:
        text += f" ({s['failed_runs']} failed)"
    return text


def fmt_ratio(s):
    if s["ratio_mean"] is None:
        return "n/a"
    text = f"{s['ratio_mean']:.2f}"
    if s["ratio_sd"] is not None:
        text += f" ± {s['ratio_sd']:.2f}"
    return text + "x"


def write_table(path, harness, args, programs, plots):
    env = harness.env
    # ratio columns only when chimeraforge ran
    peers = [p for p in programs if p != "chimeraforge"] if "chimeraforge" in programs else []
    lines = ["# chimeraforge, the Python peer and the Rust peer, side by side", "",
             f"Measured {env['date']} with `{env['harness_command']}` "
             f"({args.reps} repetitions, the programs alternating; wall time "
             f"{env.get('harness_wall_s', 0):.0f} s).", "",
             f"- machine: {env['cpu']}, {env['cores']} cores, {env['os']}; load average at "
             f"start {', '.join(f'{x:.2f}' for x in env['loadavg_start'])}"
             + (f", at end {', '.join(f'{x:.2f}' for x in env['loadavg_end'])}"
                if env.get("loadavg_end") else ""),
             f"- commit {env['git_commit']}; {env['chimeraforge']} built with {env['compiler']} "
             f"({env['build_type']}, flags `{env['flags']}`); executor `{args.executor}`"
             + (f", `--busy-poll-us {args.busy_poll_us}`" if args.busy_poll_us else "")
             + (", `--pin-threads false`" if args.pin_threads == "false" else "") + "; "
             f"measured as `{env.get('chimeraforge_measured', 'chimeraforge')}`"]
    for program, header in sorted(harness.headers.items()):
        if program == FLOOR:
            lines.append("- floor: bench/compare/floor/stream_floor.c (C, one thread, epoll, one "
                         "read per readiness, no JSON parsing; the machine's share of a figure)")
        elif program != "chimeraforge":
            lines.append(f"- {program} peer: " + ", ".join(
                f"{k} {v}" for k, v in header.get("env", {}).items()
                if k in ("python", "httpx", "httpcore", "rustc", "crates", "runtime")))
    for name, info in harness.server_info.items():
        lines.append(f"- server `{name}`: {info['name']}; `{info['command']}`"
                     + (f"; model {info['model']}" if info.get("model") else ""))
    lines += ["", "Each cell: mean ± sample standard deviation over repetitions. Ratio: the "
              "peer's figure ÷ chimeraforge's, taken per repetition (the two ran one after the "
              "other on the same server), then mean ± sd. For a `lower` figure a ratio above 1 "
              "means chimeraforge is better; for a `higher` figure, below 1. Absolute times on "
              "a shared 2-core machine are noisy; the ratios are what to quote. A ratio is "
              "given only where both figures are above zero.", "",
              "efficiency(N) = system_tps(N) / (N x decode_tps_client of the lone agent), as "
              "docs/records.md defines it: system_tps counts all T tokens of a request, "
              "decode_tps_client the T-1 gaps after the first, so with the first token at once "
              "a client that loses nothing reads about T/(T-1) (105.3% for 20 tokens), not "
              "100%. `scaling` = system_tps(N) / (N x system_tps(1)) has no such bias. "
              "`contention` sums every chunk's lag, so once a client is more than one chunk "
              "interval behind, the lags of successive chunks overlap and it can exceed 100%; a "
              "small negative value means no measurable contention (below the lone agent's "
              "floor).", ""]
    for title, rows in table_rows(args):
        rows = [r for r in rows if any(run["row"] == r[0] for run in harness.runs)]
        if not rows:
            continue
        lines += [f"## {title}", "",
                  "| figure | unit | better | " + " | ".join(
                      list(programs) + [f"{p} ÷ chimeraforge" for p in peers]) + " |",
                  "| --- | --- | --- | " + " | ".join(
                      "---:" for _ in range(len(programs) + len(peers))) + " |"]
        for row, key, label, scale, unit, better in rows:
            s = summarize(harness.runs, row, key, programs)
            cells = [fmt_cell(s[p], scale, unit) for p in programs]
            ratios = [fmt_ratio(s[p]) for p in peers]
            lines.append(f"| {label} | {unit} | {better} | " + " | ".join(cells + ratios) + " |")
        lines.append("")
    lines += ["## Workloads", ""]
    for text in harness.workload_notes:
        lines.append(f"- {text}")
    lines.append("")
    failed = [r for r in harness.runs if r["failed"]]
    noted = [r for r in harness.runs if not r["failed"] and r["notes"]]
    lines += ["## Failures and notes", ""]
    if not failed and not noted:
        lines += ["Every run of every program completed, and every request succeeded.", ""]
    for r in failed:
        lines += [f"- **{r['program']} failed**, {r['row']}, repetition {r['rep'] + 1}: "
                  f"{r['error']}", f"  - command: `{r['command']}`"]
        if r["stderr_tail"]:
            lines += ["  - stderr (last lines):", "", "    ```"]
            lines += ["    " + x for x in r["stderr_tail"].splitlines()]
            lines += ["    ```", ""]
    for r in noted:
        lines.append(f"- {r['program']}, {r['row']}, repetition {r['rep'] + 1}: "
                     + "; ".join(r["notes"]))
    lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"- `{p}`" for p in plots] + [""]
    else:
        lines += ["## Plots", "", harness.plot_note or "No plots.", ""]
    lines += ["Figures as METRICS.md and docs/records.md define them, computed by this harness "
              "from each program's records; the results file has every run's figures with "
              "their sources.", ""]
    Path(path).write_text("\n".join(lines))


def write_results(path, harness, args, programs):
    stamp = harness.provenance.stamp()
    with open(path, "w", encoding="utf-8") as f:
        env = dict(harness.env, kind="environment", servers=harness.server_info, provenance=stamp,
                   programs={p: harness.headers.get(p, {}).get("env", {}) for p in programs},
                   figure_definitions={k: {"unit": u, "source": s, "formula": d}
                                       for k, (u, s, d) in FIGURES.items()},
                   workloads=harness.workload_notes)
        f.write(json.dumps(env) + "\n")
        for run in harness.runs:
            f.write(json.dumps(dict(run, harness_date=harness.env["date"], provenance=stamp))
                    + "\n")
        for _title, rows in table_rows(args):
            for row, key, _label, _scale, _unit, _better in rows:
                if not any(r["row"] == row for r in harness.runs):
                    continue
                unit, source, formula = figure_meta(key)
                s = summarize(harness.runs, row, key, programs)
                for program in programs:
                    n = next((r["agents"] for r in harness.runs if r["row"] == row), None)
                    f.write(json.dumps({
                        "kind": "summary", "row": row, "agents": n, "program": program,
                        "figure": key, "unit": unit, "source": source, "formula": formula,
                        "mean": s[program]["mean"], "sd": s[program]["sd"],
                        "n": s[program]["n"], "failed_runs": s[program]["failed_runs"],
                        "ratio_to_chimeraforge": s[program]["ratio_mean"],
                        "ratio_sd": s[program]["ratio_sd"],
                        "ratio_source": "derived: per-repetition ratio, mean and sample sd",
                        "git_commit": harness.env["git_commit"], "date": harness.env["date"],
                        "harness_command": harness.env["harness_command"],
                        "provenance": stamp}) + "\n")


COLORS = {"chimeraforge": "#1f77b4", "python": "#ff7f0e", "rust": "#2ca02c", FLOOR: "#7f7f7f"}


def write_plots(plot_dir, harness, args, programs):
    """PNG plots (matplotlib, Agg); returns the files written, or [] with harness.plot_note
    saying why not."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        harness.plot_note = ("No plots: matplotlib is not installed (Debian: apt-get install "
                             "python3-matplotlib python3-munkres; bench/compare/run.sh does it).")
        return []
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []

    # TTFT distributions: empirical CDFs of every request over all repetitions.
    panels = [("single-synth", "overhead_ttft", "overhead_ttft, synthetic server"),
              ("single-synth", "ttft_client", "ttft_client, synthetic server"),
              ("single-llama", "ttft_client", "ttft_client, llama-server")]
    panels = [p for p in panels if any((p[0], prog) in harness.samples for prog in programs)]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
        for ax, (row, name, title) in zip(axes[0], panels):
            for prog in programs:
                vals = sorted(harness.samples.get((row, prog), {}).get(name, []))
                if not vals:
                    continue
                ys = [(i + 1) / len(vals) for i in range(len(vals))]
                ax.step(vals, ys, where="post", label=f"{prog} (n={len(vals)})",
                        color=COLORS.get(prog))
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_xlabel("ms (log scale)")
            ax.set_ylabel("share of requests at or below")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Time to first token, one agent: every request of every repetition")
        fig.tight_layout()
        out = plot_dir / "ttft.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)

    def against_n(ax, key, scale, ylabel, title, logy=False):
        for prog in programs:
            for suffix, style in (("", "-"), (PINNED, "--")):
                xs, ys, es = [], [], []
                for n in args.agents:
                    s = summarize(harness.runs, f"conc-{n}{suffix}", key, [prog])[prog]
                    if s["mean"] is None:
                        continue
                    xs.append(n)
                    ys.append(s["mean"] * scale)
                    es.append((s["sd"] or 0) * scale)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, linestyle=style,
                                label=prog + (" pinned" if suffix else ""),
                                color=COLORS.get(prog))
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("agents N (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    if any(r["row"].startswith("conc-") for r in harness.runs):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        against_n(axes[0], "efficiency", 100, "efficiency %", "efficiency against N")
        against_n(axes[1], "contention", 100, "contention %", "contention against N")
        against_n(axes[2], "stall_rate", 100, "stall_rate %", "stall_rate against N")
        fig.suptitle(f"Concurrency on the synthetic server ({args.conc_rate:g} tokens/s per "
                     f"stream, first token at once); mean ± sd over repetitions")
        fig.tight_layout()
        out = plot_dir / "concurrency.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)

        fig, ax = plt.subplots(figsize=(6, 4))
        against_n(ax, "rss_peak", 1e-6, "rss_peak MB (log scale)", "Peak resident set against N",
                  logy=True)
        fig.tight_layout()
        out = plot_dir / "memory.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    return written


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Compare chimeraforge, the Python peer and the Rust peer on the same servers, "
                    "alternating the programs, with every figure computed here from their "
                    "records (METRICS.md, docs/records.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  /usr/bin/python3 bench/compare/compare.py --quick\n"
               "  /usr/bin/python3 bench/compare/compare.py --reps 5 --executor per-core\n"
               "  /usr/bin/python3 bench/compare/compare.py --skip llama startup --agents 1 16\n")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 repetitions, fewer requests, N = 1, 2, 16, 128")
    p.add_argument("--reps", type=int, help="repetitions of every row (default 5; --quick 2)")
    p.add_argument("--executor", choices=EXECUTORS, default="single",
                   help="chimeraforge multi's executor (default single)")
    p.add_argument("--busy-poll-us", type=int, default=0,
                   help="chimeraforge multi's --busy-poll-us: each loop thread polls this long "
                        "before it sleeps (default 0: it sleeps at once)")
    p.add_argument("--pin-threads", choices=["true", "false"], default="true",
                   help="chimeraforge multi's --pin-threads: with the single executor its loop's "
                        "thread is held on its CPU once busy (default true; false leaves it to "
                        "the kernel). Not the harness's layout, which --pin sets")
    p.add_argument("--programs", nargs="+", choices=PROGRAMS + (FLOOR,), default=list(PROGRAMS),
                   help="programs to run (default the three; add `floor` for the floor client, "
                        "bench/compare/floor/stream_floor.c, built by the harness with cc: "
                        "the synthetic server's rows only, over plain http)")
    p.add_argument("--pin", choices=["both", "off", "only"], default="both",
                   help="both (default): every row but llama-server's unpinned, then pinned "
                        "(servers on the first CPU, the program under test on the others); "
                        "off: unpinned only; only: pinned only")
    p.add_argument("--skip", nargs="+", default=[],
                   choices=["startup", "single-synth", "single-llama", "concurrency"],
                   help="rows to leave out")
    p.add_argument("--agents", type=int, nargs="+",
                   help="concurrency N (default 1 2 16 256 1000, 2 being the study's two "
                        "agents; --quick 1 2 16 128); 1 is added when missing (efficiency and "
                        "contention need the lone agent)")
    p.add_argument("--conc-rate", type=float, default=50.0,
                   help="synthetic server tokens/s per stream for the concurrency rows (50)")
    p.add_argument("--conc-tokens", type=int, default=20, help="tokens per request (20)")
    p.add_argument("--stagger-ms", type=float, default=0.0,
                   help="spread the agents' starts of the concurrency rows evenly over this "
                        "many ms (every program: agent i starts at i/N of it); 0 (default): "
                        "all at once, as the study's agents start")
    p.add_argument("--conc-requests", type=int, default=3,
                   help="requests per agent below 1,000 agents (3; --quick 2)")
    p.add_argument("--conc-requests-large", type=int, default=2,
                   help="requests per agent at 1,000 agents and more (2)")
    p.add_argument("--single-ttft-ms", type=float, default=10.0,
                   help="synthetic server delay before the first token, single-agent row (10)")
    p.add_argument("--single-rate", type=float, default=200.0,
                   help="synthetic server tokens/s, single-agent row (200)")
    p.add_argument("--single-tokens", type=int, default=64, help="tokens per request (64)")
    p.add_argument("--single-requests", type=int, help="requests per run (10; --quick 4)")
    p.add_argument("--llama-tokens", type=int, default=64, help="tokens per request (64)")
    p.add_argument("--llama-threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="llama-server -t: its decode threads (default: all cores but one, so "
                        "the program under test has a core of its own; a program's own CPU use "
                        "otherwise preempts llama.cpp's worker threads and slows the server)")
    p.add_argument("--llama-requests", type=int, help="requests per run (10; --quick 4)")
    p.add_argument("--startup-probes", type=int, default=3,
                   help="startup measurements per program and repetition; their median is the "
                        "repetition's value (3; --quick 2)")
    p.add_argument("--synth-threads", type=int, default=1,
                   help="synthetic server I/O threads (1)")
    p.add_argument("--run-timeout", type=float, default=180.0,
                   help="seconds a program run may take before it is killed and reported as "
                        "failed (180)")
    p.add_argument("--prompt", default="Write one line of banter for a tavern keeper.",
                   help="the user message of every request, the same for all programs")
    p.add_argument("--cli", default=str(ROOT / "build/apps/chimeraforge/chimeraforge"))
    p.add_argument("--client", help="the program run as chimeraforge in the measured rows "
                                     "(multi and generate): default chimeraforge-client, the "
                                     "build without llama.cpp, where it is beside --cli, else "
                                     "--cli; the servers always come from --cli")
    p.add_argument("--python", default="/usr/bin/python3", help="interpreter for the Python peer")
    p.add_argument("--python-peer", default=str(ROOT / "bench/peers/python/peer.py"))
    p.add_argument("--rust-peer", help="the Rust peer (default: bench/peers/rust/target/release/"
                                       "rust-peer, or rust-peer-tls with --tls: the plain build "
                                       "has no TLS, as a local http agent would)")
    p.add_argument("--llama-server", help="llama-server binary (default: CHIMERA_LLAMA_SERVER "
                                          "from build/CMakeCache.txt)")
    p.add_argument("--model-file", help="GGUF model for llama-server (default: "
                                        "build/test-models/tiny.gguf or build/models/tiny.gguf, "
                                        "written with `chimeraforge model synth` when missing)")
    p.add_argument("--out-dir", default=str(ROOT / "bench/results"),
                   help="where the results file, the table and plots/ go (bench/results)")
    p.add_argument("--tag", help="output file stem (compare; --quick: compare-quick); plots go "
                                 "to plots/ for compare, plots/TAG/ otherwise")
    p.add_argument("--no-plots", action="store_true", help="write no plots")
    p.add_argument("--tls", action="store_true",
                   help="every row over https: nginx, started here as a TLS-terminating reverse "
                        "proxy, in front of each server, with certificates made here by openssl; "
                        "each program verifies them (--ca-file). Output stem compare-tls")
    p.add_argument("--keep-records", metavar="DIR",
                   help="keep every records file and log in DIR (default: a temporary folder, "
                        "removed at the end)")
    a = p.parse_args(argv)
    if a.reps is None:
        a.reps = 2 if a.quick else 5
    if a.agents is None:
        a.agents = [1, 2, 16, 128] if a.quick else [1, 2, 16, 256, 1000]
    a.agents = sorted(set(a.agents) | {1})
    if a.quick and a.conc_requests == 3:
        a.conc_requests = 2
    if a.single_requests is None:
        a.single_requests = 4 if a.quick else 10
    if a.llama_requests is None:
        a.llama_requests = 4 if a.quick else 10
    if a.quick and a.startup_probes == 3:
        a.startup_probes = 2
    if a.tag is None:
        a.tag = ("compare-tls" if a.tls else "compare") + ("-quick" if a.quick else "")
    if a.rust_peer is None:
        a.rust_peer = str(ROOT / "bench/peers/rust/target/release"
                          / ("rust-peer-tls" if a.tls else "rust-peer"))
    if a.client is None:
        cli = Path(a.cli)
        beside = cli.parent / "chimeraforge-client"
        a.client = str(beside) if os.access(beside, os.X_OK) else a.cli
    if a.reps < 1 or min(a.agents) < 1:
        p.error("--reps and --agents must be at least 1")
    return a


def check_programs(args):
    """The programs that can run; a missing one is reported and left out, not fatal (except
    chimeraforge, which also provides the servers)."""
    if not os.access(args.cli, os.X_OK):
        sys.exit(f"compare.py: {args.cli} is missing: build first (bash scripts/build.sh)")
    available = []
    for program in args.programs:
        if program == "python" and not (os.access(args.python, os.X_OK)
                                        and Path(args.python_peer).exists()):
            print(f"compare.py: leaving out the Python peer: {args.python} or "
                  f"{args.python_peer} is missing", file=sys.stderr)
            continue
        if program == "rust" and not os.access(args.rust_peer, os.X_OK):
            print(f"compare.py: leaving out the Rust peer: {args.rust_peer} is not built "
                  f"(bash scripts/setup-peers.sh)", file=sys.stderr)
            continue
        if program == FLOOR:
            args.floor = build_floor(args)
            if args.floor is None:
                continue
        available.append(program)
    return available


def build_floor(args):
    """Compiles the floor client (static, -O2) into a temporary directory; None when it cannot
    run here (no C compiler, or --tls: it speaks plain http only)."""
    if args.tls:
        print("compare.py: leaving out the floor client: it speaks plain http only (--tls)",
              file=sys.stderr)
        return None
    cc = shutil.which("cc")
    source = ROOT / "bench/compare/floor/stream_floor.c"
    if cc is None:
        print("compare.py: leaving out the floor client: no C compiler (cc)", file=sys.stderr)
        return None
    out = Path(tempfile.mkdtemp(prefix="chimera-floor-")) / "stream_floor"
    atexit.register(shutil.rmtree, out.parent, ignore_errors=True)
    built = subprocess.run([cc, "-O2", "-static", "-o", str(out), str(source)],
                           capture_output=True, text=True)
    if built.returncode != 0:
        print(f"compare.py: leaving out the floor client: {cc} failed: {built.stderr[-500:]}",
              file=sys.stderr)
        return None
    return str(out)


def main(argv=None):
    args = parse_args(argv)
    install_cleanup()
    programs = check_programs(args)
    provenance = Provenance(build_dir=build_dir_of(args.cli), argv=sys.argv if argv is None
                            else [sys.argv[0]] + list(argv))
    cache = cmake_cache(provenance.build["build_dir"] or ROOT / "build")
    if not args.llama_server:
        args.llama_server = cache.get("CHIMERA_LLAMA_SERVER") or shutil.which("llama-server")
    env = environment(args, cache)
    t_start = time.monotonic()
    if args.keep_records:
        work = Path(args.keep_records)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="chimera-compare-"))
    harness = Harness(args, env, work, provenance)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    interrupted = False
    try:
        run_all(harness, args, programs)
    except KeyboardInterrupt:
        interrupted = True
        print("compare.py: interrupted; stopping every child and writing what was measured",
              file=sys.stderr)
    finally:
        for server in list(harness.servers.values()):
            server.stop()
        if harness.tls is not None:
            harness.tls.stop()
        stop_all_children()
    env["loadavg_end"] = os.getloadavg()
    env["harness_wall_s"] = time.monotonic() - t_start
    env["interrupted"] = interrupted
    results = out_dir / f"{args.tag}.jsonl"
    table = out_dir / f"{args.tag}.md"
    plot_dir = out_dir / ("plots" if args.tag == "compare" else f"plots/{args.tag}")
    write_results(results, harness, args, programs)
    if args.no_plots:
        plots, harness.plot_note = [], "No plots (--no-plots)."
    else:
        plots = write_plots(plot_dir, harness, args, programs)
    rel = [os.path.relpath(p, out_dir) for p in plots]
    write_table(table, harness, args, programs, rel)
    if not args.keep_records:
        shutil.rmtree(work, ignore_errors=True)
    failed = sum(1 for r in harness.runs if r["failed"])
    print(f"\n{len(harness.runs)} runs ({failed} failed) in {env['harness_wall_s']:.0f} s; "
          f"results: {results}; table: {table}"
          + (f"; plots: {plot_dir}" if plots else f"; {harness.plot_note}"))
    print()
    print(table.read_text())
    return 130 if interrupted else 0


def run_all(harness, args, programs):
    a = args
    log = harness.work
    skip = set(a.skip)
    need_synth_conc = "startup" not in skip or "concurrency" not in skip
    if need_synth_conc:
        harness.servers["synth-conc"] = start_synth(a.cli, "synth-conc", 0, a.conc_rate,
                                                    a.conc_tokens, a.synth_threads, log)
        harness.server_info["synth-conc"] = {
            "name": f"chimeraforge synth-server ({harness.env['chimeraforge']})",
            "command": shlex.join(harness.servers["synth-conc"].argv)}
    if "single-synth" not in skip:
        harness.servers["synth-single"] = start_synth(a.cli, "synth-single", a.single_ttft_ms,
                                                      a.single_rate, a.single_tokens,
                                                      a.synth_threads, log)
        harness.server_info["synth-single"] = {
            "name": f"chimeraforge synth-server ({harness.env['chimeraforge']})",
            "command": shlex.join(harness.servers["synth-single"].argv)}
    if "single-llama" not in skip:
        if not a.llama_server or not os.access(a.llama_server, os.X_OK):
            print("compare.py: leaving out the llama-server row: no llama-server binary "
                  "(CHIMERA_LLAMA_SERVER in build/CMakeCache.txt, or --llama-server)",
                  file=sys.stderr)
            skip.add("single-llama")
        else:
            model = find_model(a, a.cli, log)
            harness.provenance.set_model(model)
            server = start_llama(a.llama_server, model, a.llama_threads, log)
            harness.servers["llama"] = server
            version = command_output([a.llama_server, "--version"]).splitlines()
            harness.server_info["llama"] = {
                "name": "llama-server " + next((v.split(":", 1)[1].strip() for v in version
                                                if v.startswith("version")), "unknown"),
                "command": shlex.join(server.argv),
                "model": f"{model} ({model.stat().st_size:,} bytes, "
                         f"{gguf_file_type(model)})"}

    if a.tls:
        harness.tls = TlsFront(log)
        a.ca_file = harness.tls.ca
        for name, server in harness.servers.items():
            harness.fronts[name] = harness.tls.add(server.port)
        harness.tls.start()
        harness.server_info["tls"] = {"name": harness.tls.describe(),
                                      "command": shlex.join(harness.tls.argv)}
        harness.workload_notes.append(
            "tls: every program reaches every server through nginx over https "
            "(" + harness.tls.describe() + "); the servers' own figures are read directly")
    single_synth = Scenario("single-synth", "synth-single", "ollama", "synth", 1,
                            a.single_requests, a.single_tokens)
    single_llama = Scenario("single-llama", "llama", "openai", "tiny", 1, a.llama_requests,
                            a.llama_tokens)
    conc = [Scenario(f"conc-{n}", "synth-conc", "ollama", "synth", n,
                     a.conc_requests_large if n >= 1000 else a.conc_requests, a.conc_tokens)
            for n in a.agents]
    notes = harness.workload_notes
    if "startup" not in skip:
        notes.append(f"startup: {a.startup_probes} probe(s) per program and repetition, their "
                     f"median taken; one 1-token request to `synth-conc` (chimeraforge: "
                     f"`generate --backend ollama --num-predict 1`; peers: `--startup-probe`); "
                     f"the server's stats are reset before each probe")
    if "single-synth" not in skip:
        notes.append(f"single-synth: 1 agent, {a.single_requests} sequential requests of "
                     f"{a.single_tokens} tokens; synthetic server first token after "
                     f"{a.single_ttft_ms:g} ms, then {a.single_rate:g} tokens/s; Ollama protocol")
    if "single-llama" not in skip:
        notes.append(f"single-llama: 1 agent, {a.llama_requests} sequential requests of "
                     f"{a.llama_tokens} tokens (llama-server --ignore-eos, its default "
                     f"sampling); OpenAI protocol; llama-server shares the machine's cores with "
                     f"the program under test; before each program's run the harness makes one "
                     f"untimed request with the same prompt, so that every program finds the "
                     f"server warm")
    if "concurrency" not in skip:
        notes.append(f"concurrency: N agents x K requests of {a.conc_tokens} tokens at "
                     f"{a.conc_rate:g} tokens/s per stream, first token at once; K = "
                     f"{a.conc_requests} below 1,000 agents, {a.conc_requests_large} from 1,000; "
                     f"Ollama protocol; N = {', '.join(str(n) for n in a.agents)}"
                     + (f"; the agents' starts spread over {a.stagger_ms:g} ms (--stagger-ms)"
                        if a.stagger_ms > 0 else "; all agents start at once"))
    pinning = Pinning()
    modes = {"both": [False, True], "off": [False], "only": [True]}[a.pin]
    if True in modes and not pinning.possible:
        print("compare.py: one CPU only: the pinned rows are left out", file=sys.stderr)
        modes = [False]
    if True in modes:
        notes.append(f"pinned rows (named \"<row>{PINNED}\"): {pinning.describe()} (taskset-like "
                     f"affinity set by the harness); every row but llama-server's also runs "
                     f"unpinned in the same repetition, unpinned first")
        harness.env["pinning"] = {"server_cpus": sorted(pinning.server),
                                  "client_cpus": sorted(pinning.client)}
    try:
        for rep in range(a.reps):
            for pinned in modes:
                suffix = PINNED if pinned else ""
                pinning.apply(harness.servers.values(), pinned)
                run_repetition(harness, a, programs, skip, rep, suffix, single_synth,
                               single_llama, conc)
    finally:
        if True in modes:
            pinning.apply(harness.servers.values(), False)


def run_repetition(harness, a, programs, skip, rep, suffix, single_synth, single_llama, conc):
    """One repetition of every row, pinned (suffix PINNED) or not."""
    if "startup" not in skip:
        for probe in range(a.startup_probes):
            for program in programs:
                harness.run_startup(program, rep, probe, "startup" + suffix)
    if "single-synth" not in skip:
        for program in programs:
            harness.run_scenario(program, single_synth, rep, "single-synth" + suffix,
                                 synth_extra(a.single_rate, a.single_ttft_ms))
    if "single-llama" not in skip and not suffix:
        for program in programs:
            if program == FLOOR:
                continue  # the floor client speaks only the synthetic server's Ollama stream
            warm_llama(harness.servers["llama"], a.prompt)
            harness.run_scenario(program, single_llama, rep, "single-llama",
                                 llama_extra(single_llama))
    if "concurrency" not in skip:
        for scen in conc:
            for program in programs:
                harness.run_scenario(program, scen, rep, scen.name + suffix)


if __name__ == "__main__":
    sys.exit(main())
