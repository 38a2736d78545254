"""The Python tool loop (chimeraforge.tools).

Its tool handling runs on replies scripted by a small OpenAI-compatible fixture here: a
random-weight model cannot be made to write a call (the pinned llama.cpp's "required" grammar lets
content come before the call, and the model never reaches it). End to end, a real llama-server
started with --jinja, serving the tiny model with a tool-calling chat template (one of llama.cpp's
own, written into the GGUF by `chimeraforge model synth --chat-template`), takes the tools and the
model answers."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Iterator, Literal, Optional

import pytest

import chimeraforge as cf
from chimeraforge.tools import Toolbox, run_agent, schema_of
from conftest import CLI, LLAMA_SERVER, MODEL_DIR, Server, free_port

TEMPLATE = "Qwen-Qwen2.5-7B-Instruct"
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
FAST = dict(temperature=0.0, max_tokens=64)


@pytest.fixture(scope="module")
def tool_model() -> Path:
    path = MODEL_DIR / "tiny-qwen2-tools-seed42.gguf"
    if path.exists():
        return path
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.skip("no tool model and no chimeraforge CLI to write one")
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    tmp = MODEL_DIR / f".tiny-tools-{os.getpid()}.gguf"
    subprocess.run([CLI, "model", "synth", "--preset", "tiny", "--seed", "42", "--quiet",
                    "--vocab", "qwen2", "--chat-template", TEMPLATE, "--out", str(tmp)], check=True,
                   capture_output=True)
    os.replace(tmp, path)
    return path


@pytest.fixture(scope="module")
def jinja_server(tool_model: Path) -> Iterator[Server]:
    if not LLAMA_SERVER or not os.access(LLAMA_SERVER, os.X_OK):
        pytest.skip(f"llama-server not found ({LLAMA_SERVER}); set CHIMERA_LLAMA_SERVER")
    port = free_port()
    srv = Server([LLAMA_SERVER, "-m", str(tool_model), "--host", "127.0.0.1", "--port",
                  str(port), "-np", "1", "-c", "4096", "-t", "2", "--no-warmup", "--cache-ram",
                  "0", "--jinja", "--no-webui"], "llama-server-jinja")
    srv.port = port
    srv.wait_ready(60)
    yield srv
    srv.stop()


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


CALL = [
    {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_w1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": "{\"city\": \"Paris\"}"}}]},
        "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
     "usage": {"prompt_tokens": 40, "completion_tokens": 12}},
]
ANSWER = [
    {"choices": [{"index": 0, "delta": {"content": "Mild."}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 60, "completion_tokens": 2}},
]


class Scripted:
    """A FIXTURE, not a server: answers /v1/chat/completions with a tool call first, then with
    an answer, as SSE streams in OpenAI's shape; keeps the request bodies."""

    def __init__(self) -> None:
        self.bodies: list = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                events = CALL if len(outer.bodies) == 1 else ANSWER
                data = b"".join(_sse(e) for e in events) + b"data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def scripted() -> Iterator[Scripted]:
    s = Scripted()
    yield s
    s.close()


@pytest.fixture()
def engine(scripted):
    with cf.Engine(endpoint=scripted.url, backend="openai") as e:
        yield e


def weather_box(fn) -> Toolbox:
    box = Toolbox()
    box.add(fn, name="get_weather", description="The weather in a city")
    return box


def get_weather(city: Literal["Paris", "Oslo"]) -> dict:
    return {"city": city, "temp_c": 18}


def test_schema_from_type_hints():
    def f(city: str, days: int, unit: Literal["c", "f"] = "c", note: Optional[str] = None,
          tags: list[str] = ()) -> str:
        return ""

    s = schema_of(f)
    assert s["required"] == ["city", "days"]
    assert s["properties"]["days"] == {"type": "integer"}
    assert s["properties"]["unit"] == {"enum": ["c", "f"]}
    assert s["properties"]["note"] == {"type": "string"}
    assert s["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}


def test_runs_a_plain_function_and_answers(engine, scripted):
    r = asyncio.run(run_agent(engine, QUESTION, weather_box(get_weather), max_steps=4,
                              tool_choice="required", **FAST))
    assert r.end == "answer", r.error
    assert r.answer == "Mild."
    assert len(r.steps) == 2
    rec = r.steps[0].tools[0]
    assert rec.outcome == "ok" and rec.name == "get_weather"
    assert json.loads(rec.result)["temp_c"] == 18
    assert rec.id == "call_w1"  # the server's id
    tool_msg = r.messages[2]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == rec.id
    sent = scripted.bodies[1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_w1"
    assert sent[2]["tool_call_id"] == "call_w1"
    assert scripted.bodies[0]["tool_choice"] == "required"
    assert scripted.bodies[1]["tool_choice"] == "auto"
    assert r.steps[0].ttft_ms is not None and r.steps[0].tokens_out > 0
    assert r.overhead_ms >= 0


def test_async_tool_that_raises_becomes_an_error_result(engine):
    async def broken(city: str) -> str:
        raise RuntimeError("sensor offline")

    r = asyncio.run(run_agent(engine, QUESTION, weather_box(broken), max_steps=3,
                              tool_choice="required", **FAST))
    assert r.end == "answer"
    rec = r.steps[0].tools[0]
    assert rec.outcome == "error" and "sensor offline" in rec.result


def test_tool_that_times_out(engine):
    async def slow(city: str) -> str:
        await asyncio.sleep(5)
        return "too late"

    r = asyncio.run(run_agent(engine, QUESTION, weather_box(slow), max_steps=3,
                              tool_choice="required", tool_timeout=0.05, **FAST))
    assert r.end == "answer"
    rec = r.steps[0].tools[0]
    assert rec.outcome == "timeout" and "did not answer within 50 ms" in rec.result


def test_unknown_tool_and_step_limit(engine):
    box = Toolbox()
    box.add(lambda: "12:00", name="get_time")
    defs = weather_box(get_weather).definitions()  # the model is told of get_weather only
    r = asyncio.run(run_agent(engine, QUESTION, box, max_steps=1, tool_choice="required",
                              definitions=defs, **FAST))
    assert r.end == "max_steps" and len(r.steps) == 1
    rec = r.steps[0].tools[0]
    assert rec.outcome == "unknown_tool" and "the tools are: get_time" in rec.result
    assert r.messages[-1]["role"] == "tool"


def test_real_server_takes_the_tools_and_the_model_answers(jinja_server):
    with cf.Engine(endpoint=jinja_server.url, backend="openai") as engine:
        r = asyncio.run(run_agent(engine, QUESTION, weather_box(get_weather), max_steps=2,
                                  temperature=0.0, max_tokens=8))
    assert r.end == "answer", r.error
    assert len(r.steps) == 1 and r.steps[0].tokens_out > 0


def test_model_error_ends_the_loop(engine):
    r = asyncio.run(run_agent(engine, QUESTION, weather_box(get_weather),
                              tool_choice="sometimes", **FAST))
    assert r.end == "model_error"
    assert "tool_choice" in str(r.error)
