"""Risk scoring, 0-100: additive, explainable, pure.

Each factor is normalised to a level in [0, 1] and contributes ``weight * level`` points; the score
is the sum, capped at 100. Every factor is listed with its weight and contribution, so a reviewer
(or an auditor) sees why. Above ``review_above`` (70) a human review is mandatory; above
``block_above`` (90) the action is blocked unless two people approve an emergency override.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_WEIGHTS", "RiskAssessment", "RiskScorer"]

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "tool_risk": 40.0,
    "data_sensitivity": 20.0,
    "amount": 25.0,
    "cost": 10.0,
    "external_calls": 10.0,
    "guard_flags": 35.0,
    "pii": 10.0,
}
_NAMED = {
    "none": 0.0,
    "public": 0.0,
    "low": 0.15,
    "internal": 0.25,
    "medium": 0.45,
    "confidential": 0.6,
    "high": 0.8,
    "restricted": 1.0,
    "critical": 1.0,
}
_FLAGS = {"injection": 1.0, "block": 1.0, "jailbreak": 1.0, "exfiltration": 1.0, "flag": 0.5, "pii": 0.4}


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """``score`` 0-100, ``factors`` as ``(name, weight, contribution)``, ``action``
    ``"auto" | "review" | "block"``."""

    score: float
    factors: tuple[tuple[str, float, float], ...]
    action: str
    thresholds: tuple[float, float] = (70.0, 90.0)
    inputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs_review(self) -> bool:
        return self.action != "auto"

    @property
    def needs_two_people(self) -> bool:
        """A blocked action goes ahead only on an emergency override approved by two people."""
        return self.action == "block"

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "action": self.action,
            "thresholds": list(self.thresholds),
            "factors": [{"name": n, "weight": w, "contribution": c} for n, w, c in self.factors],
            "inputs": dict(self.inputs),
        }

    def explain(self) -> str:
        parts = [f"{n} {c:.1f}/{w:.0f}" for n, w, c in self.factors if c > 0]
        return f"risk {self.score:.0f} ({self.action}): " + (", ".join(parts) or "no risk factors")


def _level(value: Any) -> float:
    """A named level, a fraction in [0, 1], or a 0-100 number."""
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, str):
        key = value.strip().lower()
        if key not in _NAMED:
            raise ValueError(f"unknown risk level {value!r}; use one of {sorted(_NAMED)}")
        return _NAMED[key]
    x = float(value)
    return min(1.0, max(0.0, x / 100.0 if x > 1.0 else x))


class RiskScorer:
    """Scores one proposed action. Weights and the money scales are configurable.

    ``amount_full_cents``: the amount that counts as full risk (log scale below it; default
    10,000 USD). ``cost_full_usd``: model/tool spend that counts as full risk.
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        review_above: float = 70.0,
        block_above: float = 90.0,
        amount_full_cents: int = 1_000_000,
        cost_full_usd: float = 1.0,
        external_calls_full: int = 5,
    ) -> None:
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        unknown = set(self.weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown risk factors {sorted(unknown)}")
        if not 0 <= review_above < block_above <= 100:
            raise ValueError("need 0 <= review_above < block_above <= 100")
        self.review_above = review_above
        self.block_above = block_above
        self.amount_full_cents = amount_full_cents
        self.cost_full_usd = cost_full_usd
        self.external_calls_full = external_calls_full

    def score(
        self,
        tool_risk: Any = 0,
        data_sensitivity: Any = "public",
        amount: float = 0,
        cost: float = 0.0,
        external_calls: int = 0,
        guard_flags: Iterable[str] | Mapping[str, float] = (),
        pii: bool | int = 0,
    ) -> RiskAssessment:
        """``tool_risk``: the tool's declared risk (name, fraction or 0-100); ``amount`` in cents;
        ``cost`` in USD; ``guard_flags``: the guard's reasons (``"injection"``, ``"flag"``...) or
        name -> level; ``pii``: found PII entities (count or bool)."""
        if isinstance(guard_flags, Mapping):
            flag_level = max((min(1.0, max(0.0, float(v))) for v in guard_flags.values()), default=0.0)
            flags = sorted(guard_flags)
        else:
            flags = sorted(set(guard_flags))
            flag_level = max((_FLAGS.get(f.lower(), 0.3) for f in flags), default=0.0)
        amount_level = 0.0
        if amount and amount > 0:
            amount_level = min(1.0, math.log10(1 + amount) / math.log10(1 + self.amount_full_cents))
        levels = {
            "tool_risk": _level(tool_risk),
            "data_sensitivity": _level(data_sensitivity),
            "amount": amount_level,
            "cost": min(1.0, max(0.0, cost / self.cost_full_usd)) if self.cost_full_usd else 0.0,
            "external_calls": min(1.0, max(0, external_calls) / self.external_calls_full),
            "guard_flags": flag_level,
            "pii": min(1.0, float(pii) / 3.0) if not isinstance(pii, bool) else float(pii),
        }
        factors = tuple(
            (name, self.weights[name], round(self.weights[name] * levels[name], 2))
            for name in DEFAULT_WEIGHTS
        )
        total = round(min(100.0, sum(c for _, _, c in factors)), 2)
        action = "block" if total > self.block_above else "review" if total > self.review_above else "auto"
        inputs = {
            "tool_risk": tool_risk,
            "data_sensitivity": data_sensitivity,
            "amount": amount,
            "cost": cost,
            "external_calls": external_calls,
            "guard_flags": flags,
            "pii": pii,
        }
        return RiskAssessment(total, factors, action, (self.review_above, self.block_above), inputs)
