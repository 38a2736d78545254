#!/usr/bin/env python3
"""Concurrent streams against an OpenAI-compatible URL: first-token latency and tokens/s.

C clients at once, each on its own keep-alive connection (a new one when the server closed it),
each sending R streamed chat requests ("stream": true, max_tokens M) one after another. Per
request: the time from just before the request is written to the first content chunk read, and the
content chunks that came. Prints one JSON object: TTFT p50/p99/mean in ms, the TTFT p50 of every
client's first request, of its second, and so on (ttft_p50_by_request_ms: the first also opens
the connection, and a proxy its upstream connection), aggregate content chunks per second over
the run's wall time, and, with --pid, the process's peak and final resident memory while it ran
(VmHWM and VmRSS of /proc/PID/status, KiB; the peak is reset first where the kernel allows, so it
is this run's).

Usage: load.py URL --clients C [--requests R] [--max-tokens M] [--pid PID] [--name NAME]
"""
import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlparse


def request_bytes(host, max_tokens):
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Once upon a time"}],
                       "stream": True, "max_tokens": max_tokens}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


async def one(reader, writer, req):
    """(ttft ns, content chunks) of one streamed request; reads the chunked body to its end."""
    t0 = time.perf_counter_ns()  # before the write (METRICS.md's t_send)
    writer.write(req)
    await writer.drain()
    got = b""
    first = None
    # The chunked body's last chunk, after the head (whose own end may look like it: "max=100").
    while b"\r\n\r\n" not in got or not got.endswith(b"\r\n0\r\n\r\n"):
        data = await reader.read(65536)
        if not data and not got:
            raise ConnectionAbortedError("closed before the response")
        if not data:
            raise RuntimeError("connection closed mid-response: %r" % got[-200:])
        got += data
        if first is None and b'"content":"' in got.replace(b'"content":""', b""):
            first = time.perf_counter_ns() - t0
    if first is None:
        raise RuntimeError("no token in %r" % got[:300])
    chunks = got.count(b'"content":"') - got.count(b'"content":""')
    return first, chunks


async def client(url, requests, max_tokens, ttfts, counts, errors, by_index):
    u = urlparse(url)
    req = request_bytes("%s:%d" % (u.hostname, u.port), max_tokens)
    writer = None
    try:
        for i in range(requests):
            for fresh in (False, True):
                # A new connection when there is none, or when the server closed the kept one
                # (llama-server closes after each streamed response while saying keep-alive).
                if writer is None or fresh:
                    if writer is not None:
                        writer.close()
                    reader, writer = await asyncio.open_connection(u.hostname, u.port,
                                                                   limit=1 << 20)
                try:
                    t, n = await one(reader, writer, req)
                    break
                except (ConnectionAbortedError, ConnectionResetError, BrokenPipeError):
                    if fresh:
                        raise
            ttfts.append(t / 1e6)
            by_index[i].append(t / 1e6)
            counts.append(n)
    except (RuntimeError, OSError) as e:
        errors.append(str(e))
    finally:
        if writer is not None:
            writer.close()


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--name", default="")
    a = ap.parse_args()
    if a.pid:
        try:  # resets VmHWM to the current RSS (Linux 4.0+)
            with open("/proc/%d/clear_refs" % a.pid, "w") as f:
                f.write("5")
        except OSError:
            pass
    ttfts, counts, errors = [], [], []
    by_index = [[] for _ in range(a.requests)]  # TTFTs of each client's i-th request
    t0 = time.perf_counter()
    await asyncio.gather(*(client(a.url, a.requests, a.max_tokens, ttfts, counts, errors,
                                  by_index) for _ in range(a.clients)))
    wall = time.perf_counter() - t0
    out = {"name": a.name, "clients": a.clients, "requests": len(ttfts),
           "max_tokens": a.max_tokens, "errors": len(errors)}
    if ttfts:
        out.update({"ttft_p50_ms": round(pct(ttfts, 50), 3), "ttft_p99_ms": round(pct(ttfts, 99), 3),
                    "ttft_mean_ms": round(statistics.fmean(ttfts), 3),
                    "tokens_per_s": round(sum(counts) / wall, 1), "wall_s": round(wall, 2),
                    # p50 of every client's first request, second, ...: a first request also
                    # opens its connection (and a proxy's upstream connection)
                    "ttft_p50_by_request_ms": [round(pct(v, 50), 3) for v in by_index if v]})
    if a.pid:
        out["rss_peak_kib"] = status_kib(a.pid, "VmHWM")
        out["rss_kib"] = status_kib(a.pid, "VmRSS")
    if errors:
        out["first_error"] = errors[0][:300]
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
