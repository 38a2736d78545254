#!/usr/bin/python3
"""Renders every published figure table in README.md and docs/ from bench/results/*.jsonl.

A generated block sits between two markers, and everything between them is this script's:

    <!-- figures:inproc-aggregate -->
    ...table, its source line, and the sentences that compare...
    <!-- /figures:inproc-aggregate -->

Each block names the results file and the records (line numbers) every row came from, and the
provenance of the run (commit and dirty flag, machine, load average, build, model hash, the
command). Records written before provenance was stamped into them are rendered as they are and
marked "legacy". Sentences that compare ("ahead of", "level with", "behind") are generated
too, from the ratio's mean ± sample sd over repetitions: when that interval includes 1 the
sentence says "level with".

    python3 scripts/figures.py            # rewrite the blocks in place
    python3 scripts/figures.py --check    # exit 1 if any block differs from its rendering, or
                                          # if README.md compares outside a generated block
    python3 scripts/figures.py --list     # the blocks and where they are

Stdlib only.
"""
import argparse
import difflib
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results"
PAGES = ["README.md", "bench/README.md", "docs/inproc.md", "docs/multi.md", "docs/python.md",
         "docs/banter.md", "docs/study-reproduction.md"]
BLOCK = re.compile(r"(<!-- figures:([a-z0-9-]+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.S)
# Comparative wording outside generated blocks, in README.md: such claims must come from data.
COMPARATIVE = re.compile(r"\bahead of\b|\blevel with\b|\b\d+(\.\d+)?x (faster|slower|sooner|"
                         r"more|less)\b|\bfaster than\b|\bslower than\b|\bbetter than\b")


class FiguresError(Exception):
    """Missing or malformed results: the message names the file and line."""


# ------------------------------------------------------------------------------------------
# Records and the runs they belong to


class Record(dict):
    """A results line; .file and .line say where it came from."""

    def __init__(self, data, file, line):
        super().__init__(data)
        self.file = file
        self.line = line


def load(name):
    path = RESULTS / name
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FiguresError(f"bench/results/{name}: cannot read ({e.strerror})") from e
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise FiguresError(f"bench/results/{name}:{i}: not JSON ({e.msg})") from e
        if not isinstance(data, dict):
            raise FiguresError(f"bench/results/{name}:{i}: not a JSON object")
        out.append(Record(data, name, i))
    return out


def run_key(r):
    """What identifies one benchmark run: the provenance's start and command, or for legacy
    records the commit, command and date they carry."""
    p = r.get("provenance")
    if isinstance(p, dict):
        return ("provenance", p.get("started"), p.get("command"))
    return ("legacy", r.get("commit") or r.get("git_commit"),
            r.get("command") if "bench" in r else r.get("harness_command"),
            r.get("date") or r.get("harness_date"))


# Which runs a block renders: "latest" (the last run in the file), or "legacy" (the last run
# written before records carried provenance, for a block named "<name>-legacy" that keeps an
# earlier measurement beside a newer one).
SELECT = "latest"


def latest_run(records, pred=lambda r: True):
    """The records of the last run (in file order) that has a record matching pred, filtered
    by pred (and, for a -legacy block, to records without provenance)."""
    matching = [r for r in records if pred(r) and (SELECT == "latest" or
                                                    not isinstance(r.get("provenance"), dict))]
    if not matching:
        return []
    key = run_key(matching[-1])
    return [r for r in matching if run_key(r) == key]


def need(records, what, name):
    if not records:
        raise FiguresError(f"bench/results/{name}: no records for {what}")
    return records


def lines_of(records):
    """"12-18" or "3, 7, 11": the record lines, compressed into ranges."""
    nums = sorted({r.line for r in records})
    parts, start = [], None
    for i, n in enumerate(nums):
        if start is None:
            start = n
        if i + 1 == len(nums) or nums[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def cite(records):
    return f"`{records[0].file}`:{lines_of(records)}"


def legacy_provenance(records):
    """What records written before provenance stamping say about their run."""
    r = records[0]
    if "bench" in r:  # the C++ benchmarks: a commit fixed when the build was configured
        load_text = (f"load average {r['loadavg_1m_before']} before, none after"
                     if "loadavg_1m_before" in r else "no load average")
        return (f"legacy: commit {r.get('commit', 'unknown')} as read when the build was "
                f"configured, which may predate the code that ran; no dirty flag, {load_text}, "
                f"no date or model hash; `{r.get('command', 'unknown')}`")
    env = next((e for e in load(r.file) if e.get("kind") == "environment"), {})
    commit = env.get("git_commit") or r.get("git_commit") or "unknown"
    load_start, load_end = env.get("loadavg_start"), env.get("loadavg_end")
    load_text = (f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end"
                 if load_start and load_end else "no load average")
    command = env.get("harness_command") or env.get("command") or r.get("command") or "unknown"
    return (f"legacy: commit {commit} (\"+uncommitted changes\": a dirty tree, no diff hash), "
            f"{env.get('date') or r.get('date') or 'no date'}, {load_text}; no memory or model "
            f"hash; `{command}`")


def source_line(records):
    """One paragraph: where the rows came from and the run's provenance."""
    p = records[0].get("provenance")
    where = f"Source: `bench/results/{records[0].file}`, records {lines_of(records)}"
    if not isinstance(p, dict):
        return f"{where}. Provenance: {legacy_provenance(records)}."
    git = p.get("git", {})
    state = str(git.get("commit", "unknown"))[:12]
    if git.get("dirty"):
        diff = git.get("diff_sha256") or "unknown"
        state += (f" + uncommitted changes (diff sha256 {diff[:12]}, "
                  f"{git.get('untracked_files', 0)} untracked files)")
    m = p.get("machine", {})
    mem = m.get("memory_bytes")
    b = p.get("build", {})
    before = p.get("loadavg_before") or [None]
    # "after" is when the run's last record was written
    last = records[-1].get("provenance")
    after = (last if isinstance(last, dict) else p).get("loadavg_after") or [None]
    load = "load average " + (
        f"{before[0]:.2f} before, {after[0]:.2f} after" if before[0] is not None
        and after[0] is not None else "not readable")
    model = p.get("model")
    model_text = ""
    if isinstance(model, dict):
        model_text = (f"; model {Path(str(model.get('path'))).name} "
                      f"({model.get('bytes', 0) or 0:,} bytes, "
                      f"{model.get('hash_algorithm', 'hash')} {str(model.get('hash'))[:12]})")
    vector = f" ({m['vector']})" if m.get("vector") else ""
    return (f"{where}. Provenance: commit {state}; {p.get('started')}; {m.get('cpu')}{vector}, "
            f"{m.get('cores')} cores"
            + (f", {mem / 2**30:.0f} GiB" if mem else "")
            + f"; {load}; {b.get('compiler')} {b.get('build_type')} `{b.get('flags', '').strip()}`"
            f", llama.cpp {b.get('llama_cpp_commit')}{model_text}; `{p.get('command')}`.")


# ------------------------------------------------------------------------------------------
# Numbers


def mean_sd(values):
    """Mean and sample sd (None with fewer than 2 values) of the values that are not None."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def num(v, digits):
    """A number with thousands separators and `digits` decimals."""
    return f"{v:,.{digits}f}"


def auto_digits(m):
    """Three significant figures for values under 100, none above."""
    a = abs(m)
    return 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3 if a >= 0.01 else 4


def pm(m, sd, digits=None, unit=""):
    """'m ± sd unit', or 'm unit' when there is no sd (the block says why)."""
    if m is None:
        return "n/a"
    if digits is None:
        digits = auto_digits(m)
    if sd is None:
        return f"{num(m, digits)}{unit}"
    return f"{num(m, digits)} ± {num(sd, digits)}{unit}"


# A ratio within 1% of 1 is level even when its spread is smaller still (two programs that both
# deliver a server's 200 tokens/s differ by 0.05% with an sd of 0.01%).
NEGLIGIBLE = 0.01


def verdict(ratio, sd, ours_better_above_one=True):
    """'ahead of', 'level with' or 'behind', from a ratio's mean ± sd against 1."""
    if ratio is None:
        return "not compared with"
    if sd is None:
        sd = 0.0
    if not ours_better_above_one:
        ratio, sd = 1 / ratio, sd / (ratio * ratio)
    if abs(ratio - 1) < NEGLIGIBLE:
        return "level with"
    if ratio - sd > 1:
        return "ahead of"
    if ratio + sd < 1:
        return "behind"
    return "level with"


def join_words(items):
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def agents_text(ns):
    return join_words(f"{n:,}" for n in ns)


# ------------------------------------------------------------------------------------------
# Blocks. Each renderer returns the block's Markdown (without the markers).


def block_inproc_single():
    recs = load("inproc.jsonl")
    run = need(latest_run(recs, lambda r: r.get("bench") == "single_agent"),
               "the single-agent comparison", "inproc.jsonl")
    r = run[-1]
    rows = [("one agent, `ttft_client`", "ttft_client_ms_inproc", "ttft_client_ms_llama_server",
             " ms", 2, "ttft_ratio_server_over_inproc", "ttft_ratio_sd", "llama-server ÷ in-process"),
            ("one agent, `decode_tps_client`", "decode_tps_client_inproc",
             "decode_tps_client_llama_server", " /s", 0, "tps_ratio_inproc_over_server",
             "tps_ratio_sd", "in-process ÷ llama-server")]
    out = ["| | in-process | llama-server (HTTP, same build and model) | ratio | in-process is | "
           "record |", "| --- | ---: | ---: | ---: | --- | --- |"]
    for label, a, b, unit, d, ratio, ratio_sd, how in rows:
        out.append(f"| {label} | {pm(r[a], r.get(a + '_sd'), d, unit)} | "
                   f"{pm(r[b], r.get(b + '_sd'), d, unit)} | "
                   f"{pm(r[ratio], r.get(ratio_sd), 2)} ({how}) | "
                   f"{verdict(r[ratio], r.get(ratio_sd)).split()[0]} | {cite([r])} |")
    note = ("" if "ttft_client_ms_inproc_sd" in r else
            " This run recorded the spread of the ratios only, not of the absolute figures.")
    out += ["", f"Mean ± sample sd over {r['runs']} runs (the median of {r.get('requests_per_run', 10)}"
                f" requests in each).{note} " + source_line([r])]
    return "\n".join(out)


def block_inproc_aggregate():
    recs = load("inproc.jsonl")
    agg = need(latest_run(recs, lambda r: r.get("bench") == "aggregate"),
               "the aggregate comparison", "inproc.jsonl")
    out = ["| agents | in-process tokens/s | llama-server `-np N` tokens/s | ratio | "
           "in-process vs 1 agent | record |",
           "| ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in agg:
        n = r["agents"]
        out.append(f"| {n} | {pm(r['system_tps_inproc'], r.get('system_tps_inproc_sd'), 0)} | "
                   f"{pm(r['system_tps_llama_server'], r.get('system_tps_llama_server_sd'), 0)} | "
                   f"{pm(r['ratio_inproc_over_server'], r.get('ratio_sd'), 2)} | "
                   f"{r['scaling_vs_first']:.2f}x | {cite([r])} |")
    out += ["", source_line(agg), "", block_inproc_verdict()]
    session = latest_run(recs, lambda r: r.get("bench") == "session_reuse")
    if session:
        s = session[-1]
        out += ["", f"A session's second turn with a cached {s['prompt_tokens']}-token prompt "
                    f"starts {pm(s['ratio_cold_over_turn2'], s.get('ratio_sd'), 1, 'x')} sooner "
                    f"than the same request cold ({pm(s['ttft_turn2_ms'], s.get('ttft_turn2_ms_sd'), 2, ' ms')} vs "
                    f"{pm(s['ttft_cold_ms'], s.get('ttft_cold_ms_sd'), 1, ' ms')}; "
                    f"{cite([s])})."]
    return "\n".join(out)


def block_inproc_verdict():
    """In-process vs llama-server in aggregate tokens/s, one verdict per concurrency."""
    agg = need(latest_run(load("inproc.jsonl"), lambda r: r.get("bench") == "aggregate"),
               "the aggregate comparison", "inproc.jsonl")
    verdicts = {}
    for r in agg:
        verdicts.setdefault(verdict(r["ratio_inproc_over_server"], r.get("ratio_sd")),
                            []).append(r["agents"])
    said = []
    for word in ("ahead of", "level with", "behind"):
        if word in verdicts:
            said.append(f"{word} llama-server at {agents_text(verdicts[word])} "
                        f"agent{'s' if verdicts[word] != [1] else ''}")
    out = ["In aggregate tokens/s the in-process engine is " + join_words(said)
           + f" (a ratio whose mean ± sd includes 1 counts as level; {cite(agg)})."]
    by_n = {r["agents"]: r for r in agg}
    if 16 in by_n:
        out.append(f"Its aggregate rate at 16 agents is {by_n[16]['scaling_vs_first']:.2f}x its "
                   f"{min(by_n):,}-agent rate.")
    return "\n".join(out)


def repetitions_note(reps, how):
    if reps < 3:
        return (f"One run per cell ({reps} repetition{'s' if reps > 1 else ''}): no spread; "
                "these rows await a re-run with 3 repetitions. ")
    return f"Mean ± sample sd over {reps} repetitions of every cell ({how}). "


def multi_cells(run, keys):
    cells = {}
    for r in run:
        cells.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return cells


def block_multi_synth():
    recs = load("multi.jsonl")
    run = need(latest_run(recs, lambda r: r.get("part") == "synth"), "the synthetic-server runs",
               "multi.jsonl")
    cells = multi_cells(run, ("agents", "executor"))
    reps = max(len(v) for v in cells.values())
    out = ["| agents | executor | efficiency % | contention % | stall_rate % | ttft p50 ms | "
           "ttft p99 ms | rss_peak MB | errors | records |",
           "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]

    def cell(runs, key, scale, digits):
        m, sd = mean_sd([None if x.get(key) is None else x[key] * scale for x in runs])
        return pm(m, sd, digits), m, sd

    summary = {}
    executors = list(dict.fromkeys(r.get("executor") for r in run))
    for (n, ex), runs in sorted(cells.items(),
                                key=lambda kv: (kv[0][0], executors.index(kv[0][1]))):
        eff, eff_m, eff_sd = cell(runs, "efficiency", 100, 1)
        cont, cont_m, _ = cell(runs, "contention", 100, 2)
        stall = cell(runs, "stall_rate", 100, 1)[0]
        t50 = cell(runs, "ttft_client_p50_ms", 1, None)[0]
        t99 = cell(runs, "ttft_client_p99_ms", 1, None)[0]
        rss, rss_m, _ = cell(runs, "rss_peak", 1e-6, 1)
        errors = sum(x.get("errors") or 0 for x in runs)
        failed = sum(1 for x in runs if x.get("exit_code") != 0)
        summary[(n, ex)] = {"eff": eff_m, "eff_sd": eff_sd, "cont": cont_m, "rss": rss_m,
                            "errors": errors, "failed": failed, "runs": len(runs)}
        out.append(f"| {n:,} | {ex} | {eff} | {cont} | {stall} | {t50} | {t99} | {rss} | "
                   f"{errors}" + (f" ({failed} runs failed)" if failed else "") +
                   f" | {lines_of(runs)} |")
    out += ["", repetitions_note(reps, "the executors alternating within each repetition")
            + source_line(run), ""]
    out.append(multi_goals(summary))
    return "\n".join(out)


def multi_goals(summary):
    """The README's goals, each met or missed per executor, from the table's means."""
    executors = sorted({ex for _, ex in summary})

    def per_executor(n, key, ok, fmt):
        got = [(ex, summary[(n, ex)][key]) for ex in executors if (n, ex) in summary
               and summary[(n, ex)][key] is not None]
        if not got:
            return "not measured"
        met = [ex for ex, v in got if ok(v)]
        values = "; ".join(f"`{ex}` {fmt(v)}" for ex, v in got)
        if len(met) == len(got):
            return f"met by every executor ({values})"
        if not met:
            return f"missed by every executor ({values})"
        return f"met by {join_words(f'`{m}`' for m in met)} only ({values})"

    parts = ["`rss_peak` under 64 MB at 1,000 agents: "
             + per_executor(1000, "rss", lambda v: v < 64, lambda v: f"{v:.1f} MB")]
    big = [(ex, summary[(10000, ex)]) for ex in executors if (10000, ex) in summary]
    if big:
        done = [ex for ex, s in big if s["errors"] == 0 and s["failed"] == 0]
        parts.append("10,000 agents to completion without errors: "
                     + (f"met by all {len(big)} executors in every repetition"
                        if len(done) == len(big) else
                        f"met by {join_words(f'`{d}`' for d in done) or 'none'} of "
                        f"{len(big)} executors"))
    parts.append("`contention` under 0.1% at 256 agents: "
                 + per_executor(256, "cont", lambda v: v < 0.1, lambda v: f"{v:.2f}%"))
    parts.append("`efficiency` 99% at 1,000 agents: "
                 + per_executor(1000, "eff", lambda v: v >= 99, lambda v: f"{v:.1f}%"))
    return "Goals (from the means above): " + "; ".join(parts) + "."


def block_multi_rss():
    """One sentence for docs/multi.md: the memory of 1,000 agents on each executor."""
    run = need(latest_run(load("multi.jsonl"), lambda r: r.get("part") == "synth"),
               "the synthetic-server runs", "multi.jsonl")
    at = need([r for r in run if r.get("agents") == 1000], "1,000 agents", "multi.jsonl")
    cells = multi_cells(at, ("executor",))
    parts = [f"`{ex}` {pm(*mean_sd([x['rss_peak'] * 1e-6 for x in runs if x.get('rss_peak')]), 1, ' MB')}"
             for (ex,), runs in cells.items()]
    return (f"`rss_peak` with 1,000 agents streaming: {'; '.join(parts)} ({cite(at)}; "
            f"{'mean ± sd' if max(len(v) for v in cells.values()) > 1 else 'one run each'}).")


def block_multi_llama():
    recs = load("multi.jsonl")
    run = need(latest_run(recs, lambda r: r.get("part") == "llama"), "the llama-server runs",
               "multi.jsonl")
    cells = multi_cells(run, ("layout", "agents"))
    layouts = list(dict.fromkeys(r["layout"] for r in run))
    ns = sorted({r["agents"] for r in run})
    reps = max(len(v) for v in cells.values())
    out = ["| layout | agents | tokens/s | ttft p50 ms | ttft p99 ms | errors | records |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    means = {}
    for layout in layouts:
        for n in ns:
            runs = cells.get((layout, n), [])
            if not runs:
                continue
            tps = mean_sd([x.get("system_tps") for x in runs])
            t50 = mean_sd([x.get("ttft_client_p50_ms") for x in runs])
            t99 = mean_sd([x.get("ttft_client_p99_ms") for x in runs])
            means[(layout, n)] = (tps, t50)
            out.append(f"| {layout} | {n} | {pm(*tps, 0)} | {pm(*t50)} | {pm(*t99)} | "
                       f"{sum(x.get('errors') or 0 for x in runs)} | {lines_of(runs)} |")
    out += ["", repetitions_note(reps, "the layouts one after the other") + source_line(run),
            ""]
    sentences = []
    for layout in layouts:
        tps = [means[(layout, n)][0][0] for n in ns if (layout, n) in means]
        t50 = [means[(layout, n)][1][0] for n in ns if (layout, n) in means]
        if tps:
            sentences.append(f"{layout}: {num(min(tps), 0)} to {num(max(tps), 0)} tokens/s, "
                             f"ttft p50 {min(t50):.2f} to {max(t50):.2f} ms")
    out.append(f"Over {ns[0]} to {ns[-1]} agents (means): " + "; ".join(sentences) + ".")
    dual = next((x for x in layouts if "Dual" in x), None)
    if dual:
        ahead = []
        for n in ns:
            d = means.get((dual, n))
            others = [means[(x, n)] for x in layouts if x != dual and (x, n) in means]
            if d and others and all(d[0][0] - (d[0][1] or 0) > o[0][0] + (o[0][1] or 0)
                                    for o in others):
                ahead.append(n)
        out.append(f"Two servers were ahead of both one-server layouts in tokens/s (mean ± sd "
                   f"apart) at {len(ahead)} of {len(ns)} agent counts"
                   + (f" ({agents_text(ahead)})" if ahead else "") + ".")
    return "\n".join(out)


COMPARE_ROWS = [  # (row, figure, label, scale, unit, digits, lower is better)
    ("single-synth", "overhead_ttft_p50", "`overhead_ttft` p50 at 1 agent", 1, " ms", 3, True),
    ("single-synth", "overhead_ttft_p99", "`overhead_ttft` p99 at 1 agent", 1, " ms", 3, True),
    ("single-llama", "ttft_client_p50", "`ttft_client` p50 on llama-server", 1, " ms", 2, True),
    ("conc-1", "rss_peak", "`rss_peak` at 1 agent", 1e-6, " MB", 1, True),
    ("conc-1000", "rss_peak", "`rss_peak` at 1,000 agents", 1e-6, " MB", 1, True),
    ("startup", "startup", "`startup` (spawn to first request byte)", 1, " ms", 1, True),
    ("conc-256", "efficiency", "`efficiency` at 256 agents", 100, "%", 1, False),
    ("conc-1000", "efficiency", "`efficiency` at 1,000 agents", 100, "%", 1, False),
    ("conc-256", "contention", "`contention` at 256 agents", 100, "%", 1, True),
    ("conc-256", "stall_rate", "`stall_rate` at 256 agents", 100, "%", 1, True),
    ("conc-1000", "contention", "`contention` at 1,000 agents", 100, "%", 1, True),
    ("conc-1000", "stall_rate", "`stall_rate` at 1,000 agents", 100, "%", 1, True),
]
COMPARE_GOALS = [  # (row, figure, label, goal text, test on the mean in the table's unit)
    ("single-synth", "overhead_ttft_p99", "`overhead_ttft` p99", "0.2 ms", lambda v: v < 0.2),
    ("conc-1", "rss_peak", "`rss_peak` at 1 agent", "4 MB", lambda v: v < 4),
    ("startup", "startup", "`startup`", "2 ms", lambda v: v < 2),
    ("conc-256", "contention", "`contention` at 256 agents", "0.1%", lambda v: v < 0.1),
    ("conc-1000", "efficiency", "`efficiency` at 1,000 agents", "99%", lambda v: v >= 99),
]
PEERS = {"python": "the Python peer", "rust": "the Rust peer"}


def block_compare():
    recs = load("compare.jsonl")
    summaries = need(latest_run(recs, lambda r: r.get("kind") == "summary"),
                     "the peers' summaries", "compare.jsonl")
    by = {(r["row"], r["figure"], r["program"]): r for r in summaries}
    out = ["| figure | chimeraforge | Python peer | Rust peer | chimeraforge vs Python | "
           "chimeraforge vs Rust | records |",
           "| --- | ---: | ---: | ---: | --- | --- | --- |"]
    claims = {}
    for row, fig, label, scale, unit, d, lower_better in COMPARE_ROWS:
        got = {p: by.get((row, fig, p)) for p in ("chimeraforge", "python", "rust")}
        if got["chimeraforge"] is None:
            continue
        cells, versus = [], []
        for p in ("chimeraforge", "python", "rust"):
            s = got[p]
            cells.append("n/a" if s is None or s.get("mean") is None else
                         pm(s["mean"] * scale, None if s.get("sd") is None else s["sd"] * scale,
                            d, unit))
        for p in PEERS:
            s = got[p]
            if s is None or s.get("ratio_to_chimeraforge") is None:
                versus.append("n/a")
                continue
            # ratio_to_chimeraforge = peer ÷ chimeraforge, per repetition
            r, sd = s["ratio_to_chimeraforge"], s.get("ratio_sd")
            ours = got["chimeraforge"]
            word = (interval_verdict((ours["mean"], ours.get("sd")), (s["mean"], s.get("sd")),
                                     lower_better) if fig in NEAR_ZERO else
                    verdict(r, sd, ours_better_above_one=lower_better))
            claims.setdefault((p, word), []).append(label)
            versus.append(f"{word.split()[0]} (peer ÷ ours {pm(r, sd, 2, 'x')})")
        recs_used = [s for s in got.values() if s is not None]
        out.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(versus)
                   + f" | {lines_of(recs_used)} |")
    n = max((s.get("n") or 0) for s in summaries)
    out += ["", f"Mean ± sample sd over {n} repetitions, the three programs alternating; a "
                "verdict is \"level\" when the per-repetition ratio's mean ± sd includes 1 or "
                "the ratio is within 1% of 1 (for `contention` and `stall_rate`, near zero, when "
                "the mean ± sd intervals overlap). "
            + source_line(summaries), ""]
    said = []
    for p, name in PEERS.items():
        parts = [f"{word} {name} on {join_words(claims[(p, word)])}"
                 for word in ("ahead of", "level with", "behind") if (p, word) in claims]
        if parts:
            said.append("; ".join(parts))
    out.append("chimeraforge is " + "; it is ".join(said) + ".")
    goals = []
    for row, fig, label, goal, ok in COMPARE_GOALS:
        s = by.get((row, fig, "chimeraforge"))
        if s is None or s.get("mean") is None:
            continue
        scale, unit, d = next((sc, u, dg) for r_, f_, _l, sc, u, dg, _b in COMPARE_ROWS
                              if (r_, f_) == (row, fig))
        v = s["mean"] * scale
        pinned = by.get((row + "-pinned", fig, "chimeraforge"))
        if pinned is None or pinned.get("mean") is None:
            goals.append(f"{label} {num(v, d)}{unit} (goal {goal}: "
                         f"{'met' if ok(v) else 'missed'})")
            continue
        # The goals apply to both layouts, pinned first (the harness runs both). Shares get two
        # decimals here, so that one under a goal of 0.1% does not read as the goal itself.
        vp = pinned["mean"] * scale
        d = max(d, 2) if unit == "%" else d
        goals.append(f"{label} pinned {num(vp, d)}{unit}, unpinned {num(v, d)}{unit} (goal "
                     f"{goal}: {'met' if ok(vp) else 'missed'} pinned, "
                     f"{'met' if ok(v) else 'missed'} unpinned)")
    out.append("Goals: " + "; ".join(goals) + ".")
    return "\n".join(out)


# Which way is better for each figure of compare.jsonl; figures the client does not set (the
# server's own rates) are left out.
COMPARE_BETTER = {"overhead_ttft_p50": "lower", "overhead_ttft_p99": "lower",
                  "ttft_client_p50": "lower", "ttft_client_p99": "lower", "e2e_p50": "lower",
                  "e2e_p99": "lower", "decode_tps_client": "higher", "rss_peak": "lower",
                  "startup": "lower", "efficiency": "higher", "scaling": "higher",
                  "contention": "lower", "stall_rate": "lower", "balance": "higher",
                  "system_tps": "higher", "delivery_lag_p99": "lower", "loopback_floor": "lower"}
# Figures that sit at or near zero (and contention can go negative): a per-repetition ratio
# drops the repetitions where ours is 0, so these compare the two mean ± sd intervals instead.
NEAR_ZERO = {"contention", "stall_rate"}
ROW_ORDER = ["single-synth", "single-llama", "startup"]


def interval_verdict(ours, peer, lower_better):
    """Ours against a peer from two (mean, sd) intervals: apart, or overlapping (level)."""
    (m1, s1), (m2, s2) = ours, peer
    lo1, hi1, lo2, hi2 = m1 - (s1 or 0), m1 + (s1 or 0), m2 - (s2 or 0), m2 + (s2 or 0)
    if hi1 < lo2:
        return "ahead of" if lower_better else "behind"
    if hi2 < lo1:
        return "behind" if lower_better else "ahead of"
    return "level with"


def block_compare_verdicts():
    """Every figure of the peers' comparison, with a verdict against each peer."""
    recs = load("compare.jsonl")
    summaries = need(latest_run(recs, lambda r: r.get("kind") == "summary"),
                     "the peers' summaries", "compare.jsonl")
    by = {(r["row"], r["figure"], r["program"]): r for r in summaries}
    keys = list(dict.fromkeys((r["row"], r["figure"]) for r in summaries
                              if r["figure"] in COMPARE_BETTER))

    def order(key):
        row, fig = key
        n = int(row.split("-")[1]) if row.startswith("conc-") else -1
        return (ROW_ORDER.index(row) if row in ROW_ORDER else len(ROW_ORDER),
                list(COMPARE_BETTER).index(fig), n)

    out = ["| figure | agents | chimeraforge | Python peer | Rust peer | vs Python | vs Rust | "
           "records |", "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
    met, missed = [], []
    for row, fig in sorted(keys, key=order):
        ours = by.get((row, fig, "chimeraforge"))
        if ours is None or ours.get("mean") is None:
            continue
        lower = COMPARE_BETTER[fig] == "lower"
        pct = fig in {"efficiency", "scaling", "contention", "stall_rate", "balance"}
        scale, unit = (100, "%") if pct else (1e-6, " MB") if fig == "rss_peak" else (
            1, " ms" if fig not in {"decode_tps_client", "system_tps"} else " /s")
        cells, words = [], []
        for p in ("chimeraforge", "python", "rust"):
            r = by.get((row, fig, p))
            cells.append("n/a" if r is None or r.get("mean") is None else
                         pm(r["mean"] * scale, None if r.get("sd") is None else r["sd"] * scale,
                            None, unit))
        for p in ("python", "rust"):
            r = by.get((row, fig, p))
            if r is None or r.get("mean") is None:
                words.append(None)
            elif fig in NEAR_ZERO or r.get("ratio_to_chimeraforge") is None:
                words.append(interval_verdict((ours["mean"], ours.get("sd")),
                                              (r["mean"], r.get("sd")), lower))
            else:
                words.append(verdict(r["ratio_to_chimeraforge"], r.get("ratio_sd"),
                                     ours_better_above_one=lower))
        n = ours.get("agents")
        label = f"`{fig}`" + (" (`" + row + "`)" if row.startswith("single") else "")
        where = (f"{label} at {n:,} agent{'s' if n != 1 else ''}"
                 if n and row.startswith("conc-") else label)
        (missed if "behind" in words else met).append(where)
        used = [by[(row, fig, p)] for p in ("chimeraforge", "python", "rust")
                if (row, fig, p) in by]
        out.append(f"| {label} | {n if n is not None else ''} | " + " | ".join(cells) + " | "
                   + " | ".join((w or "n/a").split()[0] for w in words)
                   + f" | {lines_of(used)} |")
    out += ["", "A verdict is \"level\" when the per-repetition ratio's mean ± sample sd includes "
                "1 or the ratio is within 1% of 1 (for `contention` and `stall_rate`, which sit near "
                "zero, when the two mean ± sd intervals overlap). " + source_line(summaries), "",
            "At least as good as the better peer (ahead of or level with both) on "
            + join_words(met) + ".", "",
            "Behind a peer on " + (join_words(missed) if missed else "nothing") + "."]
    return "\n".join(out)


PYTHON_FIGS = [("efficiency", "efficiency", 100, "%", 1, False),
               ("overhead_ttft_p50", "overhead_ttft p50", 1, " ms", None, True),
               ("contention", "contention", 100, "%", 1, True),
               ("rss_peak", "rss_peak", 1e-6, " MB", 1, True)]
PYTHON_PROGRAMS = [("chimeraforge", "C++ engine alone"),
                   ("python-engine", "Python-orchestrated engine"),
                   ("python", "pure Python")]


def block_python():
    recs = load("python.jsonl")
    run = need(latest_run(recs, lambda r: r.get("kind") == "run"), "the runs", "python.jsonl")
    ns = sorted({r["agents"] for r in run})
    reps = len({r["rep"] for r in run})

    def vals(program, n, key):
        return {r["rep"]: r["figures"].get(key) for r in run
                if r["program"] == program and r["agents"] == n and not r.get("failed")}

    def ratio(a, b, n, key):
        va, vb = vals(a, n, key), vals(b, n, key)
        return mean_sd([va[k] / vb[k] for k in va if k in vb and va[k] is not None
                        and vb[k] not in (None, 0)])

    out = ["| agents | figure | " + " | ".join(label for _, label in PYTHON_PROGRAMS)
           + " | engine ÷ C++ | Python-orchestrated engine vs pure Python | records |",
           "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    python_ahead = []
    for n in [x for x in ns if x > 1]:
        for key, label, scale, unit, d, lower_better in PYTHON_FIGS:
            cells = []
            for program, _ in PYTHON_PROGRAMS:
                m, sd = mean_sd(list(vals(program, n, key).values()))
                cells.append(pm(None if m is None else m * scale,
                                None if sd is None else sd * scale, d, unit))
            if key == "contention":  # near zero and signed: a ratio means nothing there
                rel, word = "n/a (signed)", None
                e = mean_sd(list(vals("python-engine", n, key).values()))
                p = mean_sd(list(vals("python", n, key).values()))
                if e[0] is not None and p[0] is not None:
                    lo_e, hi_e = e[0] - (e[1] or 0), e[0] + (e[1] or 0)
                    lo_p, hi_p = p[0] - (p[1] or 0), p[0] + (p[1] or 0)
                    word = ("ahead of" if hi_e < lo_p else "behind" if hi_p < lo_e
                            else "level with")
            else:
                rel = pm(*ratio("python-engine", "chimeraforge", n, key), 2, "x")
                # pure Python ÷ engine: above 1 is the engine's win when lower is better
                r, sd = ratio("python", "python-engine", n, key)
                word = verdict(r, sd, ours_better_above_one=lower_better)
            if word == "behind":
                python_ahead.append(f"`{label}` at {n:,} agents")
            used = [r for r in run if r["agents"] == n and r["program"] in
                    {p for p, _ in PYTHON_PROGRAMS}]
            out.append(f"| {n:,} | {label} | " + " | ".join(cells) + f" | {rel} | "
                       f"{(word or 'n/a').split()[0]} | {lines_of(used)} |")
    out += ["", f"Mean ± sample sd over {reps} repetitions, the programs alternating; ratios "
                "per repetition. For `contention` (signed, near zero) the verdict compares the "
                "mean ± sd intervals. " + source_line(run), ""]
    out.append("Pure Python is ahead of the Python-orchestrated engine on "
               + (join_words(python_ahead) if python_ahead else "none of these figures") + ".")
    return "\n".join(out)


BANTER_TTFT_GOAL_MS = 50


def block_banter():
    recs = load("banter.jsonl")
    run = need(latest_run(recs, lambda r: r.get("bench") == "banter" and not r.get("gap_ms")),
               "back-to-back scenes", "banter.jsonl")
    out = ["| configuration | TTFT p50 ms | TTFT p99 ms | budget held | cached prompt tokens / "
           "line | record |",
           "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in run:
        out.append(f"| {r['configuration']} | {pm(r['ttft_line_p50_ms'], r.get('ttft_line_p50_sd'), 1)} | "
                   f"{pm(r['ttft_line_p99_ms'], r.get('ttft_line_p99_sd'), 1)} | "
                   f"{pm(r['budget_hit_rate_pct'], r.get('budget_hit_rate_sd'), 1, '%')} | "
                   f"{pm(r['prompt_tokens_cached_per_line'], r.get('prompt_tokens_cached_sd'), 0)}"
                   f" | {cite([r])} |")
    first = run[0]
    missing = "" if "budget_hit_rate_sd" in first else (
        " This run stored the spread of the TTFT percentiles only; the other columns are means.")
    out += ["", f"{first['runs']} runs of {first['lines']} lines, {first['characters']} "
                f"characters, {first['num_predict']}-token lines, {first['threads']} decode "
                f"thread(s), budget {first['budget_ms']} ms; percentiles per run, mean ± sample "
                "sd over runs." + missing + " " + source_line(run), ""]
    best = next((r for r in run if r["configuration"].startswith("in-process: sessions, "
                                                                  "warm-up, catch-up")), None)
    held = [r for r in run if r["budget_hit_rate_pct"] >= 100]
    goals = []
    if best:
        p99 = best["ttft_line_p99_ms"]
        goals.append(f"TTFT p99 under {BANTER_TTFT_GOAL_MS} ms in-process "
                     f"({'met' if p99 < BANTER_TTFT_GOAL_MS else 'missed'}: "
                     f"{pm(p99, best.get('ttft_line_p99_sd'), 1, ' ms')} with sessions, warm-up "
                     "and catch-up)")
    goals.append(f"a 100% budget hit rate at {first['budget_ms']} ms (met in {len(held)} of "
                 f"{len(run)} configurations)")
    out.append("Goals on this machine: " + "; ".join(goals) + ".")
    return "\n".join(out)


def banter_full(gap):
    """Every column the benchmark stores, for docs/banter.md; `gap`: scenes with a pause
    between lines (--gap-ms) or back to back."""
    recs = load("banter.jsonl")
    run = need(latest_run(recs, lambda r: r.get("bench") == "banter"
                          and bool(r.get("gap_ms")) == gap),
               "scenes with a gap" if gap else "back-to-back scenes", "banter.jsonl")
    budget = run[0]["budget_ms"]
    out = ["| configuration | ttft_line p50 ms | ttft_line p99 ms | ttft_client p50 ms | "
           f"ttft_client p99 ms | budget hit rate ({budget} ms) | cached prompt tokens / line | "
           "prefilled tokens / line | record |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in run:
        out.append(
            f"| {r['configuration']} | {pm(r['ttft_line_p50_ms'], r.get('ttft_line_p50_sd'), 1)} | "
            f"{pm(r['ttft_line_p99_ms'], r.get('ttft_line_p99_sd'), 1)} | "
            f"{pm(r['ttft_client_p50_ms'], r.get('ttft_client_p50_sd'), 1)} | "
            f"{pm(r['ttft_client_p99_ms'], r.get('ttft_client_p99_sd'), 1)} | "
            f"{pm(r['budget_hit_rate_pct'], r.get('budget_hit_rate_sd'), 1, '%')} | "
            f"{pm(r['prompt_tokens_cached_per_line'], r.get('prompt_tokens_cached_sd'), 0)} | "
            f"{pm(r['prompt_tokens_prefilled_per_line'], r.get('prompt_tokens_prefilled_sd'), 0)}"
            f" | {cite([r])} |")
    first = run[0]
    missing = "" if "ttft_client_p50_sd" in first else (
        " This run stored the spread of `ttft_line` only; the other columns are means.")
    out += ["", f"{first['runs']} runs of {first['lines']} lines each ({first['characters']} "
                f"characters, round-robin, num_ctx {first['num_ctx']}, num_predict "
                f"{first['num_predict']}, {first['threads']} decode thread(s), gap "
                f"{first['gap_ms']} ms); percentiles per run, mean ± sample sd over runs."
            + missing + " " + source_line(run)]
    return "\n".join(out)


def block_ingest():
    recs = load("ingest.jsonl")
    run = need(latest_run(recs, lambda r: r.get("bench") == "ingest"), "ingestion",
               "ingest.jsonl")
    spread = all("total_ms_sd" in r for r in run if "total_ms_median" in r)
    if spread:
        out = ["| corpus | threads | files | MB | ms (mean ± sd) | MB/s (mean ± sd) | ms (median) "
               "| record |",
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    else:
        out = ["| corpus | threads | files | MB | ms (median) | MB/s | record |",
               "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in run:
        if "corpus" not in r or "total_ms_median" not in r:
            continue
        head = f"| {r['corpus']} | {r['threads']} | {r['files']:,} | {r['bytes'] / 1e6:.2f} "
        if spread:
            out.append(head + f"| {r['total_ms_mean']:,.1f} ± {r['total_ms_sd']:,.1f} "
                       f"| {r['mb_per_s_mean']:.1f} ± {r['mb_per_s_sd']:.1f} "
                       f"| {r['total_ms_median']:,.1f} | {cite([r])} |")
        else:
            out.append(head + f"| {r['total_ms_median']:,.1f} | {r['mb_per_s']:.1f} | {cite([r])} |")
    reps = run[0].get("reps")
    if spread:
        note = f"Mean ± sample sd over {reps} runs each (the goals below use the median). "
    else:
        note = f"Median of {reps} runs each (no spread is recorded for ingestion). "
    out += ["", note + source_line(run), ""]
    rows = [r for r in run if "total_ms_median" in r]
    shared = min((r["total_ms_median"] for r in rows if r["corpus"] == "shared"), default=None)
    big = max((r["mb_per_s"] for r in rows if r["corpus"] != "shared"), default=None)
    goals = []
    if shared is not None:
        goals.append(f"the shared corpus under 50 ms ({'met' if shared < 50 else 'missed'}: "
                     f"{shared:.1f} ms)")
    if big is not None:
        goals.append(f"200 MB/s on the generated corpus ({'met' if big >= 200 else 'missed'}: "
                     f"{big:.0f} MB/s)")
    out.append("Goals: " + "; ".join(goals) + ".")
    return "\n".join(out)


RENDERERS = {
    "inproc-single": block_inproc_single,
    "inproc-aggregate": block_inproc_aggregate,
    "inproc-verdict": block_inproc_verdict,
    "multi-synth": block_multi_synth,
    "multi-llama": block_multi_llama,
    "multi-rss": block_multi_rss,
    "compare": block_compare,
    "compare-verdicts": block_compare_verdicts,
    "python": block_python,
    "banter": block_banter,
    "ingest": block_ingest,
    "banter-full": lambda: banter_full(gap=False),
    "banter-gap": lambda: banter_full(gap=True),
}


# ------------------------------------------------------------------------------------------
# Pages


def render_page(text, page, cache):
    """The page with every block re-rendered; raises FiguresError for an unknown block."""
    def replace(m):
        name = m.group(2)
        base = name[:-len("-legacy")] if name.endswith("-legacy") else name
        if base not in RENDERERS:
            line = text.count("\n", 0, m.start()) + 1
            raise FiguresError(f"{page}:{line}: unknown figures block '{name}' "
                               f"(known: {', '.join(RENDERERS)})")
        if name not in cache:
            global SELECT
            SELECT = "legacy" if base != name else "latest"
            try:
                cache[name] = RENDERERS[base]().rstrip("\n") + "\n"
            finally:
                SELECT = "latest"
        return m.group(1) + cache[name] + m.group(4)
    return BLOCK.sub(replace, text)


def comparative_prose(text, page):
    """Lines of `text` outside generated blocks that use comparative wording."""
    outside = BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    found = []
    in_code = False
    for i, line in enumerate(outside.splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and COMPARATIVE.search(line):
            found.append(f"{page}:{i}: a comparison outside a generated block: {line.strip()}")
    return found


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 when a page differs from its rendering")
    ap.add_argument("--list", action="store_true", help="list the blocks and where they are")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="the source tree whose pages and bench/results are used")
    a = ap.parse_args(argv)
    global RESULTS
    RESULTS = a.root / "bench/results"
    cache, stale, problems = {}, [], []
    try:
        for page in PAGES:
            path = a.root / page
            if not path.exists():
                continue
            text = path.read_text(encoding="utf-8")
            if a.list:
                for m in BLOCK.finditer(text):
                    print(f"{page}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(2)}")
                continue
            rendered = render_page(text, page, cache)
            if page == "README.md":
                problems += comparative_prose(rendered, page)
            if rendered != text:
                stale.append(page)
                if a.check:
                    sys.stdout.writelines(difflib.unified_diff(
                        text.splitlines(True), rendered.splitlines(True), f"{page} (as is)",
                        f"{page} (rendered from bench/results)", n=1))
                else:
                    path.write_text(rendered, encoding="utf-8")
    except FiguresError as e:
        print(f"figures.py: {e}", file=sys.stderr)
        return 2
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
        print(f"figures.py: a results record lacks what its block needs: {e!r}", file=sys.stderr)
        return 2
    if a.list:
        return 0
    for p in problems:
        print(p, file=sys.stderr)
    if a.check:
        if stale:
            print(f"figures.py: {', '.join(stale)} differ from bench/results; run "
                  "python3 scripts/figures.py and commit the result", file=sys.stderr)
        return 1 if stale or problems else 0
    if stale:
        print(f"figures.py: rewrote {', '.join(stale)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
