#!/usr/bin/python3
"""The API in one page: a call, a chat, a stream, the blocking forms, an error, a cancel.

  /usr/bin/python3 examples/python/quickstart.py [--gguf FILE | --endpoint URL --backend B]
"""

import argparse
import asyncio

from common import add_model_args, cf, endpoint, first_line


async def main(args: argparse.Namespace) -> None:
    async with cf.Engine(pools=cf.Pool(endpoints=[endpoint(args)], model=args.model)) as engine:
        # A raw prompt, then a chat: each returns a Completion with the text and the figures.
        r = await engine.generate("The three laws of good benchmarking are", max_tokens=24)
        print(f"generate: {first_line(r.text)!r}")
        print(f"  {r.figures_line()}")
        r = await engine.chat([{"role": "user", "content": "Name one prime number."}],
                              system="Answer in one word.", max_tokens=8, temperature=0.2)
        print(f"chat: {first_line(r.text)!r}  ttft_client {r.ttft_client_ms:.2f} ms, "
              f"{r.tokens_out} tokens, decode {r.decode_tps_client or 0:.0f} tokens/s")

        # A stream: chunks as the engine receives them.
        print("stream: ", end="", flush=True)
        stream = engine.stream(messages=[{"role": "user", "content": "Tell a short story."}],
                               max_tokens=32)
        async for chunk in stream:
            print(chunk.text, end="", flush=True)
        print(f"\n  {stream.result.figures_line()}")

        # Many at once: asyncio.gather, the engine batches or spreads them.
        results = await asyncio.gather(*(engine.generate(f"Fact {i}:", max_tokens=8)
                                         for i in range(16)))
        print(f"16 at once: {sum(r.ok for r in results)} ok, slowest ttft "
              f"{max(r.ttft_client_ms for r in results):.1f} ms")

        # Cancelling the task cancels the request (the server stops and frees the slot).
        task = asyncio.create_task(engine.generate("An endless list:", max_tokens=4000))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            print("cancelled a 4,000-token request after 50 ms")

    # Errors carry the engine's message (and the failed Completion).
    async with cf.Engine(endpoint="http://127.0.0.1:9", backend="ollama", model="any") as dead:
        try:
            await dead.generate("hello", max_tokens=4)
        except cf.ConnectionError as exc:
            print(f"ConnectionError: {exc}")


def blocking(args: argparse.Namespace) -> None:
    # The same from a plain script: the calls block this thread with the GIL released.
    with cf.Engine(pools=cf.Pool(endpoints=[endpoint(args)], model=args.model)) as engine:
        r = engine.generate_sync("Once upon a time", max_tokens=12)
        print(f"generate_sync: {first_line(r.text)!r}")
        text = "".join(c.text for c in engine.stream_sync("Roses are red,", max_tokens=12))
        print(f"stream_sync: {first_line(text)!r}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(p)
    a = p.parse_args()
    asyncio.run(main(a))
    blocking(a)
