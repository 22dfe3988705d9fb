"""The values that cross the gateway boundary: a request, its call context, and its result."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any

from pydantic import BaseModel

from stalwart.gateway._budget import Budget

__all__ = ["LOCAL_LABEL", "CallContext", "LLMRequest", "LLMResult", "ProviderRequest", "ProviderResponse"]

LOCAL_LABEL = "local (offline, not a real LLM)"
"""How the ``local`` provider is labelled wherever it appears."""


@dataclass(slots=True)
class LLMRequest:
    """One model call as a workflow asks for it.

    Either ``template`` (``"triage@1"``, rendered with ``vars``) or ``messages`` gives the prompt.
    ``output`` asks for a structured answer validated into that Pydantic model. ``model`` overrides
    the route with one registry entry. ``pii`` marks a call whose prompt may carry personal data:
    it is routed only to entries with ``pii_allowed``. ``cacheable`` allows the response cache
    (calls with ``temperature == 0`` are cacheable too). ``latency_budget_ms`` skips entries whose
    latency SLO is above it.
    """

    task: str
    template: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    output: type[BaseModel] | None = None
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    cacheable: bool = False
    tools: list[dict[str, Any]] | None = None
    pii: bool = False
    latency_budget_ms: int | None = None
    stream: bool = False


@dataclass(slots=True)
class CallContext:
    """Who is calling, and what this run has already spent (summed by the engine from its journal)."""

    run_id: str
    org: str = ""
    user: str = ""
    workflow: str = ""
    version: str = ""
    step_seq: int = 0
    budget: Budget | None = None
    spent_tokens: int = 0
    spent_usd: float = 0.0


@dataclass(slots=True)
class LLMResult:
    """What one gateway call produced, as the engine journals it.

    ``value`` is the validated Pydantic instance when the request had an ``output`` type, else the
    text. ``model`` is the registry entry's name; ``model_id`` its pinned id; ``response_model``
    what the provider said answered. ``routing`` records ``chosen``, ``reason`` and ``skipped``
    (``[{model, why}]``). ``attempts`` lists every provider attempt (model, outcome, error code,
    tokens). ``budget_alerts`` lists threshold crossings (50/80/95/100 %) this call caused.
    """

    value: Any
    text: str
    model: str
    provider: str
    model_id: str
    response_model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cached: bool
    latency_ms: float
    routing: dict[str, Any]
    template_hash: str | None
    attempts: list[dict[str, Any]]
    finish_reason: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    budget_alerts: list[dict[str, Any]] = field(default_factory=list)
    cost_known: bool = True
    """False when a model without prices answered: ``cost_usd`` then counts only priced calls."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (the Pydantic value is dumped in JSON mode)."""
        out = {f: getattr(self, f) for f in _RESULT_FIELDS}
        if isinstance(self.value, BaseModel):
            out["value"] = self.value.model_dump(mode="json")
        for f in ("routing", "attempts", "tool_calls", "budget_alerts"):
            out[f] = copy.deepcopy(out[f]) if f == "routing" else [dict(x) for x in out[f]]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], output_type: type[BaseModel] | None = None) -> LLMResult:
        """Rebuild a result from :meth:`to_json`, re-validating ``value`` into ``output_type``."""
        kw = dict(data)
        if output_type is not None and kw.get("value") is not None:
            kw["value"] = output_type.model_validate(kw["value"])
        kw.setdefault("tool_calls", [])
        kw.setdefault("budget_alerts", [])
        kw.setdefault("cost_known", True)
        return cls(**kw)


_RESULT_FIELDS = tuple(f.name for f in fields(LLMResult))


@dataclass(slots=True)
class ProviderRequest:
    """A request normalised for a provider adapter (messages already rendered and redacted)."""

    model_id: str
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float | None = None
    tools: list[dict[str, Any]] | None = None
    json_schema: dict[str, Any] | None = None
    schema_name: str = "output"
    stream: bool = False
    timeout_s: float = 60.0
    task: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    on_delta: Callable[[str], Awaitable[None]] | None = None
    """Called with each piece of answer text as the provider produces it (streaming calls)."""


@dataclass(slots=True)
class ProviderResponse:
    """A provider's answer. Token counts are the provider-reported usage when it reports any."""

    text: str
    tokens_in: int
    tokens_out: int
    response_model: str
    finish_reason: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
