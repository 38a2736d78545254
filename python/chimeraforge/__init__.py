"""chimeraforge: LLM agents orchestrated from Python, executed by the C++ engine.

The engine (C++) does the I/O, the streaming, the timing and the scheduling on its own
threads, with the GIL released; Python decides what to ask and what to do with the answers.

::

    import asyncio
    import chimeraforge as cf

    async def main():
        async with cf.Engine(endpoint="http://127.0.0.1:11434", backend="ollama",
                             model="llama3.2:1b") as engine:
            r = await engine.chat([{"role": "user", "content": "Hello"}], max_tokens=32)
            print(r.text, f"{r.ttft_client_ms:.1f} ms to the first token")
            async for chunk in engine.stream("Once upon a time", max_tokens=32):
                print(chunk.text, end="", flush=True)

    asyncio.run(main())

See ``docs/python.md`` for the whole API, :mod:`chimeraforge.graph` for agents and steps with
dependencies, and :mod:`chimeraforge.errors` for the exceptions.
"""

from . import _native
from ._native import Chunk, Completion
from .config import (Endpoint, Limits, LlamaOptions, Message, Pool, Timeouts, WorkflowConfig,
                     pools_to_dicts)
from .engine import Engine, Executor, Stream, SyncStream
from .errors import (BadInputError, CancelledError, ChimeraError, ConnectionError,
                     HTTPStatusError, ProtocolError, ServerError, TimeoutError)
from .graph import Agent, Graph, GraphError, GraphResult
from .runs import MultiResult, WorkflowResult, WorkflowRun, concurrency_figures, write_records

_native.set_error_types(ChimeraError, BadInputError)

#: What a request returns (an alias of Completion).
Result = Completion

__version__: str = _native.__version__


def now_ns() -> int:
    """The engine's clock (CLOCK_MONOTONIC ns), the same as time.monotonic_ns()."""
    return _native.now_ns()


def load_pools(path: str) -> list:
    """Pools from a TOML pool file (docs/pools.md), as dicts (raises BadInputError naming the
    file, line and key that is wrong)."""
    return list(_native.load_pools(path))


__all__ = [
    "Engine", "Stream", "SyncStream", "Executor",
    "Completion", "Result", "Chunk",
    "Endpoint", "Pool", "Timeouts", "Limits", "LlamaOptions", "Message", "WorkflowConfig",
    "WorkflowResult", "WorkflowRun", "MultiResult",
    "Agent", "Graph", "GraphResult", "GraphError",
    "ChimeraError", "BadInputError", "ConnectionError", "TimeoutError", "ServerError",
    "HTTPStatusError", "ProtocolError", "CancelledError",
    "concurrency_figures", "write_records", "load_pools", "pools_to_dicts", "now_ns",
    "__version__",
]
