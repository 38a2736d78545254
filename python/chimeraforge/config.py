"""Endpoints and pools, as the engine reads them.

Each class has ``to_dict()``; everywhere one is accepted, the equivalent plain dict is too
(the keys are the field names), and so is a TOML pool file (``docs/pools.md``)::

    Pool(name="default", endpoints=[Endpoint("http://127.0.0.1:11434", backend="ollama")])
    {"name": "default", "endpoints": [{"url": "http://127.0.0.1:11434", "backend": "ollama"}]}
    "pools.toml"

Backends: ``"ollama"`` (Ollama's API), ``"openai"`` (OpenAI-compatible servers: llama-server,
vLLM, ...), ``"llama"`` (llama.cpp in this process; ``url`` is the GGUF file).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Union

__all__ = [
    "Timeouts",
    "Limits",
    "LlamaOptions",
    "Endpoint",
    "Pool",
    "Message",
    "WorkflowConfig",
    "PoolsLike",
    "pools_to_dicts",
]

Backend = Literal["ollama", "openai", "llama"]
Routing = Literal["pinned", "round-robin", "least-outstanding", "session-affinity"]


def _clean(d: Dict[str, Any]) -> Dict[str, Any]:
    """A dataclass dict without the fields left at None (the engine's defaults apply)."""
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class Timeouts:
    """Timeouts in milliseconds; 0 disables one. None keeps the engine's default
    (connect 5 s, first token 120 s, idle 30 s, total 900 s)."""

    connect_ms: Optional[int] = None
    first_token_ms: Optional[int] = None
    idle_ms: Optional[int] = None
    total_ms: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return _clean(dataclasses.asdict(self))


@dataclass
class Limits:
    """Size limits and connection reuse. ``max_idle_connections`` is how many connections per
    endpoint stay open between requests (default 16): raise it to the number of agents that
    call at once, so that none reconnects. ``idle_expiry_ms`` closes a connection left idle
    longer than that instead of reusing it (default 90,000; 0: never)."""

    max_record_bytes: Optional[int] = None
    max_body_bytes: Optional[int] = None
    max_idle_connections: Optional[int] = None
    idle_expiry_ms: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return _clean(dataclasses.asdict(self))


@dataclass
class LlamaOptions:
    """The in-process backend (``backend="llama"``): one model and one context serve every
    request; ``parallel`` sequences are decoded together in one batch per step."""

    gpu_layers: Optional[int] = None
    ctx_per_seq: Optional[int] = None
    parallel: Optional[int] = None
    threads: Optional[int] = None
    batch: Optional[int] = None
    prefill_chunk: Optional[int] = None
    flash_attention: Optional[bool] = None

    def to_dict(self) -> Dict[str, Any]:
        return _clean(dataclasses.asdict(self))


@dataclass
class Endpoint:
    """One inference endpoint: a server URL, or a GGUF file for ``backend="llama"``."""

    url: str = ""
    """Empty: $OLLAMA_HOST for ``backend="ollama"`` (scheme optional, port 11434 by default),
    $OPENAI_BASE_URL for ``backend="openai"``."""
    backend: Backend = "openai"
    max_concurrency: int = 0
    """Requests in flight at once (match the server's slots); 0: no limit."""
    api_key: str = ""
    """Empty: $CHIMERA_API_KEY, then $OPENAI_API_KEY for ``backend="openai"``."""
    headers: Optional[Mapping[str, str]] = None
    """Extra request headers; their values are never printed."""
    ca_file: str = ""
    """https: PEM file of the CA certificates to trust instead of the system's."""
    client_cert: str = ""
    """https: PEM client certificate for mutual TLS (with ``client_key``)."""
    client_key: str = ""
    insecure: bool = False
    """https: no certificate verification (warned on stderr)."""
    proxy: str = ""
    """Forward proxy URL; empty: $HTTPS_PROXY/$HTTP_PROXY/$ALL_PROXY/$NO_PROXY (never for
    loopback); "direct": none."""
    retry_attempts: Optional[int] = None
    """Tries on this endpoint before the first token (refused/reset, 429, 503); default 3."""
    retry_budget_ms: Optional[int] = None
    timeouts: Optional[Union[Timeouts, Mapping[str, Any]]] = None
    limits: Optional[Union[Limits, Mapping[str, Any]]] = None
    llama: Optional[Union[LlamaOptions, Mapping[str, Any]]] = None
    expand: str = ""
    """"dns": one endpoint per address the URL's host resolves to, resolved again every
    ``resolve_interval_ms`` (docs/pools.md)."""
    resolve_interval_ms: int = 5000

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"url": os.fspath(self.url), "backend": self.backend,
                             "max_concurrency": self.max_concurrency}
        if self.expand:
            d["expand"] = self.expand
            d["resolve_interval_ms"] = self.resolve_interval_ms
        if self.api_key:
            d["api_key"] = self.api_key
        if self.headers:
            d["headers"] = dict(self.headers)
        for name in ("ca_file", "client_cert", "client_key"):
            if getattr(self, name):
                d[name] = os.fspath(getattr(self, name))
        if self.insecure:
            d["insecure"] = True
        if self.proxy:
            d["proxy"] = self.proxy
        for name in ("retry_attempts", "retry_budget_ms"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        for name in ("timeouts", "limits", "llama"):
            value = getattr(self, name)
            if value is not None:
                d[name] = value.to_dict() if hasattr(value, "to_dict") else dict(value)
        return d


@dataclass
class Pool:
    """Several endpoints behind one name: routing, per-endpoint limits with a fair queue,
    health checks with a circuit breaker, failover before the first token, optional hedging
    (docs/pools.md). "Dual Ollama" is two pools of one endpoint each."""

    name: str = "default"
    endpoints: List[Union[Endpoint, Mapping[str, Any]]] = field(default_factory=list)
    routing: Routing = "least-outstanding"
    model: str = ""
    """Model name sent when a request names none (HTTP backends)."""
    retries: int = -1
    """Retries on other endpoints before the first token; -1: as many as there are others."""
    hedge_after_ms: int = 0
    health_interval_ms: int = 2000
    fallback: str = ""
    """Another pool's name: takes the requests no endpoint of this one can serve before their
    first token (all down, or every attempt failed)."""

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            "name": self.name,
            "routing": self.routing,
            "model": self.model,
            "retries": self.retries,
            "hedge_after_ms": self.hedge_after_ms,
            "health_interval_ms": self.health_interval_ms,
            "endpoints": [_endpoint_dict(e) for e in self.endpoints],
        }
        if self.fallback:
            d["fallback"] = self.fallback
        return d


@dataclass
class Message:
    """A chat message. Plain dicts with the same keys work everywhere a Message does."""

    role: str
    content: str = ""
    thinking: str = ""
    tool_name: str = ""
    tool_calls: List[Dict[str, str]] = field(default_factory=list)
    tool_call_id: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"role": self.role, "content": self.content}
        if self.thinking:
            d["thinking"] = self.thinking
        if self.tool_name:
            d["tool_name"] = self.tool_name
        if self.tool_calls:
            d["tool_calls"] = list(self.tool_calls)
        if self.tool_call_id:
            d["tool_call_id"] = self.tool_call_id
        return d


@dataclass
class WorkflowConfig:
    """Options sent with each of the workflow's LLM calls, and its prompt sizes. The names
    ``"baseline"`` (the server's defaults) and ``"chimera"`` (the study's recommendation), and
    a TOML file path, are accepted wherever a WorkflowConfig is."""

    name: str = "custom"
    options: Dict[str, Any] = field(default_factory=dict)
    digest_budget: int = 1500
    analysis_tokens: int = 320
    report_tokens: int = 480

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


PoolsLike = Union[str, "os.PathLike[str]", Pool, Mapping[str, Any], Endpoint,
                  Sequence[Union[Pool, Mapping[str, Any]]]]


def _endpoint_dict(e: Union[Endpoint, Mapping[str, Any], str]) -> Dict[str, Any]:
    if isinstance(e, Endpoint):
        return e.to_dict()
    if isinstance(e, Mapping):
        d = dict(e)
        for name in ("timeouts", "limits", "llama"):
            if hasattr(d.get(name), "to_dict"):
                d[name] = d[name].to_dict()
        return d
    raise TypeError(f"an endpoint must be an Endpoint or a dict (got {type(e).__name__})")


def _pool_dict(p: Union[Pool, Mapping[str, Any]]) -> Dict[str, Any]:
    if isinstance(p, Pool):
        return p.to_dict()
    if isinstance(p, Mapping):
        d = dict(p)
        if "endpoints" in d:
            d["endpoints"] = [_endpoint_dict(e) for e in d["endpoints"]]
        return d
    raise TypeError(f"a pool must be a Pool or a dict (got {type(p).__name__})")


def pools_to_dicts(pools: PoolsLike) -> List[Dict[str, Any]]:
    """Pools in any accepted form as the list of dicts the engine reads. A str or PathLike is
    a TOML pool file."""
    from . import _native

    if isinstance(pools, (str, os.PathLike)):
        return list(_native.load_pools(os.fspath(pools)))
    if isinstance(pools, Endpoint):
        return [Pool(endpoints=[pools]).to_dict()]
    if isinstance(pools, (Pool, Mapping)):
        return [_pool_dict(pools)]
    return [_pool_dict(p) for p in pools]
