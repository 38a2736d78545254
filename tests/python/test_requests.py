"""Requests through a real llama-server (tiny model) and the synthetic server: results and
their figures, streaming, cancellation, errors, many at once."""

import asyncio
import json
import time

import pytest

import chimeraforge as cf
from conftest import slots_busy

HELLO = [{"role": "user", "content": "Tell me something."}]


@pytest.fixture()
def engine(llama_server):
    with cf.Engine(pools=[cf.Pool(endpoints=[cf.Endpoint(llama_server.url, backend="openai",
                                                         max_concurrency=4)])]) as e:
        yield e


def test_chat_result_has_text_and_figures(engine):
    async def main():
        return await engine.chat(HELLO, max_tokens=16, seed=1)

    r = asyncio.run(main())
    assert r.ok and r.finish_reason in ("length", "stop")
    assert r.tokens_out == 16
    assert isinstance(r.text, str) and r.chunks >= 1
    assert r.ttft_client_ms is not None and r.ttft_client_ms > 0
    assert r.ttft_server_ms is not None
    assert r.e2e_ms >= r.ttft_client_ms
    assert r.decode_tps_client and r.decode_tps_client > 0
    assert len(r.itl_ms) == r.chunks - 1
    assert r.t_send_ns < r.t_first_token_ns <= r.t_last_token_ns <= r.t_delivered_ns
    figures = json.loads(r.to_json())
    assert figures["ttft_client"] == pytest.approx(r.ttft_client_ms)
    assert figures["sources"]["ttft_client"] == "measured"
    assert figures["sources"]["tokens_out"] == "server"
    assert "ttft_client" in r.figures_line()


def test_generate_raw_prompt_sync(engine):
    r = engine.generate_sync("Once upon a time", max_tokens=8)
    assert r.ok and r.tokens_out == 8


def test_stream_yields_chunks_as_they_arrive(engine):
    async def main():
        got = []
        stream = engine.stream(messages=HELLO, max_tokens=32)
        async for chunk in stream:
            got.append((time.monotonic_ns(), chunk))
        return got, stream.result

    got, result = asyncio.run(main())
    assert result.ok and result.tokens_out == 32
    assert "".join(c.text for _, c in got) == result.text
    assert [c.index for _, c in got] == sorted(c.index for _, c in got)
    assert sum(c.pieces for _, c in got) == result.chunks
    # The first chunk reached Python before the last token was even produced.
    assert got[0][0] < result.t_last_token_ns


def test_cancelling_the_task_cancels_the_request_and_frees_the_slot(engine, llama_server):
    async def main():
        first = asyncio.Event()
        received = 0

        async def consume():
            nonlocal received
            async for _ in engine.stream(messages=HELLO, max_tokens=4000):
                received += 1
                if received == 5:
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 30)
        assert slots_busy(llama_server) is True
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return received

    received = asyncio.run(main())
    assert received < 4000
    deadline = time.monotonic() + 3
    while slots_busy(llama_server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slots_busy(llama_server) is False, "a slot is still processing after the cancel"
    assert engine.chat_sync(HELLO, max_tokens=2).ok  # and the engine still works


def test_cancelling_an_awaited_generate(engine, llama_server):
    async def main():
        task = asyncio.create_task(engine.chat(HELLO, max_tokens=4000))
        deadline = time.monotonic() + 20
        while not slots_busy(llama_server) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    deadline = time.monotonic() + 3
    while slots_busy(llama_server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slots_busy(llama_server) is False


def test_timeout_cancels_a_sync_request(engine, llama_server):
    t0 = time.monotonic()
    r = engine.chat_sync(HELLO, max_tokens=4000, timeout=0.2, check=False)
    assert time.monotonic() - t0 < 5
    assert r.error_kind == "cancelled"
    deadline = time.monotonic() + 3
    while slots_busy(llama_server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slots_busy(llama_server) is False


def test_a_hundred_concurrent_tasks(engine):
    async def main():
        return await asyncio.gather(*(engine.chat(HELLO, max_tokens=4, agent=f"a{i}")
                                      for i in range(100)))

    results = asyncio.run(main())
    assert len(results) == 100
    assert all(r.ok and r.tokens_out == 4 for r in results)


def test_a_hundred_concurrent_streams_on_the_synthetic_server(synth):
    async def main(engine):
        async def one(i):
            text = []
            async for c in engine.stream(messages=HELLO, max_tokens=10):
                text.append(c.text)
            return "".join(text)

        return await asyncio.gather(*(one(i) for i in range(100)))

    with cf.Engine(endpoint=synth.url, backend="ollama", model="synth") as engine:
        texts = asyncio.run(main(engine))
    assert len(texts) == 100
    assert all(t.split() == [f"tok{i}" for i in range(1, 11)] for t in texts)


def test_idle_timeout_is_a_timeout_error(synth_stall):
    ep = cf.Endpoint(synth_stall.url, backend="ollama", timeouts=cf.Timeouts(idle_ms=300))

    async def main():
        async with cf.Engine(pools=cf.Pool(endpoints=[ep], model="synth")) as engine:
            chunks = []
            with pytest.raises(cf.TimeoutError) as info:
                async for c in engine.stream(messages=HELLO, max_tokens=10):
                    chunks.append(c)
            return chunks, info.value

    chunks, err = asyncio.run(main())
    assert len(chunks) == 2  # what arrived before the stall
    assert err.kind == "timeout" and synth_stall.url.split("//")[1] in str(err)
    assert err.result.text == "".join(c.text for c in chunks)


def test_http_503_is_a_server_error(synth_503):
    with cf.Engine(endpoint=synth_503.url, backend="ollama", model="synth") as engine:
        with pytest.raises(cf.ServerError) as info:
            engine.chat_sync(HELLO, max_tokens=4)
    assert isinstance(info.value, cf.HTTPStatusError)
    assert info.value.status_code == 503
    assert "503" in str(info.value)


def test_engine_without_endpoint_takes_the_environments(synth, monkeypatch):
    # As Endpoint(url=""): $OLLAMA_HOST (scheme optional) for ollama, $OPENAI_BASE_URL for openai.
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{synth.port}")
    with cf.Engine(backend="ollama", model="synth") as engine:
        r = engine.chat_sync(messages=HELLO, max_tokens=3)
    assert r.text.split() == ["tok1", "tok2", "tok3"]
    assert r.endpoint == synth.url
    monkeypatch.delenv("OLLAMA_HOST")
    with pytest.raises(cf.BadInputError, match=r"OLLAMA_HOST.*is not set"):
        cf.Engine(backend="ollama")
    with pytest.raises(cf.BadInputError, match="has none"):
        cf.Engine(backend="llama")
    with pytest.raises(cf.BadInputError, match="one of them"):
        cf.Engine([], endpoint=synth.url)


def test_fallback_pool_and_dns_expansion(synth):
    # A pool on a dead port falls back to one whose endpoint is `localhost` expanded by DNS.
    dead = cf.Endpoint("http://127.0.0.1:1", backend="ollama", retry_attempts=1)
    byname = cf.Endpoint(f"http://localhost:{synth.port}", backend="ollama", expand="dns")
    pools = [cf.Pool("main", [dead], model="synth", fallback="spare"),
             cf.Pool("spare", [byname], model="synth")]
    with cf.Engine(pools) as engine:
        assert engine.pool_config("main")["fallback"] == "spare"
        r = engine.chat_sync(messages=HELLO, max_tokens=3, pool="main")
        assert r.text.split() == ["tok1", "tok2", "tok3"]
        status = engine.pool_status("spare")
        assert "127.0.0.1" in [s["address"] for s in status]
    with pytest.raises(cf.BadInputError, match="not a pool here"):
        cf.Engine([cf.Pool("main", [dead], fallback="nowhere")])
