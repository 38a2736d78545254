"""What whole runs return: the agent workflow and the multi-agent scenarios."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _native
from ._native import Completion

__all__ = ["WorkflowRun", "WorkflowResult", "MultiResult", "concurrency_figures",
           "write_records"]


@dataclass
class WorkflowRun:
    """One run of one configuration of the agent workflow."""

    config: str
    run: int
    ingest_ms: float
    digest_ms: float
    analysis_ms: float
    report_ms: float
    write_ms: float
    total_ms: float
    files: int
    records: int
    file_errors: int
    error_values: int
    bytes: int
    digest_tokens: int
    digest_budget: int
    analysis: Completion
    """The "reasoning" call (its text is the analysis; its figures as for any request)."""
    report: Completion
    """The "reporting" call."""
    analysis_prompt: str
    report_prompt: str
    sections_found: List[str]
    sections_missing: List[str]
    report_file: str

    @property
    def llm_ms(self) -> float:
        """Time in the two LLM calls."""
        return self.analysis_ms + self.report_ms


@dataclass
class WorkflowResult:
    """The outcome of :meth:`Engine.run_workflow`."""

    ok: bool
    error: str
    runs: List[WorkflowRun]
    written: List[str]

    @classmethod
    def from_native(cls, d: Mapping[str, Any]) -> "WorkflowResult":
        return cls(ok=d["ok"], error=d["error"], runs=[WorkflowRun(**r) for r in d["runs"]],
                   written=list(d["written"]))


@dataclass
class MultiResult:
    """The outcome of :meth:`Engine.run_multi`: every request's record (docs/records.md) and
    the concurrency figures of METRICS.md computed from them."""

    agents: int
    records: List[Dict[str, Any]]
    figures: Dict[str, Any]
    """system_tps, efficiency, contention, stall_rate, balance, ttft/itl/e2e percentiles (ms),
    overhead_ttft and delivery_lag percentiles (synthetic server), rss_peak (bytes), ..."""
    wall_s: float
    rss_peak: int
    agents_failed: int = 0
    agent_errors: List[str] = field(default_factory=list)

    @classmethod
    def from_native(cls, d: Mapping[str, Any], agents: int) -> "MultiResult":
        return cls(agents=agents, records=list(d["records"]), figures=dict(d["figures"]),
                   wall_s=d["wall_s"], rss_peak=d["rss_peak"], agents_failed=d["agents_failed"],
                   agent_errors=list(d["agent_errors"]))

    @property
    def errors(self) -> int:
        return sum(1 for r in self.records if not r["ok"])

    def write_records(self, path: Union[str, "os.PathLike[str]"], **header: Any) -> None:
        """Writes the records file (docs/records.md): a header line, then one line per
        request. ``header`` adds keys (endpoint, backend, ...) to the header."""
        write_records(path, self.records, agents=self.agents, **header)


def concurrency_figures(records: Sequence[Mapping[str, Any]], agents: int,
                        lone_decode_tps: Optional[float] = None,
                        loopback_floor_ns: Optional[int] = None) -> Dict[str, Any]:
    """The concurrency figures of METRICS.md over per-request records, computed by the
    engine's own code (the same that ``chimeraforge multi`` prints)."""
    return _native.concurrency_figures(list(records), agents, lone_decode_tps, loopback_floor_ns)


def write_records(path: Union[str, "os.PathLike[str]"], records: Iterable[Mapping[str, Any]],
                  *, program: str = "python-engine", agents: int = 0,
                  requests_per_agent: int = 0, endpoint: str = "", backend: str = "",
                  **extra: Any) -> None:
    """Writes a records file: the header line docs/records.md asks for, then the records in
    (agent, request) order."""
    rows = sorted(records, key=lambda r: (r["agent"], r["request"]))
    head: Dict[str, Any] = {
        "kind": "header", "program": program, "command": [sys.executable] + sys.argv,
        "endpoint": endpoint, "backend": backend, "agents": agents,
        "requests_per_agent": requests_per_agent,
        "env": {"python": platform.python_version(), "chimeraforge": _native.__version__,
                "os": platform.platform(), "cpu_count": os.cpu_count()},
    }
    head.update(extra)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(head, separators=(",", ":")) + "\n")
        for r in rows:
            rec = dict(r)
            rec["program"] = program
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
