#!/usr/bin/python3
"""The study's workflows, orchestrated from Python:

1. the agent workflow (ingest -> analysis -> report), the server's defaults against the study's
   "chimera" settings, through engine.run_workflow;
2. the two-persona pipeline (a data collector and an insight agent, each on its own pool, the
   "Dual Ollama" layout) as a graph: one collector step per data file, all at once, then the
   insight agent over what they gathered, then a report written by plain Python.

  /usr/bin/python3 examples/python/study_workflow.py [--data DIR] [--out DIR]
                   [--gguf FILE | --endpoint URL --backend B --model M]
"""

import argparse
import asyncio
from pathlib import Path

from common import ROOT, add_model_args, cf, first_line, pools
from chimeraforge.graph import Agent, Graph


def files_of(folder: Path, limit: int = 4, size: int = 1200) -> dict:
    """Up to `limit` data files, each cut to `size` characters: the collectors' inputs."""
    out = {}
    for p in sorted(x for x in folder.rglob("*") if x.is_file())[:limit]:
        key = "f_" + "".join(c if c.isalnum() else "_" for c in str(p.relative_to(folder)))
        out[key] = (p.relative_to(folder), p.read_text(errors="replace")[:size])
    return out


async def personas(engine: cf.Engine, data: Path, out: Path) -> None:
    collector = Agent("collector", pool="collector", max_tokens=48, temperature=0.3,
                      system="You are a data collection agent. List the benchmark metrics you "
                             "are given plainly, one per line.")
    insight = Agent("insight", pool="insight", max_tokens=64, temperature=0.8,
                    system="You are an insight agent. Read benchmark metrics and give the one "
                           "recommendation that matters most, with its reason.")
    files = files_of(data)
    g = Graph("personas")
    for key, (name, _) in files.items():
        g.llm(key, f"File {name}:\n{{{key}_text}}", agent=collector)   # all at once
    g.llm("advice", lambda ctx: "Metrics gathered:\n" + "\n".join(
        f"- {files[k][0]}: {ctx[k]}" for k in files), agent=insight, after=list(files))

    def write(ctx):
        path = out / "personas.md"
        path.write_text("# Two-agent analysis\n\n## Recommendation\n\n" + ctx["advice"]
                        + "\n\n## Metrics gathered\n\n"
                        + "\n".join(f"### {files[k][0]}\n\n{ctx[k]}\n" for k in files))
        return str(path)

    g.fn("report", write)
    r = await g.run(engine, {f"{k}_text": text for k, (_, text) in files.items()})
    for name, s in r.steps.items():
        c = r.results.get(name)
        extra = f"ttft {c.ttft_client_ms:.1f} ms, {c.tokens_out} tokens" if c else ""
        print(f"  {name:<24} {s.ms:8.1f} ms  {extra}")
    print(f"  wall {r.wall_ms:.1f} ms for {sum(s.ms for s in r.steps.values()):.1f} ms of steps "
          f"(concurrency {r.concurrency():.2f}); wrote {r['report']}")
    print(f"  advice: {first_line(r['advice'])!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT / "data/sample"))
    p.add_argument("--out", default=str(ROOT / "out/python-study"))
    add_model_args(p)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with cf.Engine(pools=pools(a, ["collector", "insight"])) as engine:
        print("1. the agent workflow, baseline vs chimera settings")
        wf = engine.run_workflow(
            a.data, ["baseline", cf.WorkflowConfig("chimera", analysis_tokens=96, report_tokens=96,
                                                   options={"num_ctx": 512, "temperature": 0.8,
                                                            "top_p": 0.9, "top_k": 40,
                                                            "repeat_penalty": 1.1})],
            pool="collector", model=a.model, out_dir=out / "workflow",
            on_progress=lambda e: e["kind"] == "stage_done" and print(f"  {e['text']}"))
        if not wf.ok:
            raise SystemExit(f"workflow failed: {wf.error}")
        for run in wf.runs:
            print(f"  {run.config}: {run.records} records from {run.files} files, analysis "
                  f"ttft {run.analysis.ttft_client_ms:.1f} ms, total {run.total_ms:.0f} ms, "
                  f"{100 * (1 - run.llm_ms / run.total_ms):.1f}% outside the LLM calls")
        print(f"  wrote {', '.join(wf.written)}")
        print("2. collector and insight agents on two pools")
        asyncio.run(personas(engine, Path(a.data), out))


if __name__ == "__main__":
    main()
