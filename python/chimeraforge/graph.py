"""Agents and steps with dependencies, run on the engine: a step runs as soon as its inputs are
ready, and steps that do not depend on each other run at the same time.

::

    from chimeraforge import Engine
    from chimeraforge.graph import Agent, Graph

    collector = Agent("collector", system="You list benchmark metrics plainly.", pool="collector")
    analyst = Agent("analyst", system="You give one recommendation, with its reason.",
                    pool="insight")

    g = Graph("study")
    g.llm("cpu", "List the metrics in: {cpu_data}", agent=collector)
    g.llm("gpu", "List the metrics in: {gpu_data}", agent=collector)      # runs beside "cpu"
    g.llm("advice", "CPU: {cpu}\\nGPU: {gpu}\\nWhat should we change?", agent=analyst)
    g.fn("report", lambda ctx: f"# Advice\\n\\n{ctx['advice']}")

    async with Engine(pools="pools.toml") as engine:
        result = await g.run(engine, inputs={"cpu_data": "...", "gpu_data": "..."})
    print(result["report"])

Dependencies come from ``after=[...]`` and from the ``{placeholders}`` of a prompt that name
other steps (``{cpu}`` above); a placeholder that names no step is taken from ``inputs``. An LLM
step's output is its text (or what ``output=`` makes of its Completion); a function step's
output is what the function returns (it may be a coroutine function). A failed step fails
the steps that depend on it; the others go on, and ``run`` raises a :class:`GraphError` with
every result at the end (``raise_on_error=False`` returns them instead).
"""

from __future__ import annotations

import asyncio
import inspect
import string
import time
from dataclasses import dataclass, field
from typing import (Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Set,
                    Tuple, Union)

from ._native import Chunk, Completion
from .errors import BadInputError, ChimeraError

__all__ = ["Agent", "Graph", "Context", "GraphResult", "GraphError", "StepRecord"]

PromptLike = Union[str, Callable[["Context"], Union[str, List[Dict[str, Any]]]]]


class Agent:
    """A persona: a system prompt, the pool it runs on, its sampling options, and (with
    ``memory=True``) the conversation so far, so that each of its steps sees its earlier turns.
    With memory, an agent speaks one step at a time, and its requests carry a session (the
    agent's name), which lets the in-process backend keep the conversation's KV cache.

    Args:
        name: the agent's name (also the pool's fair-queue key for its requests).
        system: its system prompt.
        pool: the pool its steps run on (default: the engine's first).
        memory: keep the conversation (user prompts and its answers) between steps.
        options: request options for its steps (max_tokens, temperature, model, ...).
    """

    def __init__(self, name: str, system: str = "", *, pool: Optional[str] = None,
                 memory: bool = False, **options: Any) -> None:
        self.name = name
        self.system = system
        self.pool = pool
        self.memory = memory
        self.options = options
        self.history: List[Dict[str, str]] = []
        self._lock: Optional[asyncio.Lock] = None

    def forget(self) -> None:
        """Drops the conversation so far."""
        self.history.clear()

    def __repr__(self) -> str:
        return f"<Agent {self.name} pool={self.pool or 'default'} memory={self.memory}>"


class Context(Mapping[str, Any]):
    """What a step sees: the graph's inputs and the outputs of the steps before it.
    ``ctx["step"]`` is a step's output, ``ctx.result("step")`` an LLM step's Completion."""

    def __init__(self, inputs: Mapping[str, Any], outputs: Dict[str, Any],
                 results: Dict[str, Completion], visible: Set[str]) -> None:
        self.inputs = inputs
        self._outputs = outputs
        self._results = results
        self._visible = visible

    def __getitem__(self, key: str) -> Any:
        if key in self._visible:
            return self._outputs[key]
        if key in self.inputs:
            return self.inputs[key]
        raise KeyError(f"'{key}' is neither an input nor a step this one depends on")

    def __iter__(self) -> Any:
        yield from self.inputs
        yield from (k for k in self._visible if k not in self.inputs)

    def __len__(self) -> int:
        return len(set(self.inputs) | self._visible)

    def result(self, step: str) -> Completion:
        if step not in self._visible or step not in self._results:
            raise KeyError(f"'{step}' is not an LLM step this one depends on")
        return self._results[step]


@dataclass
class _Step:
    name: str
    after: Tuple[str, ...]
    prompt: Optional[PromptLike] = None
    func: Optional[Callable[[Context], Any]] = None
    agent: Optional[Agent] = None
    system: Optional[str] = None
    pool: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    output: Optional[Callable[[Completion], Any]] = None
    on_chunk: Optional[Callable[[str, Chunk], Any]] = None


@dataclass
class StepRecord:
    """When a step ran and how it ended."""

    name: str
    status: str  # "ok", "failed", "skipped", "cancelled"
    start_ns: int = 0
    end_ns: int = 0
    error: Optional[BaseException] = None
    completion: Optional[Completion] = None
    """An LLM step's Completion (text, figures)."""

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6 if self.end_ns else 0.0


@dataclass
class GraphResult:
    """Every step's output (``result["step"]``), the Completions of the LLM steps, and when
    each step ran."""

    outputs: Dict[str, Any]
    results: Dict[str, Completion]
    steps: Dict[str, StepRecord]
    wall_ms: float

    def __getitem__(self, step: str) -> Any:
        return self.outputs[step]

    @property
    def ok(self) -> bool:
        return all(s.status == "ok" for s in self.steps.values())

    @property
    def failed(self) -> Dict[str, BaseException]:
        return {n: s.error for n, s in self.steps.items() if s.error is not None}

    def concurrency(self) -> float:
        """Sum of step times / wall time: above 1 when steps overlapped."""
        busy = sum(s.ms for s in self.steps.values())
        return busy / self.wall_ms if self.wall_ms > 0 else 0.0


class GraphError(ChimeraError):
    """One or more steps failed; ``graph_result`` has everything, ``failed`` the errors."""

    def __init__(self, message: str, graph_result: GraphResult) -> None:
        super().__init__(message)
        self.graph_result = graph_result
        self.failed = graph_result.failed


def _placeholders(template: str) -> List[str]:
    names = []
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name:
            names.append(field_name.split(".")[0].split("[")[0])
    return names


class Graph:
    """A set of steps with dependencies. Build it once; run it as often as you like (on any
    engine, with different inputs)."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self._steps: Dict[str, _Step] = {}

    @property
    def steps(self) -> List[str]:
        return list(self._steps)

    def _add(self, step: _Step) -> str:
        if step.name in self._steps:
            raise BadInputError(f"graph '{self.name}' already has a step named '{step.name}'")
        if not step.name or not step.name.isidentifier():
            raise BadInputError(f"a step name must be an identifier (got '{step.name}')")
        self._steps[step.name] = step
        return step.name

    def llm(self, name: str, prompt: PromptLike, *, agent: Optional[Agent] = None,
            system: Optional[str] = None, pool: Optional[str] = None,
            after: Iterable[str] = (), output: Optional[Callable[[Completion], Any]] = None,
            on_chunk: Optional[Callable[[str, Chunk], Any]] = None, **options: Any) -> str:
        """Adds an LLM step.

        Args:
            name: the step's name (its output's name in later prompts).
            prompt: a template (``str.format`` placeholders name inputs and earlier steps) or a
                function of the Context returning the user message, or a whole message list.
            agent: the persona that speaks (system prompt, pool, options, memory).
            system, pool: instead of (or over) the agent's.
            after: steps to wait for besides those the template names.
            output: makes the step's output from its Completion (default: the stripped text).
            on_chunk: streams the step: called with (step name, chunk) as chunks arrive.
            options: request options (max_tokens, temperature, model, seed, ...).
        Returns:
            the step's name.
        """
        deps = list(after)
        if isinstance(prompt, str):
            deps += _placeholders(prompt)
        return self._add(_Step(name=name, after=tuple(dict.fromkeys(deps)), prompt=prompt,
                               agent=agent, system=system, pool=pool, options=options,
                               output=output, on_chunk=on_chunk))

    def fn(self, name: str, func: Callable[[Context], Union[Any, Awaitable[Any]]], *,
           after: Iterable[str] = ()) -> str:
        """Adds a Python step: ``func(ctx)`` (a function or coroutine function) runs once the
        steps in ``after`` are done; by default it waits for every step added before it."""
        deps = tuple(after) if after else tuple(self._steps)
        return self._add(_Step(name=name, after=deps, func=func))

    # ------------------------------------------------------------------ checks
    def _order(self, inputs: Mapping[str, Any]) -> List[_Step]:
        """The steps in an order where each comes after its dependencies; the dependencies
        checked (a placeholder that names no step must be an input)."""
        steps = self._steps
        for s in steps.values():
            for d in s.after:
                if d not in steps and d not in inputs:
                    raise BadInputError(f"step '{s.name}' needs '{d}', which is neither a step "
                                        f"of graph '{self.name}' nor an input")
        order: List[_Step] = []
        state: Dict[str, int] = {}

        def visit(name: str, path: Tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " -> ".join(path[path.index(name):] + (name,))
                raise BadInputError(f"graph '{self.name}' has a cycle: {cycle}")
            state[name] = 1
            for d in steps[name].after:
                if d in steps:
                    visit(d, path + (name,))
            state[name] = 2
            order.append(steps[name])

        for name in steps:
            visit(name, ())
        return order

    def _ancestors(self) -> Dict[str, Set[str]]:
        memo: Dict[str, Set[str]] = {}

        def anc(name: str) -> Set[str]:
            if name not in memo:
                out: Set[str] = set()
                for d in self._steps[name].after:
                    if d in self._steps:
                        out.add(d)
                        out |= anc(d)
                memo[name] = out
            return memo[name]

        for n in self._steps:
            anc(n)
        return memo

    # ------------------------------------------------------------------ running
    async def run(self, engine: Any, inputs: Optional[Mapping[str, Any]] = None, *,
                  raise_on_error: bool = True, max_concurrency: Optional[int] = None,
                  on_step: Optional[Callable[[StepRecord, Any], Any]] = None) -> GraphResult:
        """Runs every step on ``engine`` (a chimeraforge.Engine): each starts once the steps it
        depends on are done; independent steps run at the same time.

        Args:
            inputs: values for the placeholders that name no step.
            raise_on_error: raise GraphError when a step failed (after every step has ended).
            max_concurrency: most steps running at once (default: no limit).
            on_step: called with (StepRecord, output) as each step ends.
        """
        inputs = dict(inputs or {})
        order = self._order(inputs)
        ancestors = self._ancestors()
        loop = asyncio.get_running_loop()
        done: Dict[str, asyncio.Future[bool]] = {s.name: loop.create_future() for s in order}
        outputs: Dict[str, Any] = {}
        results: Dict[str, Completion] = {}
        records: Dict[str, StepRecord] = {s.name: StepRecord(s.name, "pending") for s in order}
        limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None

        async def run_step(step: _Step) -> None:
            rec = records[step.name]
            try:
                for d in step.after:
                    if d in done and not await done[d]:
                        rec.status = "skipped"
                        rec.error = ChimeraError(f"step '{step.name}' did not run: step '{d}' "
                                                 f"failed")
                        done[step.name].set_result(False)
                        return
                ctx = Context(inputs, outputs, results, ancestors[step.name])
                if limit is not None:
                    await limit.acquire()
                try:
                    rec.start_ns = time.monotonic_ns()
                    value = await self._execute(engine, step, ctx, results)
                finally:
                    rec.end_ns = time.monotonic_ns()
                    if limit is not None:
                        limit.release()
                outputs[step.name] = value
                rec.completion = results.get(step.name)
                rec.status = "ok"
                if on_step is not None:
                    r = on_step(rec, value)
                    if inspect.isawaitable(r):
                        await r
                done[step.name].set_result(True)
            except asyncio.CancelledError:
                rec.status = "cancelled"
                if not done[step.name].done():
                    done[step.name].set_result(False)
                raise
            except Exception as exc:  # a failed step fails its dependents, not the graph
                rec.status = "failed"
                rec.error = exc
                if not done[step.name].done():
                    done[step.name].set_result(False)
                if on_step is not None:
                    r = on_step(rec, None)
                    if inspect.isawaitable(r):
                        await r

        t0 = time.monotonic_ns()
        tasks = [asyncio.ensure_future(run_step(s)) for s in order]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        result = GraphResult(outputs=outputs, results=results, steps=records,
                             wall_ms=(time.monotonic_ns() - t0) / 1e6)
        if raise_on_error and not result.ok:
            failed = [f"{n}: {s.error}" for n, s in records.items() if s.status == "failed"]
            raise GraphError(f"graph '{self.name}': {len(failed)} step(s) failed: "
                             + "; ".join(failed), result)
        return result

    def run_sync(self, engine: Any, inputs: Optional[Mapping[str, Any]] = None,
                 **kwargs: Any) -> GraphResult:
        """:meth:`run` from a plain script (its own event loop)."""
        return asyncio.run(self.run(engine, inputs, **kwargs))

    async def _execute(self, engine: Any, step: _Step, ctx: Context,
                       results: Dict[str, Completion]) -> Any:
        if step.func is not None:
            value = step.func(ctx)
            if inspect.isawaitable(value):
                value = await value
            return value
        agent = step.agent
        if agent is not None and agent.memory:
            if agent._lock is None:
                agent._lock = asyncio.Lock()
            async with agent._lock:
                return await self._llm(engine, step, ctx, results)
        return await self._llm(engine, step, ctx, results)

    async def _llm(self, engine: Any, step: _Step, ctx: Context,
                   results: Dict[str, Completion]) -> Any:
        agent = step.agent
        prompt = step.prompt
        made = prompt(ctx) if callable(prompt) else prompt.format_map(_Formatting(ctx))
        if inspect.isawaitable(made):
            made = await made
        system = step.system if step.system is not None else (agent.system if agent else "")
        messages: List[Dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        if agent is not None and agent.memory:
            messages.extend(agent.history)
        if isinstance(made, str):
            user = {"role": "user", "content": made}
            messages.append(user)
        else:
            user = None
            messages.extend(made)
        options: Dict[str, Any] = dict(agent.options) if agent else {}
        options.update(step.options)
        pool = step.pool or (agent.pool if agent else None)
        if agent is not None:
            options.setdefault("agent", agent.name)
            if agent.memory:
                options.setdefault("session", f"agent:{agent.name}")
        if step.on_chunk is not None:
            stream = engine.stream(messages=messages, pool=pool, **options)
            async with stream:
                async for chunk in stream:
                    r = step.on_chunk(step.name, chunk)
                    if inspect.isawaitable(r):
                        await r
            completion = stream.result
            assert completion is not None
        else:
            completion = await engine.chat(messages, pool=pool, **options)
        results[step.name] = completion
        if agent is not None and agent.memory and user is not None:
            agent.history.append(user)
            agent.history.append({"role": "assistant", "content": completion.text})
        return step.output(completion) if step.output else completion.text.strip()


class _Formatting(Mapping[str, Any]):
    """str.format_map view of a Context that names the missing key clearly."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __getitem__(self, key: str) -> Any:
        return self._ctx[key]

    def __iter__(self) -> Any:
        return iter(self._ctx)

    def __len__(self) -> int:
        return len(self._ctx)
