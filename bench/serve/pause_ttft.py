#!/usr/bin/env python3
"""First-token latency of one client whose requests come back to back or after a pause.

Sends N streamed chat requests ("stream": true, max_tokens 16) on one keep-alive connection (a
new one when the server closes it), waiting PAUSE_MS after each response before the next, and
measures, per request, the time from just before it is written to the first content chunk
read. A
response without content (a model that ended at once) is counted and left out. Prints one JSON
object: p50, p90 and the largest, in ms.

Usage: pause_ttft.py URL N PAUSE_MS
"""
import json
import socket
import sys
import time
from urllib.parse import urlparse

from ttft import exchange  # beside this file

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Once upon a time"}],
                   "stream": True, "max_tokens": 16}).encode()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    u = urlparse(sys.argv[1])
    n = int(sys.argv[2])
    pause = float(sys.argv[3]) / 1000
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + u.netloc.encode() +
           b"\r\nContent-Type: application/json\r\nContent-Length: " +
           str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
    sock = None
    samples = []
    empty = 0
    for i in range(n):
        if sock is None:
            sock = socket.create_connection((u.hostname, u.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first, got, closed = exchange(
            sock, req, lambda got: b'"content":"' in got.replace(b'"content":""', b""))
        if not got.startswith(b"HTTP/1.1 200"):
            sys.exit("pause_ttft.py: request %d: %r" % (i, got[:300]))
        if closed or b"connection: close" in got.split(b"\r\n\r\n")[0].lower():
            sock.close()
            sock = None
        if first is None:
            empty += 1
        else:
            samples.append(first / 1e6)
        time.sleep(pause)
    if not samples:
        sys.exit("pause_ttft.py: no response had content")
    s = sorted(samples)
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 3)
    print(json.dumps({"n": len(s), "without_content": empty, "pause_ms": sys.argv[3],
                      "p50_ms": pick(0.5), "p90_ms": pick(0.9), "max_ms": round(s[-1], 3)}))


if __name__ == "__main__":
    main()
