#!/usr/bin/python3
"""A banter scene: characters with memory, lines streamed as they are spoken, and reactions
that happen at the same time.

The tavern keeper greets a traveler; the bard and the guard react at once (two steps with no
dependency between them run concurrently); the keeper answers both; then the rounds repeat.
Each character keeps its conversation (memory=True), so its requests carry a session and the
in-process backend reuses the character's KV cache from line to line. Every line prints its
time to first token against a 200 ms budget.

  /usr/bin/python3 examples/python/banter.py [--rounds N] [--gguf FILE | --endpoint URL ...]
"""

import argparse
import asyncio
import time

from common import add_model_args, cf, endpoint, first_line
from chimeraforge.graph import Agent, Graph

BUDGET_MS = 200.0
SETTING = "A harbour tavern at closing time. Rain on the windows. A traveler has come in."


def scene(keeper: Agent, bard: Agent, guard: Agent, round_no: int) -> Graph:
    g = Graph(f"round{round_no}")
    opener = ("A traveler walks in, dripping wet. Greet them in one line."
              if round_no == 0 else "The traveler orders another drink. Say one line.")
    g.llm("keeper", opener, agent=keeper)
    g.llm("bard", "The keeper said: \"{keeper}\". React in one line, with a joke.", agent=bard)
    g.llm("guard", "The keeper said: \"{keeper}\". React in one line, suspicious.", agent=guard)
    g.llm("keeper_reply", "The bard said: \"{bard}\". The guard said: \"{guard}\". "
                          "Answer them both in one line.", agent=keeper)
    return g


def say(rec, text) -> None:
    """Prints a line as soon as its step ends."""
    c = rec.completion
    if rec.status != "ok" or c is None:
        print(f"  [{rec.name}] {rec.status}: {rec.error}")
        return
    late = "" if c.ttft_client_ms <= BUDGET_MS else "  (LATE)"
    who = rec.name.split("_")[0].capitalize()
    print(f"  {who:>7}: {first_line(text, 90)!r}  [first token {c.ttft_client_ms:.1f} ms{late}, "
          f"cached prompt {c.prompt_tokens_cached or 0} tokens]")


async def main(args: argparse.Namespace) -> None:
    common = dict(max_tokens=args.tokens, temperature=0.8, memory=True)
    keeper = Agent("Keeper", f"You are Mara, the tavern keeper. {SETTING} Speak in one short "
                             "line.", **common)
    bard = Agent("Bard", f"You are Finn, a bard who jokes. {SETTING} Speak in one short line.",
                 **common)
    guard = Agent("Guard", f"You are Osk, a tired town guard. {SETTING} Speak in one short line.",
                  **common)
    t_start = time.monotonic()
    async with cf.Engine(pools=cf.Pool(endpoints=[endpoint(args, parallel=4)],
                                       model=args.model)) as engine:
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}")
            result = await scene(keeper, bard, guard, round_no).run(engine, on_step=say)
            s = result.steps
            overlap = min(s["bard"].end_ns, s["guard"].end_ns) - max(s["bard"].start_ns,
                                                                      s["guard"].start_ns)
            print(f"  (bard and guard spoke at once for {max(overlap, 0) / 1e6:.1f} ms; "
                  f"the round took {result.wall_ms:.0f} ms)")
    print(f"{args.rounds} rounds, {4 * args.rounds} lines in {time.monotonic() - t_start:.2f} s")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokens", type=int, default=24, help="longest line, tokens")
    add_model_args(p)
    asyncio.run(main(p.parse_args()))
