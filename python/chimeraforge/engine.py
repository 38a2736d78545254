"""The Engine: LLM calls on the C++ engine, from asyncio or from plain scripts."""

from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import json
import os
import threading
import weakref
from typing import (Any, Callable, Deque, Dict, List, Literal, Mapping, Optional, Sequence,
                    Tuple, Union)

from . import _native
from ._native import Chunk, Completion
from .config import Endpoint, Message, Pool, PoolsLike, WorkflowConfig, pools_to_dicts
from .errors import BadInputError, ChimeraError, error_for
from .runs import MultiResult, WorkflowResult

__all__ = ["Engine", "Stream", "SyncStream", "Executor"]

Executor = Literal["single", "shared", "per-core", "thread-per-agent"]
MessageLike = Union[Message, Mapping[str, Any]]
Messages = Sequence[MessageLike]
FormatLike = Union[str, Mapping[str, Any]]

_live_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@atexit.register
def _close_engines() -> None:
    # The engine's threads must be gone before the interpreter is: they take the GIL.
    for engine in list(_live_engines):
        engine.close()


def _message(m: MessageLike) -> Dict[str, Any]:
    if isinstance(m, Message):
        return m.to_dict()
    if isinstance(m, Mapping):
        return m if isinstance(m, dict) else dict(m)
    raise BadInputError(f"a message must be a dict or a Message (got {type(m).__name__})")


def _request(kind: str, prompt: Optional[str], messages: Optional[Messages],
             system: Optional[str], model: Optional[str], options: Optional[Mapping[str, Any]],
             max_tokens: Optional[int], temperature: Optional[float], top_p: Optional[float],
             top_k: Optional[int], min_p: Optional[float], repeat_penalty: Optional[float],
             seed: Optional[int], stop: Optional[Union[str, Sequence[str]]],
             num_ctx: Optional[int], num_gpu: Optional[int], keep_alive: Optional[str],
             format: Optional[FormatLike], tools: Optional[Sequence[Mapping[str, Any]]],
             think: Optional[bool], session: Optional[str], agent: Optional[str],
             pin: Optional[int], slot_id: Optional[int],
             cache_prompt: Optional[bool], tool_choice: Optional[str] = None) -> Dict[str, Any]:
    """The request dict the engine reads (chimeraforge._native.check_request checks one)."""
    req: Dict[str, Any] = {"kind": kind}
    if kind == "chat":
        msgs = [_message(m) for m in messages or ()]
        if system:
            msgs.insert(0, {"role": "system", "content": system})
        req["messages"] = msgs
    else:
        req["prompt"] = prompt or ""
        if system:
            req["system"] = system
    opts: Dict[str, Any] = dict(options) if options else {}
    if max_tokens is not None:
        opts["num_predict"] = max_tokens
    for name, value in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k),
                        ("min_p", min_p), ("repeat_penalty", repeat_penalty), ("seed", seed),
                        ("num_ctx", num_ctx), ("num_gpu", num_gpu)):
        if value is not None:
            opts[name] = value
    if stop is not None:
        opts["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if opts:
        req["options"] = opts
    if model:
        req["model"] = model
    if keep_alive is not None:
        req["keep_alive"] = keep_alive
    if format is not None:
        req["format"] = format if isinstance(format, str) else json.dumps(format)
    if tools is not None:
        req["tools"] = json.dumps(list(tools))
    if tool_choice is not None:
        req["tool_choice"] = tool_choice
    if think is not None:
        req["think"] = think
    if session:
        req["session"] = session
    if agent:
        req["agent"] = agent
    if pin is not None:
        req["pin"] = pin
    if slot_id is not None:
        req["slot_id"] = slot_id
    if cache_prompt is not None:
        req["cache_prompt"] = cache_prompt
    return req


class Engine:
    """The C++ engine: endpoint pools and the threads that run their I/O.

    Give it pools (``Pool`` objects, dicts, or a TOML pool file), or one ``endpoint``::

        async with Engine(endpoint="http://127.0.0.1:11434", backend="ollama") as engine:
            r = await engine.chat([{"role": "user", "content": "Hello"}], max_tokens=32)
            print(r.text, r.ttft_client_ms)

        with Engine(endpoint="tiny.gguf", backend="llama") as engine:   # in-process llama.cpp
            print(engine.generate_sync("Once upon a time", max_tokens=16).text)

    Requests: ``generate`` (a raw prompt), ``chat`` (messages) and ``stream`` (chunks as they
    arrive) are asyncio coroutines / async iterators, safe to run by the thousand at once;
    ``generate_sync``, ``chat_sync`` and ``stream_sync`` block the calling thread (with the GIL
    released, so other Python threads run). Each returns a :class:`Completion` with the text
    and every METRICS.md figure; a failed request raises a :class:`ChimeraError` subclass
    carrying the engine's message and the Completion (``check=False`` returns it instead).
    Cancelling the awaiting task cancels the request: the connection is closed and the server
    frees its slot.

    Whole runs: ``run_workflow`` (the agent workflow: ingest -> analysis -> report) and
    ``run_multi`` (N agents running a scenario, measured) block; ``arun_workflow`` and
    ``arun_multi`` are their asyncio forms.

    Executors (``executor``): ``"single"`` (one I/O thread, the default and the lowest latency),
    ``"shared"`` (one event loop on ``threads`` threads), ``"per-core"`` (one loop per core),
    ``"thread-per-agent"`` (for ``run_multi``; requests from Python behave as with
    ``"shared"``).

    Thread safety: every method may be called from any thread; an asyncio method must be
    awaited on a running event loop (any loop, several loops may share an engine).
    """

    def __init__(self, pools: Optional[PoolsLike] = None, *, executor: Executor = "single",
                 threads: int = 0, pin_threads: bool = True, blocking_threads: int = 4,
                 endpoint: Optional[Union[str, "os.PathLike[str]", Endpoint]] = None,
                 backend: Literal["ollama", "openai", "llama"] = "openai", model: str = "",
                 max_buffer: int = 1024) -> None:
        """
        Args:
            pools: the endpoint pools: a Pool, a dict, a list of either, or a TOML pool file.
            executor: which threads run the I/O (see the class docstring).
            threads: loop threads (shared), loops (per-core); 0: one per CPU the
                process may use.
            pin_threads: per-core: pin each loop's thread to its core; single: hold
                the loop's thread on its CPU while it is busy and calm there, giving it
                back to the kernel when it waits.
            blocking_threads: threads for blocking steps of ``run_multi`` agents.
            endpoint: instead of ``pools``: one endpoint (a URL or GGUF file), pool "default".
                With neither: ``Endpoint(url="")``, the environment's endpoint for ``backend``
                ($OLLAMA_HOST, $OPENAI_BASE_URL).
            backend: the protocol of ``endpoint``: ollama, openai or llama (in-process).
            model: with ``endpoint``: the model name sent when a request names none.
            max_buffer: a stream's buffer, in chunks, before later pieces are merged.
        Raises:
            BadInputError: a pool or endpoint cannot be used (the message names it), or a model
                file cannot be loaded.
        """
        self._native: Optional[_native.Engine] = None
        if pools is not None and endpoint is not None:
            raise BadInputError("give either pools=... or endpoint=... (one of them)")
        if pools is None and endpoint is None:
            # As Endpoint(url=""): the environment's endpoint for the backend, as the usual
            # clients read it ($OLLAMA_HOST for ollama, $OPENAI_BASE_URL for openai).
            variable = {"ollama": "OLLAMA_HOST", "openai": "OPENAI_BASE_URL"}.get(backend)
            if variable is None or not os.environ.get(variable):
                raise BadInputError(
                    "give pools=... or endpoint=...; without them the endpoint comes from the "
                    "environment: $OLLAMA_HOST (backend='ollama') or $OPENAI_BASE_URL "
                    f"(backend='openai'), and {variable or 'backend=' + repr(backend)} "
                    + ("is not set" if variable else "has none"))
            endpoint = Endpoint("", backend=backend)
        if endpoint is not None:
            ep = endpoint if isinstance(endpoint, Endpoint) else Endpoint(os.fspath(endpoint),
                                                                          backend=backend)
            pool_dicts = [Pool(endpoints=[ep], model=model).to_dict()]
        else:
            try:
                pool_dicts = pools_to_dicts(pools)  # type: ignore[arg-type]
            except TypeError as exc:
                raise BadInputError(str(exc)) from None
        if max_buffer < 1:
            raise BadInputError("max_buffer must be at least 1")
        self._native = _native.Engine(pool_dicts, executor, threads, pin_threads,
                                      blocking_threads)
        self._pool_names: List[str] = list(self._native.pool_names())
        self._default_pool = self._pool_names[0]
        self._max_buffer = max_buffer
        self._bridge_cache: Optional[Tuple[asyncio.AbstractEventLoop, _native.Bridge]] = None
        self._bridges: Dict[asyncio.AbstractEventLoop, _native.Bridge] = {}
        self._bridges_lock = threading.Lock()
        _live_engines.add(self)

    # ---------------------------------------------------------------- life
    def close(self) -> None:
        """Cancels every request in flight, waits for them to end, and stops the engine's
        threads. Idempotent. Awaiting tasks get their results (cancelled errors) as usual."""
        native = self._native
        if native is not None:
            native.close()
        _live_engines.discard(self)

    async def aclose(self) -> None:
        """close(), without blocking the event loop while requests wind down."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    @property
    def closed(self) -> bool:
        return self._native is None or self._native.closed

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if self.closed:
            return "<chimeraforge.Engine closed>"
        return (f"<chimeraforge.Engine executor={self.executor} pools={self._pool_names}>")

    # ---------------------------------------------------------------- facts
    @property
    def native(self) -> "_native.Engine":
        """The underlying chimeraforge._native.Engine."""
        assert self._native is not None
        return self._native

    @property
    def pools(self) -> List[str]:
        """The pool names, in order; the first is the default pool."""
        return list(self._pool_names)

    @property
    def executor(self) -> str:
        return self.native.executor

    @property
    def loops(self) -> int:
        return self.native.loops

    @property
    def lanes(self) -> int:
        return self.native.lanes

    def pool_config(self, pool: Optional[str] = None) -> Dict[str, Any]:
        """A pool's configuration as the engine reads it (every default filled in)."""
        return self.native.pool_config(pool or self._default_pool)

    def pool_status(self, pool: Optional[str] = None) -> List[Dict[str, Any]]:
        """Each endpoint of a pool now: url, address (with ``expand = "dns"``: the address it
        connects to, else ""), up, outstanding, limit, dispatched, failures, last_error."""
        return self.native.pool_status(pool or self._default_pool)

    def check(self, pool: Optional[str] = None) -> Dict[str, Any]:
        """Health, version and models of a pool's endpoints (blocks, GIL released)."""
        return self.native.check(pool or self._default_pool)

    def drop_session(self, session: str, pool: Optional[str] = None) -> None:
        """Forgets a session's cached state (the in-process backend's KV cache)."""
        self.native.drop_session(pool or self._default_pool, session)

    # ---------------------------------------------------------------- asyncio plumbing
    def _bridge(self, loop: asyncio.AbstractEventLoop) -> "_native.Bridge":
        cached = self._bridge_cache
        if cached is not None and cached[0] is loop:
            return cached[1]
        with self._bridges_lock:  # several threads, each with its own loop
            for old in [lp for lp in self._bridges if lp.is_closed()]:
                del self._bridges[old]
            bridge = self._bridges.get(loop)
            if bridge is None:
                bridge = _native.Bridge(loop)
                self._bridges[loop] = bridge
            self._bridge_cache = (loop, bridge)
            return bridge

    def _start(self, pool: Optional[str], req: Dict[str, Any], bridge: Any, stream: bool,
               max_buffer: Optional[int], record_lags: bool, lane: Optional[int],
               future: Any = None) -> "_native.Call":
        native = self._native
        if native is None:
            raise ChimeraError("the engine is closed")
        return native.start(pool or self._default_pool, req, bridge, stream,
                            max_buffer or self._max_buffer, record_lags,
                            -1 if lane is None else lane, future)

    async def _result(self, pool: Optional[str], req: Dict[str, Any], lane: Optional[int],
                      record_lags: bool, check: bool) -> Completion:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        # The future is parked before the request starts: the engine resolves it with the
        # Completion on this loop (Bridge.drain).
        call = self._start(pool, req, self._bridge(loop), False, 1, record_lags, lane, fut)
        try:
            result = await fut
        except BaseException:
            call.unpark()
            call.cancel()
            raise
        if check and not result.ok:
            raise error_for(result)
        return result

    def _result_sync(self, pool: Optional[str], req: Dict[str, Any], lane: Optional[int],
                     record_lags: bool, check: bool, timeout: Optional[float]) -> Completion:
        call = self._start(pool, req, None, False, 1, record_lags, lane)
        try:
            if not call.wait(-1.0 if timeout is None else timeout):
                call.cancel()
                call.wait()
        except BaseException:
            call.cancel()
            raise
        result = call.result()
        if check and not result.ok:
            raise error_for(result)
        return result

    # ---------------------------------------------------------------- requests (asyncio)
    async def generate(self, prompt: str, *, system: Optional[str] = None,
                       pool: Optional[str] = None, model: Optional[str] = None,
                       options: Optional[Mapping[str, Any]] = None,
                       max_tokens: Optional[int] = None, temperature: Optional[float] = None,
                       top_p: Optional[float] = None, top_k: Optional[int] = None,
                       min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
                       seed: Optional[int] = None, stop: Optional[Union[str, Sequence[str]]] = None,
                       num_ctx: Optional[int] = None, num_gpu: Optional[int] = None,
                       keep_alive: Optional[str] = None, format: Optional[FormatLike] = None,
                       think: Optional[bool] = None, session: Optional[str] = None,
                       agent: Optional[str] = None, pin: Optional[int] = None,
                       slot_id: Optional[int] = None, cache_prompt: Optional[bool] = None,
                       lane: Optional[int] = None, record_lags: bool = False,
                       check: bool = True) -> Completion:
        """Completes a raw prompt (Ollama's /api/generate, OpenAI's /v1/completions).

        Args:
            prompt: the text to continue.
            system: a system prompt.
            pool: the pool to run on (default: the first).
            model: the model name (HTTP backends; default: the pool's).
            options: Ollama-style options (num_ctx, num_predict, temperature, ...); the
                keyword arguments below override them.
            max_tokens: most tokens to generate (num_predict).
            format: "json", or a JSON schema (dict or JSON text) the output must follow.
            session: a conversation that keeps going: the in-process backend keeps its KV cache.
            agent: who asks (the pool's fair-queue key).
            pin: with pinned routing, the endpoint's index in the pool.
            slot_id, cache_prompt: llama-server's slot and prompt cache.
            lane: the engine lane (event loop) to run on; default: round-robin.
            record_lags: keep every chunk's delivery lag in ``Completion.lags_ns``.
            check: raise on failure (default); False returns the failed Completion.
        Returns:
            the Completion: text, finish_reason, figures (ttft_client_ms, e2e_ms, ...).
        Raises:
            ConnectionError, TimeoutError, ServerError, BadInputError (see errors).
        """
        req = _request("completion", prompt, None, system, model, options, max_tokens,
                       temperature, top_p, top_k, min_p, repeat_penalty, seed, stop, num_ctx,
                       num_gpu, keep_alive, format, None, think, session, agent, pin, slot_id,
                       cache_prompt)
        return await self._result(pool, req, lane, record_lags, check)

    async def chat(self, messages: Messages, *, system: Optional[str] = None,
                   pool: Optional[str] = None, model: Optional[str] = None,
                   options: Optional[Mapping[str, Any]] = None,
                   max_tokens: Optional[int] = None, temperature: Optional[float] = None,
                   top_p: Optional[float] = None, top_k: Optional[int] = None,
                   min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
                   seed: Optional[int] = None, stop: Optional[Union[str, Sequence[str]]] = None,
                   num_ctx: Optional[int] = None, num_gpu: Optional[int] = None,
                   keep_alive: Optional[str] = None, format: Optional[FormatLike] = None,
                   tools: Optional[Sequence[Mapping[str, Any]]] = None,
                   think: Optional[bool] = None, session: Optional[str] = None,
                   agent: Optional[str] = None, pin: Optional[int] = None,
                   slot_id: Optional[int] = None, cache_prompt: Optional[bool] = None,
                   lane: Optional[int] = None, record_lags: bool = False,
                   check: bool = True, tool_choice: Optional[str] = None) -> Completion:
        """A chat call: messages in (dicts with role and content, or Messages), the assistant's
        answer out. ``system`` is put first as a system message; ``tools`` is a list of tool
        definitions (OpenAI/Ollama form) and ``tool_choice`` "auto", "required" (not Ollama) or
        "none"; :func:`chimeraforge.tools.run_agent` runs the calls. Other arguments as for
        :meth:`generate`."""
        req = _request("chat", None, messages, system, model, options, max_tokens, temperature,
                       top_p, top_k, min_p, repeat_penalty, seed, stop, num_ctx, num_gpu,
                       keep_alive, format, tools, think, session, agent, pin, slot_id,
                       cache_prompt, tool_choice)
        return await self._result(pool, req, lane, record_lags, check)

    def stream(self, prompt: Optional[Union[str, Messages]] = None, *,
               messages: Optional[Messages] = None, system: Optional[str] = None,
               pool: Optional[str] = None, model: Optional[str] = None,
               options: Optional[Mapping[str, Any]] = None, max_tokens: Optional[int] = None,
               temperature: Optional[float] = None, top_p: Optional[float] = None,
               top_k: Optional[int] = None, min_p: Optional[float] = None,
               repeat_penalty: Optional[float] = None, seed: Optional[int] = None,
               stop: Optional[Union[str, Sequence[str]]] = None, num_ctx: Optional[int] = None,
               num_gpu: Optional[int] = None, keep_alive: Optional[str] = None,
               format: Optional[FormatLike] = None,
               tools: Optional[Sequence[Mapping[str, Any]]] = None, think: Optional[bool] = None,
               session: Optional[str] = None, agent: Optional[str] = None,
               pin: Optional[int] = None, slot_id: Optional[int] = None,
               cache_prompt: Optional[bool] = None, lane: Optional[int] = None,
               record_lags: bool = False, max_buffer: Optional[int] = None,
               check: bool = True) -> "Stream":
        """Streams the output as the engine receives it::

            async for chunk in engine.stream(messages=[{"role": "user", "content": "Hi"}]):
                print(chunk.text, end="", flush=True)

        A str ``prompt`` is a raw-prompt completion; ``messages`` (or a list as the first
        argument) a chat. The request starts at once, on the running event loop; the Stream's
        ``result`` holds the Completion once the stream has ended. Leaving the loop early, or
        dropping the Stream, cancels the request (``async with`` makes that immediate).
        ``max_buffer``: chunks kept while the consumer is busy before later pieces are merged
        into the last one (``Chunk.pieces``). Other arguments as for :meth:`generate`."""
        kind, prompt_text, msgs = _kind_of(prompt, messages)
        req = _request(kind, prompt_text, msgs, system, model, options, max_tokens, temperature,
                       top_p, top_k, min_p, repeat_penalty, seed, stop, num_ctx, num_gpu,
                       keep_alive, format, tools, think, session, agent, pin, slot_id,
                       cache_prompt)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ChimeraError("stream() needs a running asyncio event loop; outside one, "
                               "use stream_sync()") from None
        call = self._start(pool, req, self._bridge(loop), True, max_buffer, record_lags, lane)
        return Stream(call, loop, check)

    # ---------------------------------------------------------------- requests (blocking)
    def generate_sync(self, prompt: str, *, timeout: Optional[float] = None,
                      **kwargs: Any) -> Completion:
        """:meth:`generate`, blocking the calling thread (GIL released) until the answer is
        complete. ``timeout`` (s) cancels the request when it runs out; Ctrl-C cancels it."""
        pool, lane, record_lags, check = _common(kwargs)
        req = _request_from_kwargs("completion", prompt, None, kwargs)
        return self._result_sync(pool, req, lane, record_lags, check, timeout)

    def chat_sync(self, messages: Messages, *, timeout: Optional[float] = None,
                  **kwargs: Any) -> Completion:
        """:meth:`chat`, blocking the calling thread (GIL released)."""
        pool, lane, record_lags, check = _common(kwargs)
        req = _request_from_kwargs("chat", None, messages, kwargs)
        return self._result_sync(pool, req, lane, record_lags, check, timeout)

    def stream_sync(self, prompt: Optional[Union[str, Messages]] = None, *,
                    messages: Optional[Messages] = None, **kwargs: Any) -> "SyncStream":
        """:meth:`stream` for plain scripts: an iterator of Chunks that blocks (GIL released)
        until each arrives::

            for chunk in engine.stream_sync("Once upon a time", max_tokens=32):
                print(chunk.text, end="")
        """
        pool, lane, record_lags, check = _common(kwargs)
        max_buffer = kwargs.pop("max_buffer", None)
        kind, prompt_text, msgs = _kind_of(prompt, messages)
        req = _request_from_kwargs(kind, prompt_text, msgs, kwargs)
        call = self._start(pool, req, None, True, max_buffer, record_lags, lane)
        return SyncStream(call, check)

    # ---------------------------------------------------------------- whole runs
    def run_workflow(self, data: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
                     config: Union[str, WorkflowConfig, Mapping[str, Any],
                                   Sequence[Union[str, WorkflowConfig, Mapping[str, Any]]]] = "chimera",
                     *, pool: Optional[str] = None, model: str = "", runs: int = 1,
                     out_dir: Union[str, "os.PathLike[str]"] = "out",
                     on_progress: Optional[Callable[[Dict[str, Any]], None]] = None) -> WorkflowResult:
        """Runs the agent workflow on a pool: ingest ``data`` (folders or files: CSV, JSON,
        Markdown, text), digest it, ask for an analysis and a report, and write report.md,
        metrics.json (and comparison.md for several configurations) into ``out_dir``.

        ``config``: "chimera" (the study's settings), "baseline" (the server's defaults), a
        TOML file, a WorkflowConfig or dict, or a list of them. Blocks this thread (GIL
        released); ``on_progress`` gets each progress event (a dict) on this thread. A failed
        LLM call fails the workflow: the result's ``ok`` is False and ``error`` says why."""
        paths = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else \
            [os.fspath(p) for p in data]
        if isinstance(config, (str, os.PathLike, WorkflowConfig, Mapping)):
            configs: List[Any] = [config]
        else:
            configs = list(config)
        configs = [c.to_dict() if isinstance(c, WorkflowConfig) else
                   (os.fspath(c) if isinstance(c, os.PathLike) else c) for c in configs]
        options: Dict[str, Any] = {"data": paths, "pool": pool or self._default_pool,
                                   "model": model, "runs": runs, "out_dir": os.fspath(out_dir),
                                   "configs": configs}
        raw = _native.run_workflow(self.native, options, on_progress)
        return WorkflowResult.from_native(raw)

    async def arun_workflow(self, data: Any, config: Any = "chimera", *,
                            on_progress: Optional[Callable[[Dict[str, Any]], None]] = None,
                            **kwargs: Any) -> WorkflowResult:
        """:meth:`run_workflow` for asyncio: it runs on a worker thread (the workflow blocks on
        its calls) and ``on_progress`` is called on the event loop."""
        loop = asyncio.get_running_loop()
        progress = None
        if on_progress is not None:
            def progress(event: Dict[str, Any]) -> None:
                loop.call_soon_threadsafe(on_progress, event)
        fn = functools.partial(self.run_workflow, data, config, on_progress=progress, **kwargs)
        return await loop.run_in_executor(None, fn)

    def run_multi(self, agents: int = 1, *, scenario: Literal["homogeneous", "personas", "workflow"] = "homogeneous",
                  requests_per_agent: int = 1, duration_s: float = 0.0,
                  pool: Optional[str] = None, model: str = "",
                  prompt: str = "Summarize the benchmark results in one sentence.",
                  max_tokens: int = 64, temperature: Optional[float] = None,
                  data: Optional[Sequence[Union[str, "os.PathLike[str]"]]] = None,
                  workflow_out: Union[str, "os.PathLike[str]"] = "out/multi",
                  record_lags: bool = False, stagger_ms: float = 0.0,
                  calibrate: bool = True) -> MultiResult:
        """Runs N agents at once as C++ coroutines on this engine (what ``chimeraforge multi``
        does) and returns their per-request records and the concurrency figures of METRICS.md.

        Scenarios: "homogeneous" (N identical agents making ``requests_per_agent`` calls on
        one pool), "personas" (the study's data collector and insight agent, half each, on the
        pools "collector" and "insight", else the first two), "workflow" (N agents each
        running the agent workflow on ``data``). ``calibrate`` runs a lone agent first, which
        efficiency and contention are relative to. Blocks (GIL released); one at a time."""
        options: Dict[str, Any] = {
            "scenario": scenario, "agents": agents, "requests_per_agent": requests_per_agent,
            "duration_s": duration_s, "pool": pool or "", "model": model, "prompt": prompt,
            "max_tokens": max_tokens, "temperature": temperature, "record_lags": record_lags,
            "stagger_ms": stagger_ms, "calibrate": calibrate,
            "workflow_out": os.fspath(workflow_out)}
        if data is not None:
            options["workflow_data"] = [os.fspath(p) for p in data]
        return MultiResult.from_native(_native.run_multi(self.native, options), agents)

    async def arun_multi(self, agents: int = 1, **kwargs: Any) -> MultiResult:
        """:meth:`run_multi` for asyncio (on a worker thread)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.run_multi, agents,
                                                                  **kwargs))


_REQUEST_KEYS = ("system", "model", "options", "max_tokens", "temperature", "top_p", "top_k",
                 "min_p", "repeat_penalty", "seed", "stop", "num_ctx", "num_gpu", "keep_alive",
                 "format", "tools", "think", "session", "agent", "pin", "slot_id",
                 "cache_prompt")


def _common(kwargs: Dict[str, Any]) -> Tuple[Optional[str], Optional[int], bool, bool]:
    return (kwargs.pop("pool", None), kwargs.pop("lane", None),
            bool(kwargs.pop("record_lags", False)), bool(kwargs.pop("check", True)))


def _request_from_kwargs(kind: str, prompt: Optional[str], messages: Optional[Messages],
                         kwargs: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(kwargs) - set(_REQUEST_KEYS))
    if unknown:
        raise BadInputError(f"unknown argument(s) {', '.join(unknown)} (known: "
                            f"{', '.join(_REQUEST_KEYS)}, pool, lane, record_lags, check, "
                            f"timeout)")
    v = {k: kwargs.get(k) for k in _REQUEST_KEYS}
    return _request(kind, prompt, messages, v["system"], v["model"], v["options"],
                    v["max_tokens"], v["temperature"], v["top_p"], v["top_k"], v["min_p"],
                    v["repeat_penalty"], v["seed"], v["stop"], v["num_ctx"], v["num_gpu"],
                    v["keep_alive"], v["format"], v["tools"], v["think"], v["session"],
                    v["agent"], v["pin"], v["slot_id"], v["cache_prompt"])


def _kind_of(prompt: Optional[Union[str, Messages]],
             messages: Optional[Messages]) -> Tuple[str, Optional[str], Optional[Messages]]:
    if prompt is not None and not isinstance(prompt, str):
        if messages is not None:
            raise BadInputError("give a prompt or messages, not both")
        return "chat", None, prompt
    if (prompt is None) == (messages is None):
        raise BadInputError("give a prompt (str) or messages (a list), one of them")
    if messages is not None:
        return "chat", None, messages
    return "completion", prompt, None


class Stream:
    """The chunks of one streaming request, as an async iterator (see :meth:`Engine.stream`).

    After the last chunk, ``result`` is the Completion (text, figures). A failed request
    raises its ChimeraError from the iteration, after the chunks that did arrive.
    """

    __slots__ = ("_call", "_loop", "_check", "_buf", "_result", "_closed")

    def __init__(self, call: "_native.Call", loop: asyncio.AbstractEventLoop,
                 check: bool) -> None:
        self._call = call
        self._loop = loop
        self._check = check
        self._buf: Deque[Chunk] = collections.deque()
        self._result: Optional[Completion] = None
        self._closed = False

    def __aiter__(self) -> "Stream":
        return self

    async def __anext__(self) -> Chunk:
        buf = self._buf
        if buf:
            return buf.popleft()
        call = self._call
        while True:
            chunks = call.take()
            if chunks is None:
                self._finish()
                raise StopAsyncIteration
            if chunks:
                if len(chunks) == 1:
                    return chunks[0]
                buf.extend(chunks)
                return buf.popleft()
            if self._closed:
                raise StopAsyncIteration
            fut = self._loop.create_future()
            if call.park(fut):
                try:
                    await fut
                except BaseException:
                    call.unpark()
                    call.cancel()
                    raise

    def _finish(self) -> None:
        if self._result is None:
            self._result = self._call.result()
            if self._check and not self._result.ok and not self._closed:
                raise error_for(self._result)

    @property
    def result(self) -> Optional[Completion]:
        """The Completion, once the stream has ended (None before)."""
        if self._result is None and self._call.done and not self._buf:
            self._result = self._call.result()
        return self._result

    @property
    def merged(self) -> int:
        """Pieces merged into earlier chunks because the consumer fell behind."""
        return self._call.merged

    def cancel(self) -> None:
        """Cancels the request (the server frees its slot); the iteration then ends."""
        self._closed = True
        self._call.cancel()

    async def aclose(self) -> None:
        """Cancels the request if it is still running."""
        self.cancel()

    async def text(self) -> str:
        """Reads the rest of the stream and returns the whole text."""
        async for _ in self:
            pass
        assert self._result is not None
        return self._result.text

    async def __aenter__(self) -> "Stream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._call.done:
            self.cancel()


class SyncStream:
    """The chunks of one streaming request, as a blocking iterator (see
    :meth:`Engine.stream_sync`). A ``with`` block cancels the request on early exit."""

    __slots__ = ("_call", "_check", "_buf", "_result", "_closed")

    def __init__(self, call: "_native.Call", check: bool) -> None:
        self._call = call
        self._check = check
        self._buf: Deque[Chunk] = collections.deque()
        self._result: Optional[Completion] = None
        self._closed = False

    def __iter__(self) -> "SyncStream":
        return self

    def __next__(self) -> Chunk:
        if self._buf:
            return self._buf.popleft()
        if self._closed:
            raise StopIteration
        try:
            chunks = self._call.wait_chunks()
        except BaseException:
            self._call.cancel()
            raise
        if chunks is None:
            if self._result is None:
                self._result = self._call.result()
                if self._check and not self._result.ok:
                    raise error_for(self._result)
            raise StopIteration
        self._buf.extend(chunks)
        return self._buf.popleft()

    @property
    def result(self) -> Optional[Completion]:
        if self._result is None and self._call.done and not self._buf:
            self._result = self._call.result()
        return self._result

    def cancel(self) -> None:
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> "SyncStream":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._call.done:
            self.cancel()

    def text(self) -> str:
        for _ in self:
            pass
        assert self._result is not None
        return self._result.text
