"""Graph orchestration: dependencies, concurrency of independent steps, failures."""

import asyncio

import pytest

import chimeraforge as cf
from chimeraforge.graph import Agent, Graph


def test_independent_steps_run_at_the_same_time(synth):
    # 40 tokens at 200 tokens/s: each LLM step takes about 0.2 s.
    collector = Agent("collector", system="List metrics.", max_tokens=40)
    analyst = Agent("analyst", system="Recommend one thing.", max_tokens=40)
    g = Graph("study")
    g.llm("cpu", "Metrics: {cpu_data}", agent=collector)
    g.llm("gpu", "Metrics: {gpu_data}", agent=collector)
    g.llm("advice", "CPU: {cpu}\nGPU: {gpu}", agent=analyst)
    g.fn("report", lambda ctx: f"{ctx['advice']} ({len(ctx['cpu'].split())} words)")

    with cf.Engine(endpoint=synth.url, backend="ollama", model="synth") as engine:
        r = asyncio.run(g.run(engine, {"cpu_data": "a", "gpu_data": "b"}))
    assert r.ok
    s = r.steps
    # cpu and gpu overlapped; advice started after both ended.
    assert s["cpu"].start_ns < s["gpu"].end_ns and s["gpu"].start_ns < s["cpu"].end_ns
    assert s["advice"].start_ns >= max(s["cpu"].end_ns, s["gpu"].end_ns)
    assert s["report"].start_ns >= s["advice"].end_ns
    assert r.wall_ms < s["cpu"].ms + s["gpu"].ms + s["advice"].ms
    assert r["report"].endswith("(40 words)")
    assert r.results["advice"].tokens_out == 40


def test_memory_agent_keeps_its_conversation(synth):
    keeper = Agent("keeper", system="You keep an inn.", memory=True, max_tokens=3)
    seen = []

    g = Graph("scene")
    g.llm("greet", "A traveler enters.", agent=keeper)
    g.llm("reply", "The traveler asks for a room.", agent=keeper, after=["greet"],
          on_chunk=lambda step, chunk: seen.append((step, chunk.text)))
    with cf.Engine(endpoint=synth.url, backend="ollama", model="synth") as engine:
        r = g.run_sync(engine)
    assert r.ok
    assert [m["role"] for m in keeper.history] == ["user", "assistant", "user", "assistant"]
    assert keeper.history[1]["content"] == r.results["greet"].text
    assert [s for s, _ in seen] == ["reply"] * 3


def test_a_failed_step_skips_its_dependents_only(synth):
    g = Graph("partial")
    g.llm("good", "fine", max_tokens=2)
    g.llm("bad", "fails", pool="nowhere", max_tokens=2)
    g.llm("after_bad", "uses {bad}", max_tokens=2)
    g.llm("after_good", "uses {good}", max_tokens=2)
    with cf.Engine(endpoint=synth.url, backend="ollama", model="synth") as engine:
        with pytest.raises(cf.GraphError) as info:
            g.run_sync(engine)
        r = info.value.graph_result
        steps = r.steps
    assert steps["good"].status == "ok" and steps["after_good"].status == "ok"
    assert steps["bad"].status == "failed"
    assert isinstance(steps["bad"].error, cf.BadInputError)
    assert steps["after_bad"].status == "skipped"
    assert "bad" in info.value.failed


def test_graph_checks(synth):
    g = Graph("loop")
    g.llm("a", "{b}")
    g.llm("b", "{a}")
    with cf.Engine(endpoint=synth.url, backend="ollama", model="synth") as engine:
        with pytest.raises(cf.BadInputError, match="cycle"):
            g.run_sync(engine)
        g2 = Graph("missing")
        g2.llm("a", "{nothing}")
        with pytest.raises(cf.BadInputError, match="nothing"):
            g2.run_sync(engine)
    with pytest.raises(cf.BadInputError, match="already"):
        g2.llm("a", "again")
