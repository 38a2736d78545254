"""The in-process backend (llama.cpp in this process, the tiny model)."""

import asyncio

import pytest

import chimeraforge as cf


@pytest.fixture(scope="module")
def engine(tiny_model):
    ep = cf.Endpoint(str(tiny_model), backend="llama",
                     llama=cf.LlamaOptions(parallel=8, threads=2, ctx_per_seq=512))
    with cf.Engine(pools=cf.Pool(endpoints=[ep])) as e:
        yield e


def test_generate_sync(engine):
    r = engine.generate_sync("Once upon a time", max_tokens=8, temperature=0.0)
    assert r.ok and r.backend == "llama"
    assert r.tokens_out == 8 and len(r.tokens) == 8
    assert r.ttft_client_ms is not None


def test_greedy_is_deterministic_and_streams_match(engine):
    async def main():
        a = await engine.chat([{"role": "user", "content": "Hello"}], max_tokens=12,
                              temperature=0.0)
        s = engine.stream(messages=[{"role": "user", "content": "Hello"}], max_tokens=12,
                          temperature=0.0)
        text = "".join([c.text async for c in s])
        return a, text, s.result

    a, text, b = asyncio.run(main())
    assert a.tokens == b.tokens
    assert text == b.text == a.text


def test_a_hundred_concurrent_tasks_in_process(engine):
    async def main():
        return await asyncio.gather(*(engine.generate(f"Item {i}:", max_tokens=3)
                                      for i in range(100)))

    results = asyncio.run(main())
    assert all(r.ok and r.tokens_out == 3 for r in results)


def test_cancel_in_process(engine):
    async def main():
        got = 0
        stream = engine.stream("A long story:", max_tokens=400)
        async with stream:
            async for _ in stream:
                got += 1
                if got == 3:
                    break
        return got

    assert asyncio.run(main()) == 3
    assert engine.generate_sync("still works", max_tokens=2).ok


def test_session_reuses_the_kv_cache(engine):
    first = engine.chat_sync([{"role": "user", "content": "Remember the word falcon."}],
                             max_tokens=4, session="s1", temperature=0.0)
    history = [{"role": "user", "content": "Remember the word falcon."},
               {"role": "assistant", "content": first.text},
               {"role": "user", "content": "Which word?"}]
    second = engine.chat_sync(history, max_tokens=4, session="s1", temperature=0.0)
    assert second.ok
    assert (second.prompt_tokens_cached or 0) > 0
    engine.drop_session("s1")
