#!/usr/bin/env python3
"""Prints an A/B results file (bench/ab/run.sh) as old and new side by side: for each
configuration and figure, the mean over runs of each commit, every run's value, and the change
of the newer commit. Usage: summary.py bench/results/ab/<bench>-<sha>.jsonl"""
import json
import statistics
import subprocess
import sys
from collections import defaultdict

FIGURES = {  # bench -> (key naming a configuration, figures compared)
    "banter": ("configuration", ["ttft_line_p50_ms", "ttft_line_p99_ms", "ttft_client_p50_ms"]),
    "single_agent": ("bench", ["ttft_client_ms_inproc", "decode_tps_client_inproc"]),
    "session_reuse": ("bench", ["ttft_turn2_ms"]),
}


def key_of(rec):
    bench = rec.get("bench", "")
    if bench in FIGURES:
        return bench, rec[FIGURES[bench][0]], FIGURES[bench][1]
    if "agents" in rec:  # the in-process aggregate rows, one per agent count
        return bench, f"{bench} agents={rec['agents']}", ["system_tps_inproc", "ratio_inproc_over_server"]
    return bench, bench, []


def commit_order(commits):
    def age(c):  # older commits first; a commit git does not know sorts last
        r = subprocess.run(["git", "log", "-1", "--format=%ct", c], capture_output=True, text=True)
        return int(r.stdout.strip() or 1 << 62)
    return sorted(commits, key=age)


def main(path):
    values = defaultdict(list)  # (label, figure, commit) -> values
    labels, commits = {}, set()
    for line in open(path, encoding="utf-8"):
        rec = json.loads(line)
        commit = rec.get("provenance", {}).get("git", {}).get("commit", "?")[:7]
        commits.add(commit)
        _, label, figs = key_of(rec)
        for fig in figs:
            if isinstance(rec.get(fig), (int, float)):
                values[(label, fig, commit)].append(rec[fig])
                labels[(label, fig)] = True
    order = commit_order(commits)
    print(f"{'configuration / figure':62s} " + " ".join(f"{c:>9s}" for c in order) + "  change")
    for label, fig in labels:
        means = [statistics.mean(values[(label, fig, c)]) if values[(label, fig, c)] else None
                 for c in order]
        cells = " ".join(f"{m:9.2f}" if m is not None else f"{'-':>9s}" for m in means)
        change = ""
        if len(means) == 2 and None not in means and means[0]:
            change = f"{100 * (means[1] - means[0]) / means[0]:+6.1f}%"
        print(f"{(label + ' / ' + fig)[:62]:62s} {cells}  {change}")
    print(f"runs per commit: {', '.join(f'{c} {sum(len(v) for k, v in values.items() if k[2] == c)}' for c in order)} values")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
