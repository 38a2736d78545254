#!/usr/bin/python3
"""Checks a records file against docs/records.md (standard library only).

A records file is JSON lines: a header object ("kind":"header") naming the program, its command
line, the endpoint, the backend protocol, N (agents), K (requests per agent) and the
environment, then one object per request. This checks every key docs/records.md names, its
type, and the relations between them (t_send <= t_first_token <= t_last_token <= t_done,
chunks and lags agree, one record per (agent, request), N x K records). It exits 0 when the
file is sound, 1 with a message naming the line and key of the first violations otherwise.

  /usr/bin/python3 bench/peers/check_records.py /tmp/python.jsonl
  /usr/bin/python3 bench/peers/check_records.py --require-ok --tokens-out 32 /tmp/rust.jsonl
"""

import argparse
import json
import sys

INT = "int"
INT_OR_NULL = "int or null"
BOOL = "bool"
STR = "string"
LIST_OF_STR = "array of strings"
OBJECT = "object"
INT_LIST = "array of int"

# docs/records.md, "The record".
RECORD_KEYS = {
    "program": STR,
    "agent": INT,
    "request": INT,
    "ok": BOOL,
    "error": STR,
    "t_send_ns": INT,
    "t_first_token_ns": INT_OR_NULL,
    "t_last_token_ns": INT_OR_NULL,
    "t_done_ns": INT,
    "first_byte_server_ns": INT_OR_NULL,
    "tokens_out": INT_OR_NULL,
    "chunks": INT,
    "lag_sum_ns": INT,
    "lag_max_ns": INT,
    "stalls": INT,
}
OPTIONAL_RECORD_KEYS = {"lags_ns": INT_LIST, "endpoint": STR}

# docs/records.md, the header line: program, command line, endpoint, backend, N, K, environment.
HEADER_KEYS = {
    "kind": STR,
    "program": STR,
    "command": LIST_OF_STR,
    "endpoint": STR,
    "backend": STR,
    "agents": INT,
    "requests_per_agent": INT,
    "env": OBJECT,
}
PROGRAMS = {"chimeraforge", "python", "rust", "python-engine", "floor"}
BACKENDS = {"ollama", "openai"}
STALL_NS = 1_000_000


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true is not a number


def type_ok(value, kind):
    if kind == INT:
        return is_int(value)
    if kind == INT_OR_NULL:
        return value is None or is_int(value)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == STR:
        return isinstance(value, str)
    if kind == LIST_OF_STR:
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if kind == OBJECT:
        return isinstance(value, dict)
    if kind == INT_LIST:
        return isinstance(value, list) and all(is_int(x) for x in value)
    raise AssertionError(kind)


def json_type(value):
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


class Checker:
    def __init__(self, path, strict, require_ok, tokens_out, max_errors):
        self.path = path
        self.strict = strict
        self.require_ok = require_ok
        self.tokens_out = tokens_out
        self.max_errors = max_errors
        self.errors = []

    def fail(self, line_no, key, message):
        where = f"{self.path}:{line_no}"
        self.errors.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    def check_keys(self, line_no, obj, required, optional=None, strict=False):
        for key, kind in required.items():
            if key not in obj:
                self.fail(line_no, key, f"missing (expected {kind})")
            elif not type_ok(obj[key], kind):
                self.fail(line_no, key,
                          f"is {json_type(obj[key])} {obj[key]!r:.80}, expected {kind}")
        for key, kind in (optional or {}).items():
            if key in obj and not type_ok(obj[key], kind):
                self.fail(line_no, key, f"is {json_type(obj[key])}, expected {kind}")
        if strict:
            known = set(required) | set(optional or {})
            for key in obj:
                if key not in known:
                    self.fail(line_no, key, "not a key of docs/records.md (--strict)")

    def check_header(self, line_no, head):
        if head.get("kind") != "header":
            self.fail(line_no, "kind", 'the first line must be the header, with "kind":"header"')
            return
        self.check_keys(line_no, head, HEADER_KEYS)  # a header may say more
        if isinstance(head.get("program"), str) and head["program"] not in PROGRAMS:
            self.fail(line_no, "program", f"{head['program']!r} is none of {sorted(PROGRAMS)}")
        if isinstance(head.get("backend"), str) and head["backend"] not in BACKENDS:
            self.fail(line_no, "backend", f"{head['backend']!r} is none of {sorted(BACKENDS)}")
        for key in ("agents", "requests_per_agent"):
            if is_int(head.get(key)) and head[key] < 1:
                self.fail(line_no, key, f"is {head[key]}, expected at least 1")

    def check_record(self, line_no, rec, head):
        self.check_keys(line_no, rec, RECORD_KEYS, OPTIONAL_RECORD_KEYS, self.strict)
        if any(k not in rec or not type_ok(rec[k], t) for k, t in RECORD_KEYS.items()):
            return  # the relations below need the types right
        if rec["program"] != head.get("program"):
            self.fail(line_no, "program", f"{rec['program']!r} differs from the header's "
                                          f"{head.get('program')!r}")
        n, k = head.get("agents"), head.get("requests_per_agent")
        if is_int(n) and not 0 <= rec["agent"] < n:
            self.fail(line_no, "agent", f"{rec['agent']} is outside 0..{n - 1} (header agents={n})")
        if is_int(k) and not 0 <= rec["request"] < k:
            self.fail(line_no, "request",
                      f"{rec['request']} is outside 0..{k - 1} (header requests_per_agent={k})")
        if rec["ok"] and rec["error"] != "":
            self.fail(line_no, "error", 'must be "" when ok is true')
        if not rec["ok"] and rec["error"] == "":
            self.fail(line_no, "error", "must say what went wrong when ok is false")
        if self.require_ok and not rec["ok"]:
            self.fail(line_no, "ok", f"false (--require-ok): {rec['error']}")

        t_send, t_first, t_last, t_done = (rec["t_send_ns"], rec["t_first_token_ns"],
                                           rec["t_last_token_ns"], rec["t_done_ns"])
        if (t_first is None) != (t_last is None):
            self.fail(line_no, "t_last_token_ns", "t_first_token_ns and t_last_token_ns must both "
                                                  "be null or both be set")
        if (t_first is None) != (rec["chunks"] == 0):
            self.fail(line_no, "chunks", f"is {rec['chunks']} but t_first_token_ns is "
                                         f"{'null' if t_first is None else 'set'}")
        order = [("t_send_ns", t_send), ("t_first_token_ns", t_first),
                 ("t_last_token_ns", t_last), ("t_done_ns", t_done)]
        present = [(name, t) for name, t in order if t is not None]
        for (a, ta), (b, tb) in zip(present, present[1:]):
            if tb < ta:
                self.fail(line_no, b, f"{tb} is before {a} {ta}")
        if t_send <= 0:
            self.fail(line_no, "t_send_ns", f"{t_send} is not a CLOCK_MONOTONIC time")

        for key in ("chunks", "lag_max_ns", "stalls"):
            if rec[key] < 0:
                self.fail(line_no, key, f"{rec[key]} is negative")
        if rec["stalls"] > rec["chunks"]:
            self.fail(line_no, "stalls", f"{rec['stalls']} exceeds chunks {rec['chunks']}")
        if rec["first_byte_server_ns"] is None and (rec["lag_sum_ns"] or rec["lag_max_ns"]
                                                    or rec["stalls"]):
            self.fail(line_no, "lag_sum_ns", "lags without server timestamps "
                                             "(first_byte_server_ns is null)")
        if rec["tokens_out"] is not None and rec["tokens_out"] < 0:
            self.fail(line_no, "tokens_out", f"{rec['tokens_out']} is negative")
        if self.tokens_out is not None and rec["ok"] and rec["tokens_out"] != self.tokens_out:
            self.fail(line_no, "tokens_out", f"is {rec['tokens_out']}, expected "
                                             f"{self.tokens_out} (--tokens-out)")

        lags = rec.get("lags_ns")
        if isinstance(lags, list) and type_ok(lags, INT_LIST):
            with_ts = rec["first_byte_server_ns"] is not None
            if with_ts and len(lags) != rec["chunks"]:
                self.fail(line_no, "lags_ns", f"has {len(lags)} lags for {rec['chunks']} chunks")
            if sum(lags) != rec["lag_sum_ns"]:
                self.fail(line_no, "lag_sum_ns", f"{rec['lag_sum_ns']} is not the sum of lags_ns "
                                                 f"({sum(lags)})")
            if lags and max(lags) != rec["lag_max_ns"]:
                self.fail(line_no, "lag_max_ns", f"{rec['lag_max_ns']} is not the largest of "
                                                 f"lags_ns ({max(lags)})")
            stalls = sum(1 for x in lags if x > STALL_NS)
            if stalls != rec["stalls"]:
                self.fail(line_no, "stalls", f"{rec['stalls']} but lags_ns has {stalls} over 1 ms")

    def run(self):
        try:
            f = open(self.path, encoding="utf-8")
        except OSError as exc:
            self.errors.append(f"{self.path}: cannot read: {exc.strerror}")
            return None
        head = None
        seen = {}
        count = ok = 0
        with f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    self.fail(line_no, None, "an empty line (every line is one JSON object)")
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    self.fail(line_no, None, f"not JSON: {exc.msg} at column {exc.colno}")
                    continue
                if not isinstance(obj, dict):
                    self.fail(line_no, None, f"a JSON {json_type(obj)}, expected an object")
                    continue
                if line_no == 1:
                    self.check_header(line_no, obj)
                    head = obj
                    continue
                if obj.get("kind") == "header":
                    self.fail(line_no, "kind", "a second header line")
                    continue
                count += 1
                ok += obj.get("ok") is True
                self.check_record(line_no, obj, head or {})
                key = (obj.get("agent"), obj.get("request"))
                if key in seen:
                    self.fail(line_no, "request", f"agent {key[0]} request {key[1]} was already "
                                                  f"recorded on line {seen[key]}")
                else:
                    seen[key] = line_no
        if head is None:
            self.errors.append(f"{self.path}: empty: no header line")
            return None
        n, k = head.get("agents"), head.get("requests_per_agent")
        if is_int(n) and is_int(k) and count != n * k:
            self.errors.append(f"{self.path}: {count} records, expected agents x "
                               f"requests_per_agent = {n} x {k} = {n * k}")
        return head, count, ok


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Check a records file against docs/records.md; exit 1 naming the line and "
                    "key of each violation.")
    p.add_argument("files", nargs="+", metavar="FILE", help="records files (JSON lines)")
    p.add_argument("--strict", action="store_true",
                   help="also reject record keys that docs/records.md does not name")
    p.add_argument("--require-ok", action="store_true", help="every request must have ok=true")
    p.add_argument("--tokens-out", type=int, metavar="T",
                   help="every ok request must report exactly T generated tokens")
    p.add_argument("--max-errors", type=int, default=20, metavar="M",
                   help="print at most M violations per file (default 20)")
    args = p.parse_args(argv)
    status = 0
    for path in args.files:
        c = Checker(path, args.strict, args.require_ok, args.tokens_out, args.max_errors)
        result = c.run()
        if c.errors:
            status = 1
            for e in c.errors[:args.max_errors]:
                print(e, file=sys.stderr)
            if len(c.errors) > args.max_errors:
                print(f"{path}: ... and {len(c.errors) - args.max_errors} more", file=sys.stderr)
        else:
            head, count, ok = result
            print(f"{path}: ok: {head['program']} {head['backend']}, {count} records "
                  f"({head['agents']} x {head['requests_per_agent']}), {ok} with ok=true")
    return status


if __name__ == "__main__":
    sys.exit(main())
