#!/usr/bin/python3
"""The Python-orchestrated engine: N concurrent agents, each making K sequential streaming chat
requests, orchestrated by asyncio in Python and executed by the C++ engine (chimeraforge).

The same job, flags and per-request records (docs/records.md, program "python-engine") as the
Python peer (bench/peers/python/peer.py) and `chimeraforge multi`, so that one harness computes
every METRICS.md figure for all of them. Two ways to write the agent:

  --mode result   `await engine.chat(...)`: the engine streams and measures every chunk on its
                  own thread (t_first_token, delivery lags), Python gets the finished answer.
                  What an agent that needs the whole answer does; no Python on the per-token
                  path. t_done_ns is when the answer reached the agent's coroutine.
  --mode stream   `async for chunk in engine.stream(...)`: every chunk is handed to Python and
                  the figures are taken there, as the peer does (t_first_token and each lag are
                  read in the agent's loop when the chunk arrives).

Run it with /usr/bin/python3 and the chimeraforge package importable (PYTHONPATH=build/python,
or the .pth the build writes).
"""

import argparse
import asyncio
import os
import platform
import sys
import time

try:
    import chimeraforge as cf
except ImportError:
    sys.exit("engine_agents.py: chimeraforge is not importable: build it (cmake --build build) "
             "and run with /usr/bin/python3, or set PYTHONPATH=build/python")

PROGRAM = "python-engine"
STALL_NS = 1_000_000


async def agent_result(engine, i, args, messages, records):
    for k in range(args.requests_per_agent):
        r = await engine.chat(messages, model=args.model, max_tokens=args.max_tokens,
                              agent=f"agent-{i}", pin=i, record_lags=args.record_lags,
                              check=False)
        records.append(r.record(i, k, PROGRAM))


async def agent_stream(engine, i, args, messages, records):
    for k in range(args.requests_per_agent):
        t_first = t_last = first_byte = None
        chunks = lag_sum = lag_max = stalls = 0
        lags = [] if args.record_lags else None
        stream = engine.stream(messages=messages, model=args.model, max_tokens=args.max_tokens,
                               agent=f"agent-{i}", pin=i, check=False)
        async for c in stream:
            now = time.monotonic_ns()
            if t_first is None:
                t_first = now
                first_byte = c.server_sent_ns or None
            t_last = now
            chunks += c.pieces
            if c.server_sent_ns:
                lag = now - c.server_sent_ns
                lag_sum += lag * c.pieces
                lag_max = max(lag_max, lag)
                if lag > STALL_NS:
                    stalls += c.pieces
                if lags is not None:
                    lags.extend([lag] * c.pieces)
        t_done = time.monotonic_ns()
        r = stream.result
        rec = {"program": PROGRAM, "agent": i, "request": k, "ok": r.ok,
               "error": r.error_message, "t_send_ns": r.t_send_ns or t_done,
               "t_first_token_ns": t_first, "t_last_token_ns": t_last, "t_done_ns": t_done,
               "first_byte_server_ns": first_byte, "tokens_out": r.tokens_out,
               "chunks": chunks, "lag_sum_ns": lag_sum, "lag_max_ns": lag_max, "stalls": stalls}
        if lags is not None:
            rec["lags_ns"] = lags
        records.append(rec)


async def run(args):
    ep = cf.Endpoint(args.endpoint, backend=args.backend,
                     limits=cf.Limits(max_idle_connections=args.agents + 1),
                     timeouts=cf.Timeouts(total_ms=int(args.timeout * 1000)))
    messages = [{"role": "user", "content": args.prompt}]
    records = []
    body = agent_result if args.mode == "result" else agent_stream
    async with cf.Engine(pools=cf.Pool(endpoints=[ep], model=args.model),
                         executor=args.executor, threads=args.threads) as engine:
        if args.bridge == "direct":
            loop = asyncio.get_running_loop()
            bridge = cf._native.Bridge(loop, direct=True)
            engine._bridges[loop] = bridge
            engine._bridge_cache = (loop, bridge)
        t0 = time.monotonic_ns()

        async def agent(i):
            if args.stagger_ms > 0:
                delay = (t0 + args.stagger_ms * 1e6 * i / args.agents - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
            await body(engine, i, args, messages, records)

        await asyncio.gather(*(agent(i) for i in range(args.agents)))
        wall = time.monotonic_ns() - t0
    return records, wall


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--backend", required=True, choices=["ollama", "openai"])
    p.add_argument("--agents", type=int, default=1)
    p.add_argument("--requests-per-agent", type=int, default=1)
    p.add_argument("--model", default="default")
    p.add_argument("--prompt", default="Hello")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--records", required=True)
    p.add_argument("--record-lags", action="store_true")
    p.add_argument("--stagger-ms", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--mode", choices=["result", "stream"], default="result")
    p.add_argument("--executor", default="single",
                   choices=["single", "shared", "per-core", "thread-per-agent"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--bridge", choices=["thread", "direct"], default="thread",
                   help="how the engine wakes the event loop: a notifier thread (default), or "
                        "the I/O thread itself (for measuring the difference)")
    args = p.parse_args(argv)
    records, wall = asyncio.run(run(args))
    cf.write_records(args.records, records, program=PROGRAM, agents=args.agents,
                     requests_per_agent=args.requests_per_agent, endpoint=args.endpoint,
                     backend=args.backend, model=args.model, prompt=args.prompt,
                     max_tokens=args.max_tokens, record_lags=args.record_lags,
                     stagger_ms=args.stagger_ms, mode=args.mode, executor=args.executor,
                     env={"python": platform.python_version(), "chimeraforge": cf.__version__,
                          "mode": args.mode, "executor": args.executor, "bridge": args.bridge,
                          "os": platform.platform(), "cpu_count": os.cpu_count()})
    ok = sum(1 for r in records if r["ok"])
    print(f"{PROGRAM} ({args.mode}): {ok}/{len(records)} requests ok, wall {wall / 1e9:.3f} s, "
          f"rss_peak {cf._native.rss_peak_bytes() / 1e6:.1f} MB", file=sys.stderr)
    failed = [r for r in records if not r["ok"]]
    if failed:
        print(f"first error: {failed[0]['error']}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
