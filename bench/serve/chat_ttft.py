#!/usr/bin/env python3
"""First-token latency of chat requests whose prompts all differ, one at a time.

Each request asks about a different room ("Describe room 17 of the castle."), as an agent's turns
differ: a server may reuse the cells of the shared beginning (llama-server and serve both do),
but renders the chat template, tokenizes and decodes the rest anew. Per request: the time from just
before the request is written to the first content chunk read (an OpenAI `data:` line whose delta
carries a content string). One keep-alive connection; a new one, before the clock starts, when the
server closed it. Prints p50, p99 and the mean per URL, in milliseconds, as one JSON object.

Usage: chat_ttft.py N NAME=http://127.0.0.1:PORT [NAME=URL ...]
"""
import json
import socket
import sys
import time
from urllib.parse import urlparse

from ttft import measure  # beside this file

WARMUP = 8


def request_bytes(host, i):
    body = json.dumps({"model": "m", "messages": [
        {"role": "system", "content": "You are the castle's guide."},
        {"role": "user", "content": "Describe room %d of the castle." % i}],
        "stream": True, "max_tokens": 4}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


class Client:
    def __init__(self, url):
        u = urlparse(url)
        self.addr = (u.hostname, u.port)
        self.host = "%s:%d" % self.addr
        self.sock = None

    def one(self, i):
        """Time to the first content chunk, ns; reads the response to its end. A kept-alive
        connection that the server had closed meanwhile (llama-server does) is replaced and the
        request sent again, the clock started again."""
        req = request_bytes(self.host, i)
        for _ in range(2):
            fresh = self.sock is None
            if fresh:
                self.sock = socket.create_connection(self.addr)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.perf_counter_ns()  # before the write (METRICS.md's t_send)
            try:
                self.sock.sendall(req)
            except OSError:
                if fresh:
                    raise
                self.close()
                continue
            got = b""
            first = None
            data = b""
            while not (got.endswith(b"\r\n0\r\n\r\n") or got.endswith(b"data: [DONE]\n\n")):
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    break
                got += data
                if first is None and b'"content":"' in got:
                    first = time.perf_counter_ns() - t0
            if not got and not fresh:
                self.close()
                continue
            if not data or b"connection: close" in got.lower().split(b"\r\n\r\n", 1)[0]:
                self.close()
            if first is None:
                raise RuntimeError("no content chunk in %r" % got[:300])
            return first
        raise RuntimeError("the server closed a new connection without an answer")

    def close(self):
        self.sock.close()
        self.sock = None


def main():
    n = int(sys.argv[1])
    out = {}
    for k, arg in enumerate(sys.argv[2:]):
        name, url = arg.split("=", 1)
        c = Client(url)
        base = 1000 * (k + 1)  # prompts no other URL in this run saw
        out[name] = measure("chat_ttft.py", name, n, WARMUP, lambda i: c.one(base + i),
                            (RuntimeError, OSError))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
