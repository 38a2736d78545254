"""Agents that use tools: the loop of model call, tool calls, tool results, model call.

::

    import chimeraforge as cf
    from chimeraforge.tools import Toolbox, run_agent

    tools = Toolbox()

    @tools.tool
    def get_weather(city: str, unit: str = "celsius") -> str:
        "The weather in a city."
        return '{"temp": 18}'

    async with cf.Engine(endpoint="http://127.0.0.1:8080", backend="openai") as engine:
        result = await run_agent(engine, [{"role": "user", "content": "Weather in Paris?"}],
                                 tools, max_steps=4)
        print(result.end, result.answer)
        for step in result.steps:
            print(step.ttft_ms, step.tools_ms, [t.outcome for t in step.tools])

A tool is a plain function or an ``async def``; its JSON schema comes from its type hints (str,
int, float, bool, lists, dicts, Optional, Literal) unless given. Plain functions run in a thread,
so a slow one does not stop the event loop. The calls of one step run at once, each with a
timeout. A tool that raises, times out, is unknown, or gets arguments that are not a JSON object
does not end the loop: the model reads a result that says so ("error: ..."). The loop ends on a
reply without tool calls (``end == "answer"``), after ``max_steps`` model calls
(``"max_steps"``), or when a model call fails (``"model_error"``, with ``error``).
The C++ engine has the same loop (``chimera/engine/tool_loop.hpp``); docs/tools.md.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Union

from .errors import BadInputError

__all__ = ["Tool", "Toolbox", "ToolRecord", "Step", "AgentResult", "run_agent", "schema_of"]

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean",
               dict: "object", list: "array"}


def _schema_of_type(tp: Any) -> Dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in _JSON_TYPES:
        return {"type": _JSON_TYPES[tp]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is Union:
        rest = [a for a in args if a is not type(None)]
        return _schema_of_type(rest[0]) if len(rest) == 1 else {}
    if origin in (list, List, Sequence, tuple):
        return {"type": "array", "items": _schema_of_type(args[0])} if args else {"type": "array"}
    if origin in (dict, Dict, Mapping):
        return {"type": "object"}
    return {}  # any JSON value


def schema_of(fn: Callable[..., Any]) -> Dict[str, Any]:
    """The JSON schema of a function's parameters, from its type hints: each parameter a
    property, those without a default (and not Optional) required."""
    hints = typing.get_type_hints(fn)
    props: Dict[str, Any] = {}
    required: List[str] = []
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        tp = hints.get(name, Any)
        props[name] = _schema_of_type(tp)
        optional = typing.get_origin(tp) is Union and type(None) in typing.get_args(tp)
        if p.default is inspect.Parameter.empty and not optional:
            required.append(name)
    schema: Dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


@dataclass
class Tool:
    """A function the model may call: sync or ``async def``, called with the arguments the model
    wrote as keyword arguments; its return value (str, or anything JSON can write) is the result
    the model reads."""

    name: str
    fn: Callable[..., Any]
    description: str = ""
    parameters: Dict[str, Any] = field(default_factory=lambda: {"type": "object",
                                                                 "properties": {}})

    def definition(self) -> Dict[str, Any]:
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}


class Toolbox:
    """The tools an agent may call, by name."""

    def __init__(self, tools: Sequence[Union[Tool, Callable[..., Any]]] = ()) -> None:
        self._tools: Dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, tool: Union[Tool, Callable[..., Any]], *, name: Optional[str] = None,
            description: Optional[str] = None,
            parameters: Optional[Dict[str, Any]] = None) -> Tool:
        """Adds a Tool, or a function (its name, first docstring paragraph and type hints give
        the name, description and schema unless given)."""
        if not isinstance(tool, Tool):
            if not callable(tool):
                raise BadInputError(f"a tool must be a function or a Tool "
                                    f"(got {type(tool).__name__})")
            doc = inspect.getdoc(tool) or ""
            tool = Tool(name=name or tool.__name__, fn=tool,
                        description=description if description is not None
                        else doc.split("\n\n")[0],
                        parameters=parameters or schema_of(tool))
        if not tool.name or not all(c.isalnum() or c in "_-" for c in tool.name) \
                or len(tool.name) > 64:
            raise BadInputError(f"tool name {tool.name!r} must be 1-64 letters, digits, '_' "
                                f"or '-'")
        if tool.name in self._tools:
            raise BadInputError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool
        return tool

    def tool(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: registers ``fn`` and returns it unchanged."""
        self.add(fn)
        return fn

    def get(self, name: str) -> Optional[Tool]:
        return self._tools.get(name)

    def names(self) -> List[str]:
        return list(self._tools)

    def definitions(self) -> List[Dict[str, Any]]:
        """The tools as OpenAI/Ollama definitions (the ``tools`` of a chat call)."""
        return [t.definition() for t in self._tools.values()]


@dataclass
class ToolRecord:
    """One tool call: as the model asked (``id`` ours, ``call_<step>_<n>``, when it gave none),
    what came of it (ok, error, timeout, unknown_tool, bad_arguments) and what the model read."""

    id: str
    name: str
    arguments: str
    outcome: str
    result: str
    elapsed_ms: float


@dataclass
class Step:
    """One model call and the tool calls it asked for."""

    completion: Any  # chimeraforge.Completion
    tools: List[ToolRecord]
    model_ms: float  # the model call
    tools_ms: float  # the step's tool calls, wall time (they run at once)
    step_ms: float   # the whole step

    @property
    def ttft_ms(self) -> Optional[float]:
        return self.completion.ttft_client_ms

    @property
    def tokens_out(self) -> Optional[int]:
        return self.completion.tokens_out


@dataclass
class AgentResult:
    end: str  # "answer", "max_steps" or "model_error"
    answer: str
    messages: List[Dict[str, Any]]
    steps: List[Step]
    error: Optional[BaseException] = None

    @property
    def overhead_ms(self) -> float:
        """The loop's own time: step time less model and tool time, over all steps."""
        return sum(s.step_ms - s.model_ms - s.tools_ms for s in self.steps)


async def _call(tool: Tool, args: Dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(tool.fn):
        return await tool.fn(**args)
    return await asyncio.get_running_loop().run_in_executor(None, lambda: tool.fn(**args))


async def _run_one(tools: Toolbox, call: Dict[str, str], timeout: float) -> ToolRecord:
    t0 = time.monotonic()

    def record(outcome: str, result: str) -> ToolRecord:
        return ToolRecord(call["id"], call["name"], call["arguments"], outcome, result,
                          (time.monotonic() - t0) * 1e3)

    tool = tools.get(call["name"])
    if tool is None:
        names = ", ".join(tools.names()) or "(none)"
        return record("unknown_tool",
                      f"error: there is no tool named '{call['name']}'; the tools are: {names}")
    try:
        args = json.loads(call["arguments"] or "{}")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        return record("bad_arguments", f"error: the arguments of '{call['name']}' are not a "
                                       f"JSON object: {call['arguments'][:200]}")
    try:
        value = await asyncio.wait_for(_call(tool, args), timeout)
    except asyncio.TimeoutError:
        return record("timeout", f"error: the tool '{call['name']}' did not answer within "
                                 f"{timeout * 1e3:g} ms")
    except Exception as e:  # the model reads what went wrong
        return record("error", f"error: the tool '{call['name']}' failed: {e}")
    return record("ok", value if isinstance(value, str) else json.dumps(value))


async def run_agent(engine: Any, messages: Sequence[Mapping[str, Any]], tools: Toolbox, *,
                    max_steps: int = 8, tool_timeout: float = 30.0,
                    tool_choice: Optional[str] = None,
                    definitions: Optional[Sequence[Mapping[str, Any]]] = None,
                    **chat_kwargs: Any) -> AgentResult:
    """Runs the loop on ``engine`` (a :class:`chimeraforge.Engine`). ``tool_choice`` applies to
    the first step ("required" becomes "auto" after it, so that the model can answer);
    ``definitions``, when given, is what the model is told about instead of the toolbox's own;
    other keyword arguments go to every :meth:`Engine.chat` call (temperature, max_tokens, ...).
    """
    if not 1 <= max_steps <= 1000:
        raise BadInputError(f"max_steps is {max_steps}; it must be from 1 to 1000")
    if not 0 < tool_timeout <= 86400:
        raise BadInputError(f"tool_timeout is {tool_timeout}; it must be from 0 to 86400 s")
    convo: List[Dict[str, Any]] = [dict(m) for m in messages]
    defs = list(definitions) if definitions is not None else tools.definitions()
    steps: List[Step] = []
    answer = ""
    for step_no in range(1, max_steps + 1):
        t_step = time.monotonic()
        choice = "auto" if step_no > 1 and tool_choice == "required" else tool_choice
        try:
            c = await engine.chat(convo, tools=defs, tool_choice=choice, **chat_kwargs)
        except Exception as e:
            steps.append(Step(None, [], (time.monotonic() - t_step) * 1e3, 0.0,
                              (time.monotonic() - t_step) * 1e3))
            return AgentResult("model_error", answer, convo, steps, e)
        model_ms = (time.monotonic() - t_step) * 1e3
        answer = c.text
        calls = [dict(tc) for tc in c.tool_calls]
        for i, tc in enumerate(calls, 1):
            tc["id"] = tc.get("id") or f"call_{step_no}_{i}"
        reply: Dict[str, Any] = {"role": "assistant", "content": c.text}
        if c.thinking:
            reply["thinking"] = c.thinking
        if calls:
            reply["tool_calls"] = calls
        convo.append(reply)
        if not calls:
            steps.append(Step(c, [], model_ms, 0.0, (time.monotonic() - t_step) * 1e3))
            return AgentResult("answer", answer, convo, steps)
        t_tools = time.monotonic()
        records = await asyncio.gather(*(_run_one(tools, tc, tool_timeout) for tc in calls))
        tools_ms = (time.monotonic() - t_tools) * 1e3
        for r in records:
            convo.append({"role": "tool", "content": r.result, "tool_name": r.name,
                          "tool_call_id": r.id})
        steps.append(Step(c, list(records), model_ms, tools_ms,
                          (time.monotonic() - t_step) * 1e3))
    return AgentResult("max_steps", answer, convo, steps)
