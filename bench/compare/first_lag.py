#!/usr/bin/env python3
"""How late each request's first token chunk was read, against the chunks after it.

A chunk's lag is how long after the server wrote it the client read it (`lags_ns` of a record
made with --record-lags, docs/records.md). The first chunk of a request is the one that waits on
whatever the client does between sending a request and reading its reply; the later chunks of a
steady stream do not. This reads the records files that `compare.py --keep-records DIR` keeps
and prints, per file: the first chunk's lag at p50 and p90 for each agent's first request and
for its later ones, and the later chunks' lag at p50 and p90, in milliseconds.

Usage: first_lag.py DIR [--match TEXT]   (files named conc-N-...jsonl; TEXT filters their names)
  e.g. first_lag.py /tmp/records --match conc-1000-pinned
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import percentile  # noqa: E402  (the harness's nearest-rank percentile)


def pct(values, p):
    """The p-th percentile of `values` (ns) in ms, as compare.py takes it; None for none."""
    v = percentile(values, p)
    return None if v is None else v / 1e6


def summarize(path):
    """(first chunks of first requests, of later requests, later chunks): lags in ns, sorted."""
    first0, first_later, rest = [], [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"first_lag.py: {path}:{line_no}: not JSON: {e}") from None
            lags = rec.get("lags_ns")
            if rec.get("kind") == "header" or not rec.get("ok") or not lags:
                continue
            (first0 if rec.get("request") == 0 else first_later).append(lags[0])
            rest.extend(lags[1:])
    return sorted(first0), sorted(first_later), sorted(rest)


def fmt(values):
    if not values:
        return "      -       -"
    return f"{pct(values, 50):7.2f} {pct(values, 90):7.2f}"


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", help="a folder of records files (compare.py --keep-records DIR)")
    p.add_argument("--match", default="", help="only the files whose names contain this")
    a = p.parse_args(argv)
    files = sorted(f for f in Path(a.dir).glob("conc-*.jsonl") if a.match in f.name)
    if not files:
        raise SystemExit(f"first_lag.py: no records files (conc-*.jsonl) in {a.dir}"
                         + (f" matching '{a.match}'" if a.match else ""))
    print(f"{'records file':44} {'first chunk, request 0':>22} {'first chunk, later':>20} "
          f"{'later chunks':>16}")
    both = f"{'p50':>7} {'p90':>7}"  # ms, as fmt() prints them
    print(f"{'(lag, ms)':44} {both:>22} {both:>20} {both:>16}")
    for f in files:
        first0, first_later, rest = summarize(f)
        print(f"{f.name:44} {fmt(first0):>22} {fmt(first_later):>20} {fmt(rest):>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
