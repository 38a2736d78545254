"""Whole runs from Python: the multi-agent scenarios and the agent workflow."""

import asyncio
import json
from pathlib import Path

import pytest

import chimeraforge as cf

ROOT = Path(__file__).resolve().parents[2]


def test_run_multi_homogeneous(synth, tmp_path):
    ep = cf.Endpoint(synth.url, backend="ollama", limits=cf.Limits(max_idle_connections=32))
    with cf.Engine(pools=cf.Pool(endpoints=[ep], model="synth"), executor="single") as engine:
        m = engine.run_multi(16, requests_per_agent=2, max_tokens=8, model="synth",
                             record_lags=True, stagger_ms=5)
    assert len(m.records) == 32 and m.errors == 0
    f = m.figures
    assert f["tokens"] == 32 * 8
    assert f["efficiency"] is not None and f["efficiency"] > 0.5
    assert f["contention"] is not None and f["overhead_ttft_p50_ms"] is not None
    assert m.rss_peak > 0
    path = tmp_path / "records.jsonl"
    m.write_records(path, endpoint=synth.url, backend="ollama", requests_per_agent=2)
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["kind"] == "header" and head["program"] == "python-engine"
    assert len(lines) == 33
    # The records give the same figures through the engine's own formulas.
    again = cf.concurrency_figures(m.records, 16, f["lone_decode_tps_client"])
    assert again["system_tps"] == pytest.approx(f["system_tps"])


def test_run_multi_personas_on_two_pools(synth):
    pools = [cf.Pool("collector", [cf.Endpoint(synth.url, backend="ollama")], model="synth"),
             cf.Pool("insight", [cf.Endpoint(synth.url, backend="ollama")], model="synth")]

    async def main(engine):
        return await engine.arun_multi(4, scenario="personas", max_tokens=4, calibrate=False)

    with cf.Engine(pools=pools) as engine:
        m = asyncio.run(main(engine))
        status = {p: engine.pool_status(p)[0]["dispatched"] for p in engine.pools}
    assert m.errors == 0 and len(m.records) == 4
    assert status["collector"] >= 2 and status["insight"] >= 2


def test_run_workflow_in_process(tiny_model, tmp_path):
    events = []
    ep = cf.Endpoint(str(tiny_model), backend="llama",
                     llama=cf.LlamaOptions(threads=2, ctx_per_seq=2048))
    config = cf.WorkflowConfig(name="small", analysis_tokens=24, report_tokens=24)
    with cf.Engine(endpoint=ep) as engine:
        r = engine.run_workflow(data=ROOT / "data/sample", config=config, out_dir=tmp_path,
                                on_progress=events.append)
    assert r.ok, r.error
    run = r.runs[0]
    assert run.config == "small" and run.files > 0 and run.records > 0
    assert run.analysis.ok and run.analysis.tokens_out == 24
    assert run.report.ok
    assert (tmp_path / "report.md").exists() or any(p.endswith("report.md") for p in r.written)
    assert any(e["kind"] == "stage_done" and e["stage"] == "analysis" for e in events)


def test_run_workflow_reports_a_failed_call(tmp_path):
    from conftest import free_port

    with cf.Engine(endpoint=f"http://127.0.0.1:{free_port()}", backend="ollama", model="synth") as engine:
        r = engine.run_workflow(ROOT / "data/sample", "baseline", out_dir=tmp_path)
    assert not r.ok and r.error
