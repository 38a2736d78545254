"""The package itself: import, types, configuration, and errors that need no server."""

import asyncio
import builtins
from pathlib import Path

import pytest

import chimeraforge as cf
from conftest import free_port


def test_import_and_typing_marker():
    assert cf.__version__
    pkg = Path(cf.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_native.pyi").exists()
    assert cf.Result is cf.Completion
    assert abs(cf.now_ns() - __import__("time").monotonic_ns()) < 1_000_000_000


def test_exception_hierarchy():
    assert issubclass(cf.BadInputError, cf.ChimeraError)
    assert issubclass(cf.BadInputError, ValueError)
    assert issubclass(cf.ConnectionError, cf.ChimeraError)
    assert issubclass(cf.ConnectionError, builtins.ConnectionError)
    assert issubclass(cf.TimeoutError, builtins.TimeoutError)
    assert issubclass(cf.HTTPStatusError, cf.ServerError)
    assert issubclass(cf.ProtocolError, cf.ServerError)
    assert issubclass(cf.ServerError, cf.ChimeraError)


def test_pools_from_dataclasses_dicts_and_toml(tmp_path):
    pools = [cf.Pool("collector", [cf.Endpoint("http://127.0.0.1:1", backend="ollama",
                                               max_concurrency=2,
                                               timeouts=cf.Timeouts(connect_ms=100))],
                     routing="round-robin"),
             {"name": "insight", "endpoints": [{"url": "http://127.0.0.1:2"}]}]
    dicts = cf.pools_to_dicts(pools)
    normal = cf._native.normalize_pools(dicts)
    assert [p["name"] for p in normal] == ["collector", "insight"]
    assert normal[0]["routing"] == "round-robin"
    assert normal[0]["endpoints"][0]["backend"] == "ollama"
    assert normal[0]["endpoints"][0]["timeouts"]["connect_ms"] == 100
    assert normal[1]["endpoints"][0]["backend"] == "openai"

    toml = tmp_path / "pools.toml"
    toml.write_text('[[pool]]\nname = "a"\n[[pool.endpoint]]\nurl = "http://127.0.0.1:3"\n'
                    'backend = "ollama"\nmax_concurrency = 4\n')
    loaded = cf.load_pools(str(toml))
    assert loaded[0]["name"] == "a" and loaded[0]["endpoints"][0]["max_concurrency"] == 4
    with cf.Engine(pools=toml) as engine:
        assert engine.pools == ["a"]
        assert engine.pool_config()["endpoints"][0]["url"] == "http://127.0.0.1:3"

    toml.write_text('[[pool]]\nname = "a"\n[[pool.endpoint]]\nurl = "x"\nbackend = "grpc"\n')
    with pytest.raises(cf.BadInputError, match="grpc"):
        cf.Engine(pools=str(toml))


def test_bad_configuration_names_what_is_wrong():
    with pytest.raises(cf.BadInputError, match="backend 'nope'|unknown backend 'nope'"):
        cf.Engine(pools=[{"name": "p", "endpoints": [{"url": "http://x", "backend": "nope"}]}])
    with pytest.raises(cf.BadInputError, match="unknown key 'urll'"):
        cf.Engine(pools=[{"endpoints": [{"urll": "http://x"}]}])
    with pytest.raises(cf.BadInputError, match="executor"):
        cf.Engine(endpoint="http://127.0.0.1:1", executor="fibers")
    with pytest.raises(cf.BadInputError):
        cf.Engine()
    with pytest.raises(cf.BadInputError, match="no-such.gguf"):
        cf.Engine(endpoint="/nonexistent/no-such.gguf", backend="llama")


def test_bad_requests_raise_bad_input():
    with cf.Engine(endpoint=f"http://127.0.0.1:{free_port()}") as engine:
        with pytest.raises(cf.BadInputError, match="at least one message"):
            engine.chat_sync([])
        with pytest.raises(cf.BadInputError, match="no pool named 'missing'"):
            engine.generate_sync("hi", pool="missing")
        with pytest.raises(cf.BadInputError, match="temprature"):
            engine.generate_sync("hi", temprature=0.5)
        with pytest.raises(cf.BadInputError, match="'top_k'"):
            engine.generate_sync("hi", top_k=1.5)
        with pytest.raises(cf.BadInputError, match="messages\\[0\\]"):
            engine.chat_sync([{"content": "no role"}])


def test_dead_endpoint_is_a_connection_error_with_the_engines_message():
    port = free_port()  # nothing listens there

    async def main():
        async with cf.Engine(endpoint=f"http://127.0.0.1:{port}", backend="openai") as engine:
            with pytest.raises(cf.ConnectionError) as info:
                await engine.chat([{"role": "user", "content": "hi"}], max_tokens=4)
            return info.value

    err = asyncio.run(main())
    assert isinstance(err, builtins.ConnectionError)
    assert str(port) in str(err), str(err)
    assert err.kind == "connect"
    assert err.result is not None and not err.result.ok
    assert err.result.error_message == str(err)


def test_closed_engine_refuses_requests():
    engine = cf.Engine(endpoint=f"http://127.0.0.1:{free_port()}")
    engine.close()
    engine.close()  # idempotent
    assert engine.closed
    with pytest.raises(cf.ChimeraError, match="closed"):
        engine.generate_sync("hi")
