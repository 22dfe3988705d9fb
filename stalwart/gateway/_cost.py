"""Cost estimates before a run starts: p50/p95/max in USD and tokens.

From the version's history of completed runs when there is one (at least 3 runs), else from the
rendered first prompt alone; the budget cap, when set, bounds every figure (a run cannot spend
past it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from stalwart.gateway._budget import Budget

__all__ = ["CostEstimate", "estimate_cost", "percentile"]


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What a run is expected to cost. ``basis`` says what the figures come from."""

    usd_p50: float
    usd_p95: float
    usd_max: float
    tokens_p50: int
    tokens_p95: int
    tokens_max: int
    basis: str
    model: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def estimate_cost(
    *,
    prompt_tokens: int,
    max_tokens: int,
    price_in: float,
    price_out: float,
    model: str,
    history: list[tuple[int, float]] | None = None,
    budget: Budget | None = None,
) -> CostEstimate:
    """Estimate one run. ``history`` holds ``(tokens, usd)`` of completed runs of the version."""

    def usd(tin: float, tout: float) -> float:
        return (tin * price_in + tout * price_out) / 1_000_000

    if history and len(history) >= 3:
        toks = [float(t) for t, _ in history]
        usds = [u for _, u in history]
        t50, t95, tmax = percentile(toks, 50), percentile(toks, 95), max(toks)
        u50, u95, umax = percentile(usds, 50), percentile(usds, 95), max(usds)
        basis = f"history of {len(history)} completed runs"
    else:
        typical = min(max_tokens, 256)
        t50, t95 = prompt_tokens + typical, prompt_tokens + max_tokens
        u50, u95 = usd(prompt_tokens, typical), usd(prompt_tokens, max_tokens)
        tmax, umax = t95, u95
        basis = "rendered first prompt (no run history yet)"
    if budget is not None:
        if budget.max_tokens is not None:
            tmax = budget.max_tokens
            t50, t95 = min(t50, tmax), min(t95, tmax)
        if budget.max_usd is not None:
            umax = budget.max_usd
            u50, u95 = min(u50, umax), min(u95, umax)
        basis += "; max is the budget cap"
    return CostEstimate(
        round(u50, 6), round(u95, 6), round(umax, 6), int(t50), int(t95), int(tmax), basis, model
    )
