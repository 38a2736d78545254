#!/usr/bin/python3
"""Many agents at once, two ways:

1. from Python: N asyncio tasks, each an agent making K calls (`await engine.chat(...)`), the
   engine doing every request's I/O on its own threads;
2. as C++ coroutines: engine.run_multi, the scenario `chimeraforge multi` runs, with its
   per-request records and the concurrency figures of METRICS.md.

  /usr/bin/python3 examples/python/many_agents.py [--agents N] [--requests K]
                   [--gguf FILE | --endpoint URL --backend B --model M]
"""

import argparse
import asyncio
import time

from common import add_model_args, cf, endpoint


async def agents_from_python(engine: cf.Engine, n: int, k: int, tokens: int) -> None:
    async def agent(i: int) -> list:
        out = []
        for j in range(k):
            out.append(await engine.chat([{"role": "user", "content": f"Agent {i}, turn {j}."}],
                                         max_tokens=tokens, agent=f"agent-{i}", check=False))
        return out

    t0 = time.monotonic()
    results = [r for rs in await asyncio.gather(*(agent(i) for i in range(n))) for r in rs]
    wall = time.monotonic() - t0
    ok = [r for r in results if r.ok]
    tokens_out = sum(r.tokens_out or 0 for r in ok)
    ttft = sorted(r.ttft_client_ms for r in ok)
    print(f"  {len(ok)}/{len(results)} calls ok, {tokens_out} tokens in {wall:.2f} s "
          f"({tokens_out / wall:.0f} tokens/s); ttft p50 {ttft[len(ttft) // 2]:.1f} ms, "
          f"max {ttft[-1]:.1f} ms")
    records = [r.record(i // k, i % k) for i, r in enumerate(results)]
    f = cf.concurrency_figures(records, n)
    print(f"  system_tps {f['system_tps']:.0f}, balance {f['balance']:.2f}, "
          f"e2e p99 {f['e2e_p99_ms']:.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=32)
    p.add_argument("--requests", type=int, default=2)
    p.add_argument("--tokens", type=int, default=16)
    add_model_args(p)
    a = p.parse_args()
    ep = endpoint(a, parallel=16)
    ep.limits = cf.Limits(max_idle_connections=a.agents + 1)  # a connection per agent
    with cf.Engine(pools=cf.Pool(endpoints=[ep], model=a.model)) as engine:
        print(f"1. {a.agents} asyncio agents x {a.requests} calls")
        asyncio.run(agents_from_python(engine, a.agents, a.requests, a.tokens))
        print(f"2. engine.run_multi: {a.agents} C++ agents x {a.requests} calls")
        m = engine.run_multi(a.agents, requests_per_agent=a.requests, max_tokens=a.tokens,
                             model=a.model)
        f = m.figures
        print(f"  {len(m.records) - m.errors}/{len(m.records)} calls ok, system_tps "
              f"{f['system_tps']:.0f}, efficiency {100 * (f['efficiency'] or 0):.1f}% of "
              f"{a.agents} lone agents, ttft p50 {f['ttft_client_p50_ms']:.1f} ms, rss_peak "
              f"{m.rss_peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
