#!/usr/bin/env python3
"""First-token latency of one stream at a time, through a keep-alive connection.

Sends N OpenAI chat requests ("stream": true) to each URL in turn and measures, per request, the
time from just before the request is written to the first token chunk read (a `data: {` line whose
delta has content). Prints p50, p99 and the mean per URL, in milliseconds, and the warm-up
requests sent before them, as one JSON object.

By default each URL gets its N requests in turn. With --interleave the URLs take turns request by
request (the order rotated each time), so that a slow or fast spell of the machine falls on all
of them alike: the way to compare two targets whose difference is smaller than the machine's
drift over a run. A target named "direct" (the upstream itself) then also gives, for each other
target, the percentiles of what it added to the direct request of the same turn.

Usage: ttft.py [--interleave] N NAME=http://127.0.0.1:PORT [NAME=URL ...]
"""
import json
import socket
import statistics
import sys
import time
from urllib.parse import urlparse

BODY = json.dumps({"model": "synth", "messages": [{"role": "user", "content": "hi"}],
                   "stream": True, "max_tokens": 4}).encode()


def request_bytes(host):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: " +
            str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


def exchange(sock, req, has_token):
    """Writes one request and reads its response to the chunked body's last chunk, or to the
    connection's close. Returns (ns to the first read where has_token(bytes so far) holds, or
    None; the bytes; whether the connection closed)."""
    # Taken before the write (METRICS.md's t_send): taken after it, a client that the server's
    # woken thread preempts right after its send would leave that time out.
    t0 = time.perf_counter_ns()
    sock.sendall(req)
    got = b""
    first = None
    # The chunked body's last chunk, after the head (whose own end may look like it: "max=100").
    while b"\r\n\r\n" not in got or not got.endswith(b"\r\n0\r\n\r\n"):
        data = sock.recv(65536)
        if not data:
            return first, got, True
        got += data
        if first is None and has_token(got):
            first = time.perf_counter_ns() - t0
    return first, got, False


def one(sock, req):
    """Time to the first token, ns; reads the response to its end (chunked)."""
    first, got, closed = exchange(sock, req, lambda got: b'"content"' in got)
    if closed:
        raise RuntimeError("connection closed mid-response: %r" % got[-200:])
    if first is None:
        raise RuntimeError("no token in %r" % got[:300])
    return first


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def measure(script, name, n, warmup, one, errors=(RuntimeError,)):
    """`warmup` requests, then `n` timed ones (`one(i)`: the i-th request's first token, ns);
    their figures, in ms. A request that fails in one of `errors` ends the script, naming it."""
    for i in range(warmup):
        one(i)
    samples = []
    for i in range(n):
        try:
            samples.append(one(warmup + i) / 1e6)
        except errors as e:
            sys.exit("%s: %s, request %d: %s" % (script, name, i, e))
    return summary(samples, n, warmup)


def summary(samples, n, warmup):
    return {"n": n, "warmup": warmup, "p50_ms": round(pct(samples, 50), 4),
            "p99_ms": round(pct(samples, 99), 4), "mean_ms": round(statistics.fmean(samples), 4)}


def connect(url):
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, request_bytes("%s:%d" % (u.hostname, u.port))


def interleaved(n, targets, warmup):
    """N requests to each (name, url), taking turns request by request."""
    conns = [(name,) + connect(url) for name, url in targets]
    samples = {name: [] for name, _, _ in conns}
    for i in range(warmup + n):
        k = i % len(conns)
        for name, sock, req in conns[k:] + conns[:k]:
            try:
                t = one(sock, req) / 1e6
            except RuntimeError as e:
                sys.exit("ttft.py: %s, request %d: %s" % (name, i, e))
            if i >= warmup:
                samples[name].append(t)
    for _, sock, _ in conns:
        sock.close()
    out = {name: summary(s, n, warmup) for name, s in samples.items()}
    # With a target named "direct" (the upstream itself), what each other target added to it,
    # request by request within a turn: the percentiles of those differences.
    if "direct" in samples:
        base = samples["direct"]
        for name, s in samples.items():
            if name != "direct":
                added = [a - b for a, b in zip(s, base)]
                out[name]["added_p50_ms"] = round(pct(added, 50), 4)
                out[name]["added_p99_ms"] = round(pct(added, 99), 4)
    return out


def main():
    args = sys.argv[1:]
    interleave = bool(args) and args[0] == "--interleave"
    if interleave:
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    n = int(args[0])
    targets = [arg.split("=", 1) for arg in args[1:]]
    warmup = min(20, n)  # connections, caches
    if interleave:
        print(json.dumps(interleaved(n, targets, warmup)))
        return
    out = {}
    for name, url in targets:
        sock, req = connect(url)
        out[name] = measure("ttft.py", name, n, warmup, lambda _: one(sock, req))
        sock.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
