"""Spending caps and the pure arithmetic that enforces them.

Three scopes can cap a call: the workflow version's ``Budget`` for this run, a per-user cap for
one run, and a per-org cap for a calendar month (UTC). Before a call the worst case (prompt plus
``max_tokens``) must fit what every scope has left; ``max_tokens`` is lowered to fit when it can,
so a runaway loop stops exactly at its cap. After the call, actual usage is checked again and
every 50/80/95/100 % threshold it crossed is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["THRESHOLDS", "Budget", "Spend", "affordable_out", "crossings"]

THRESHOLDS = (50, 80, 95, 100)
"""Percentages of a cap at which an alert is raised."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Caps for one run of a workflow version. ``None`` means no cap on that dimension."""

    max_tokens: int | None = None
    max_usd: float | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ValueError("Budget.max_tokens must be positive")
        if self.max_usd is not None and self.max_usd <= 0:
            raise ValueError("Budget.max_usd must be positive")


@dataclass(frozen=True, slots=True)
class Spend:
    """One scope's cap and what was spent against it before this call."""

    scope: str
    """``run`` | ``user`` | ``org_month``."""
    cap: Budget
    tokens: float
    usd: float

    def remaining_tokens(self) -> float:
        return math.inf if self.cap.max_tokens is None else self.cap.max_tokens - self.tokens

    def remaining_usd(self) -> float:
        return math.inf if self.cap.max_usd is None else self.cap.max_usd - self.usd


def affordable_out(
    spends: list[Spend], prompt_tokens: int, max_tokens: int, price_in: float, price_out: float
) -> tuple[int, str | None]:
    """How many output tokens a call may ask for so that no scope can go over its cap.

    ``price_*`` are USD per 1M tokens. Returns ``(tokens, None)`` with ``tokens <= max_tokens``,
    or ``(0, why)`` when even one output token does not fit.
    """
    allowed = float(max_tokens)
    for s in spends:
        by_tokens = s.remaining_tokens() - prompt_tokens
        usd_left = s.remaining_usd() - prompt_tokens * price_in / 1_000_000
        by_usd = math.inf if price_out == 0 else usd_left * 1_000_000 / price_out
        if usd_left < 0:
            by_usd = -1
        limit = min(by_tokens, by_usd)
        if limit < 1:
            dim = "tokens" if by_tokens <= by_usd else "usd"
            cap = s.cap.max_tokens if dim == "tokens" else s.cap.max_usd
            spent = s.tokens if dim == "tokens" else round(s.usd, 6)
            return 0, f"{s.scope} budget: {spent} of {cap} {dim} spent, the next call needs more"
        allowed = min(allowed, limit)
    return int(allowed), None


def crossings(spends: list[Spend], tokens: int, usd: float) -> list[dict[str, object]]:
    """Every threshold of every scope that spending ``tokens``/``usd`` more crosses."""
    out: list[dict[str, object]] = []
    for s in spends:
        for dim, cap, before, delta in (
            ("tokens", s.cap.max_tokens, s.tokens, tokens),
            ("usd", s.cap.max_usd, s.usd, usd),
        ):
            if not cap or delta <= 0:
                continue
            after = before + delta
            for pct in THRESHOLDS:
                mark = cap * pct / 100
                if before < mark - 1e-12 and after >= mark - 1e-12:
                    out.append(
                        {
                            "scope": s.scope,
                            "dimension": dim,
                            "threshold": pct,
                            "spent": round(after, 6),
                            "cap": cap,
                        }
                    )
    return out
