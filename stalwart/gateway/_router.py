"""Routing: which candidates of a route may take a call, in order, and why others were skipped.

Pure: it sees the candidates, the call's needs and each model's breaker verdict and budget
allowance, and returns a plan. The gateway walks the plan as its fallback chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stalwart.gateway._registry import Model

__all__ = ["Needs", "Plan", "plan_route"]


@dataclass(frozen=True, slots=True)
class Needs:
    """What a call requires of a model."""

    prompt_tokens: int
    max_tokens: int
    pii: bool = False
    latency_budget_ms: int | None = None


@dataclass(slots=True)
class Plan:
    """Eligible models in order (each with its output-token allowance) and the skipped ones."""

    order: list[tuple[Model, int]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def why(self) -> str:
        return "; ".join(f"{s['model']}: {s['why']}" for s in self.skipped)


def plan_route(
    candidates: list[Model],
    needs: Needs,
    *,
    breaker_open: dict[str, bool],
    allowance: dict[str, tuple[int, str | None]],
) -> Plan:
    """Filter ``candidates`` by breaker, PII, context window, latency SLO and remaining budget."""
    plan = Plan()
    for m in candidates:
        e = m.entry
        why: str | None = None
        if needs.pii and not e.pii_allowed:
            why = "pii: the call may carry personal data and this model is not pii_allowed"
        elif breaker_open.get(m.name):
            why = "breaker open"
        elif needs.prompt_tokens + 1 > e.context_window:
            why = f"context overflow: prompt is {needs.prompt_tokens} tokens, window {e.context_window}"
        elif needs.latency_budget_ms is not None and e.latency_slo_ms > needs.latency_budget_ms:
            why = f"latency: slo {e.latency_slo_ms} ms over the call's {needs.latency_budget_ms} ms"
        else:
            out, over = allowance[m.name]
            if over:
                why = f"budget: {over}"
            else:
                plan.order.append((m, max(1, min(out, e.context_window - needs.prompt_tokens))))
                continue
        plan.skipped.append({"model": m.name, "why": why})
    return plan
