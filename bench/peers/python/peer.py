#!/usr/bin/python3
"""The Python peer: N concurrent agents, each making K sequential streaming chat requests.

It is the program a careful Python developer would write for the job, on Debian's own packages
(python3-httpx 0.23): asyncio, one shared httpx.AsyncClient whose pool keeps a connection per
agent alive, streamed responses read line by line as they arrive. It writes one record per
request as docs/records.md defines them, so the same harness computes every figure of
METRICS.md for this program, the Rust peer and chimeraforge alike.

Run it with /usr/bin/python3 (the python3 first on PATH may lack Debian's packages).
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import time

try:
    import httpx
except ImportError:
    sys.exit(f"peer.py: httpx is missing from {sys.executable}: run it with /usr/bin/python3 "
             "(Debian's python3-httpx; scripts/setup-peers.sh installs it)")

PROGRAM = "python"
RETRIES = [0]  # requests retried on a new connection (for the summary line)
STALL_NS = 1_000_000  # docs/records.md: a chunk is a stall when its delivery_lag exceeds 1 ms
ERROR_EXCERPT = 300


def excerpt(text, limit=ERROR_EXCERPT):
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def error_text(value):
    """A server's error field in words: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def describe(exc):
    """An exception in words: its type and message (httpx messages are often empty)."""
    message = str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


class StreamError(Exception):
    """The server said, inside a stream, that the request failed."""


class Request:
    """One request's record, filled in as the stream is read (keys as docs/records.md)."""

    __slots__ = ("agent", "index", "t_send", "t_first", "t_last", "first_byte_server",
                 "tokens_out", "chunks", "lag_sum", "lag_max", "stalls", "lags", "text",
                 "finished")

    def __init__(self, agent, index, record_lags):
        self.agent = agent
        self.index = index
        self.t_send = None
        self.t_first = None
        self.t_last = None
        self.first_byte_server = None
        self.tokens_out = None
        self.chunks = 0
        self.lag_sum = 0
        self.lag_max = 0
        self.stalls = 0
        self.lags = [] if record_lags else None
        self.text = []  # what an agent would keep: the reply
        self.finished = False  # the server said the answer is complete

    def token(self, obj, content):
        """Hands one token-bearing chunk to the caller: the per-chunk figures of METRICS.md."""
        now = time.monotonic_ns()
        if self.t_first is None:
            self.t_first = now
            sent = obj.get("server_sent_ns")
            if isinstance(sent, int):
                self.first_byte_server = sent
        self.t_last = now
        self.chunks += 1
        sent = obj.get("server_sent_ns")
        if isinstance(sent, int):
            lag = now - sent
            self.lag_sum += lag
            if lag > self.lag_max:
                self.lag_max = lag
            if lag > STALL_NS:
                self.stalls += 1
            if self.lags is not None:
                self.lags.append(lag)
        self.text.append(content)

    def record(self, ok, error, t_done):
        rec = {
            "program": PROGRAM,
            "agent": self.agent,
            "request": self.index,
            "ok": ok,
            "error": error,
            "t_send_ns": self.t_send,
            "t_first_token_ns": self.t_first,
            "t_last_token_ns": self.t_last,
            "t_done_ns": t_done,
            "first_byte_server_ns": self.first_byte_server,
            "tokens_out": self.tokens_out,
            "chunks": self.chunks,
            "lag_sum_ns": self.lag_sum,
            "lag_max_ns": self.lag_max,
            "stalls": self.stalls,
        }
        if self.lags is not None:
            rec["lags_ns"] = self.lags
        return rec


# --- the two protocols: the request body and what one decoded stream record means ---

def ollama_body(args):
    return {
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "options": {"num_predict": args.max_tokens},
        "stream": True,
    }


def ollama_record(obj, req):
    """One NDJSON line of /api/chat."""
    if "error" in obj:
        raise StreamError("the server reported an error mid-stream: "
                          f"{excerpt(error_text(obj['error']))}")
    msg = obj.get("message") or {}
    content = msg.get("content") or ""
    thinking = msg.get("thinking") or ""
    if content or thinking or msg.get("tool_calls"):
        req.token(obj, content)
    if obj.get("done"):
        count = obj.get("eval_count")
        if isinstance(count, int):
            req.tokens_out = count
        req.finished = True


def openai_body(args):
    return {
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def openai_record(obj, req):
    """The JSON of one SSE `data:` event of /v1/chat/completions."""
    if "error" in obj:
        raise StreamError("the server reported an error mid-stream: "
                          f"{excerpt(error_text(obj['error']))}")
    for choice in obj.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue  # one choice was asked for
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        if content or reasoning or delta.get("tool_calls"):
            req.token(obj, content)
        if choice.get("finish_reason"):
            req.finished = True
    usage = obj.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        req.tokens_out = usage["completion_tokens"]
    timings = obj.get("timings")
    if req.tokens_out is None and isinstance(timings, dict):
        n = timings.get("predicted_n")
        if isinstance(n, int):
            req.tokens_out = n


async def lines(response, httpx_lines):
    """The body's lines, as they arrive, without their line ends.

    By default the bytes are split on b"\\n" as they come (aiter_bytes), which is what the
    Rust peer and chimeraforge do too. Debian's httpx 0.23 splits aiter_lines() in a
    per-character Python loop, 30-50 us for one 150-270-byte token chunk against 5 us for its
    JSON (httpx 0.24 rewrote it); --httpx-lines selects it anyway, to measure that cost.
    """
    if httpx_lines:
        async for line in response.aiter_lines():
            yield line.rstrip("\r\n")
        return
    pending = b""
    async for data in response.aiter_bytes():
        pending += data
        if b"\n" not in data:
            continue
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


async def read_ndjson(response, req, httpx_lines):
    async for line in lines(response, httpx_lines):
        if line.strip():
            ollama_record(json.loads(line), req)


async def read_sse(response, req, httpx_lines):
    event = ""
    async for line in lines(response, httpx_lines):
        if not line:
            event = ""  # the end of one event
        elif line.startswith("data:"):
            data = line[5:].lstrip(" ")
            if data == "[DONE]":
                req.finished = True
                continue
            if event == "error":
                raise StreamError(f"the server sent an error event mid-stream: {excerpt(data)}")
            openai_record(json.loads(data), req)
        elif line.startswith("event:"):
            event = line[6:].strip()
        # comments (":") and other fields carry nothing for us


PROTOCOLS = {
    # backend: (path, body, reader, what a complete stream ends with)
    "ollama": ("/api/chat", ollama_body, read_ndjson, '"done":true'),
    "openai": ("/v1/chat/completions", openai_body, read_sse, "a finish_reason or [DONE]"),
}


def request_url(endpoint, backend):
    base = endpoint.rstrip("/")
    path = PROTOCOLS[backend][0]
    if backend == "openai" and base.endswith("/v1"):
        path = path[len("/v1"):]
    return base + path


# --- one request, with the retry rule ---

def is_stale_connection_error(exc):
    """What a pooled connection the server has already closed produces before any response byte."""
    return isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError))


async def attempts(clients, url, body, reader, ending, req, trace_state, httpx_lines):
    """Sends the request (retried once per the rule above) and reads its stream into `req`.
    Returns the error in words, "" when the request completed."""

    async def trace(event, info):
        # httpx's documented trace extension: the moment the request's first byte goes to the
        # socket (METRICS.md t_send), and whether this attempt had to open a connection.
        if event == "connection.connect_tcp.started":
            trace_state["new_connection"] = True
        elif event == "http11.send_request_headers.started" and req.t_send is None:
            req.t_send = time.monotonic_ns()  # a retry keeps the first attempt's t_send

    for attempt_no in (0, 1):
        # The retry takes a new connection: the pool may hold more that the server closed.
        client = clients[0] if attempt_no == 0 else clients[1]
        trace_state["new_connection"] = False
        got_response = False
        try:
            async with client.stream("POST", url, json=body,
                                     extensions={"trace": trace}) as response:
                got_response = True
                if response.status_code // 100 != 2:
                    text = (await response.aread()).decode("utf-8", "replace")
                    return f"HTTP {response.status_code} from POST {url}: {excerpt(text)}"
                await reader(response, req, httpx_lines)
            break
        except httpx.TransportError as exc:
            if (attempt_no == 0 and not got_response and not trace_state["new_connection"]
                    and is_stale_connection_error(exc)):
                RETRIES[0] += 1
                continue
            raise
    if not req.finished:
        return f"the stream from {url} ended without {ending} after {req.chunks} chunks"
    return ""


async def one_request(clients, url, body, reader, ending, req, timeout_s, httpx_lines):
    """Runs one streaming request into `req` and returns its record (never raises)."""
    fallback_t_send = time.monotonic_ns()
    try:
        # wait_for, not asyncio.timeout(): httpcore's anyio backend can turn the latter's
        # cancellation into a bare CancelledError.
        error = await asyncio.wait_for(
            attempts(clients, url, body, reader, ending, req, {"new_connection": False},
                     httpx_lines),
            timeout_s)
    except StreamError as exc:
        error = f"{url}: {exc}"
    except (TimeoutError, httpx.TimeoutException):
        error = (f"{url}: no complete answer within --timeout {timeout_s:g} s "
                 f"after {req.chunks} chunks")
    except httpx.ConnectError as exc:
        error = f"cannot connect to {url}: {describe(exc)}; is the server running?"
    except httpx.HTTPError as exc:
        error = f"{url}: {describe(exc)} after {req.chunks} chunks"
    except json.JSONDecodeError as exc:
        error = f"{url}: a stream record is not JSON: {exc}"
    except Exception as exc:  # a record says what went wrong; the run goes on
        error = f"{url}: {describe(exc)}"
    t_done = time.monotonic_ns()
    if req.t_send is None:
        req.t_send = fallback_t_send  # nothing reached the socket (e.g. no connection)
    return req.record(not error, error, t_done)


async def agent(agent_id, args, clients, url, body, reader, ending, records, t_start):
    if args.stagger_ms > 0:
        # Agent i starts at i/N of the stagger window, as every program compared does.
        start = t_start + args.stagger_ms * 1e6 * agent_id / args.agents
        delay = (start - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
    for k in range(args.requests_per_agent):
        req = Request(agent_id, k, args.record_lags)
        records.append(await one_request(clients, url, body, reader, ending, req, args.timeout,
                                         args.httpx_lines))


def make_client(args, keepalive):
    # Plain-HTTP endpoints never do a TLS handshake, so the CA bundle (25 ms to load) is only
    # loaded for https ones; https keeps full verification.
    verify = args.endpoint.lower().startswith("https:")
    if verify and args.ca_file:
        verify = args.ca_file  # a private CA (PEM) instead of the system's, still verified
    limits = httpx.Limits(max_connections=max(args.agents, 1),
                          max_keepalive_connections=max(args.agents, 1) if keepalive else 0)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(args.timeout), verify=verify)


async def run(args):
    path, make_body, reader, ending = PROTOCOLS[args.backend]
    url = request_url(args.endpoint, args.backend)
    body = make_body(args)
    records = []
    # One client shared by every agent (its pool keeps one connection per agent alive), and one
    # that keeps none, used only to retry a request that a closed pooled connection lost.
    async with make_client(args, True) as shared, make_client(args, False) as fresh:
        t0 = time.monotonic_ns()
        await asyncio.gather(*(agent(a, args, (shared, fresh), url, body, reader, ending, records,
                                     t0)
                               for a in range(args.agents)))
        t1 = time.monotonic_ns()
    return url, records, t1 - t0


# --- the records file ---

def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(args, url):
    import httpcore  # only for its version
    return {
        "kind": "header",
        "program": PROGRAM,
        "command": [sys.executable] + sys.argv,
        "endpoint": args.endpoint,
        "url": url,
        "backend": args.backend,
        "agents": args.agents,
        "requests_per_agent": args.requests_per_agent,
        "model": args.model,
        "prompt": args.prompt,
        "max_tokens": args.max_tokens,
        "record_lags": args.record_lags,
        "timeout_s": args.timeout,
        "line_reader": "httpx aiter_lines" if args.httpx_lines else "aiter_bytes split on newline",
        "env": {
            "python": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "httpx": httpx.__version__,
            "httpcore": httpcore.__version__,
            "event_loop": type(asyncio.get_event_loop_policy()).__name__,
            "os": platform.platform(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "hostname": platform.node(),
        },
    }


def write_records(path, head, records):
    records.sort(key=lambda r: (r["agent"], r["request"]))
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(head, separators=(",", ":")) + "\n")
        for rec in records:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def summary(records, wall_ns):
    ok = [r for r in records if r["ok"]]
    tokens = sum(r["tokens_out"] or 0 for r in ok)
    sends = [r["t_send_ns"] for r in records]
    lasts = [r["t_last_token_ns"] for r in records if r["t_last_token_ns"] is not None]
    span = (max(lasts) - min(sends)) if lasts and sends else 0
    tps = tokens / span * 1e9 if span > 0 else 0.0
    line = (f"{PROGRAM}: {len(ok)}/{len(records)} requests ok, {tokens} tokens, "
            f"wall {wall_ns / 1e9:.3f} s, system_tps {tps:.1f} (derived: tokens / "
            f"(last token - first send))")
    line += f", {RETRIES[0]} retried on a new connection"
    failed = [r for r in records if not r["ok"]]
    if failed:
        line += f"; first error: {failed[0]['error']}"
    return line


HELP_EPILOG = """\
examples:
  # 4 agents x 5 requests against llama-server (OpenAI protocol), records to a file
  /usr/bin/python3 peer.py --endpoint http://127.0.0.1:8080 --backend openai \\
      --agents 4 --requests-per-agent 5 --model tiny --prompt 'Say hi' --max-tokens 32 \\
      --records /tmp/python.jsonl

  # 100 agents against Ollama's /api/chat (or chimeraforge synth-server), with every lag
  /usr/bin/python3 peer.py --endpoint http://127.0.0.1:11434 --backend ollama \\
      --agents 100 --requests-per-agent 3 --model llama3.2:1b --prompt hi --max-tokens 64 \\
      --records /tmp/python.jsonl --record-lags

  # startup: one request, then exit (the server notes when its first byte arrives)
  /usr/bin/python3 peer.py --endpoint http://127.0.0.1:8080 --backend openai \\
      --model tiny --prompt hi --max-tokens 1 --startup-probe

The records file (docs/records.md) starts with a header line ("kind":"header") followed by one
JSON object per request; bench/peers/check_records.py validates one. Requests that fail are
recorded with "ok":false and the error in words; the run goes on. A request that fails on a
reused connection before any response byte (llama-server closes streaming connections while
advertising keep-alive) is retried once on a new connection, keeping its first t_send.
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="peer.py",
        description=("N concurrent agents, each making K sequential streaming chat requests\n"
                     "to an Ollama or OpenAI-compatible server, with asyncio and one shared\n"
                     "httpx.AsyncClient; writes one record per request (docs/records.md)."),
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True, metavar="URL",
                   help="server base URL, e.g. http://127.0.0.1:11434 (the path is added)")
    p.add_argument("--backend", required=True, choices=sorted(PROTOCOLS),
                   help="ollama: POST /api/chat (NDJSON); openai: POST /v1/chat/completions (SSE)")
    p.add_argument("--agents", type=int, default=1, metavar="N",
                   help="concurrent agents, each an asyncio task (default 1)")
    p.add_argument("--requests-per-agent", type=int, default=1, metavar="K",
                   help="sequential requests each agent makes (default 1)")
    p.add_argument("--model", default="default", metavar="M",
                   help="model name sent to the server (default 'default')")
    p.add_argument("--prompt", default="Hello", metavar="TEXT",
                   help="the user message of every request (default 'Hello')")
    p.add_argument("--max-tokens", type=int, default=32, metavar="T",
                   help="tokens to generate: options.num_predict (ollama) or max_tokens (openai)")
    p.add_argument("--records", metavar="FILE",
                   help="write the records here (JSON lines, header first); required unless "
                        "--startup-probe")
    p.add_argument("--stagger-ms", type=float, default=0.0,
                   help="spread the agents' starts evenly over this many ms (agent i waits i/N "
                        "of it), as `chimeraforge multi --stagger-ms` does")
    p.add_argument("--record-lags", action="store_true",
                   help="also store every chunk's delivery_lag in lags_ns")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="give up on a request not complete S seconds after it started "
                        "(default 300)")
    p.add_argument("--httpx-lines", action="store_true",
                   help="read lines with httpx's aiter_lines() instead of splitting aiter_bytes() "
                        "(slow in Debian's httpx 0.23; for measuring that cost)")
    p.add_argument("--ca-file", metavar="FILE",
                   help="https: PEM file of the CA certificates to trust instead of the system's")
    p.add_argument("--startup-probe", action="store_true",
                   help="make exactly one request (1 agent x 1) and exit; for measuring startup")
    args = p.parse_args(argv)
    if args.startup_probe:
        args.agents = 1
        args.requests_per_agent = 1
    elif not args.records:
        p.error("--records FILE is required (unless --startup-probe)")
    for name in ("agents", "requests_per_agent", "max_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    url, records, wall_ns = asyncio.run(run(args))
    if args.records:
        try:
            write_records(args.records, header(args, url), records)
        except OSError as exc:
            print(f"{PROGRAM}: cannot write the records to {args.records}: {exc}", file=sys.stderr)
            return 2
    print(summary(records, wall_ns), file=sys.stderr)
    return 0 if any(r["ok"] for r in records) else 1  # 1: nothing was measured


if __name__ == "__main__":
    sys.exit(main())
