"""Spending caps and the pure arithmetic that enforces them.

Three scopes can cap a call: the workflow version's ``Budget`` for this run, a per-user cap for
one run, and a per-org cap for a calendar month (UTC). Before a call the worst case (prompt plus
``max_tokens``) must fit what every scope has left; ``max_tokens`` is lowered to fit when it can,
so a runaway loop stops exactly at its cap. That worst case is *reserved* (held in the store's
ledger, atomically against every other call in any process) until the call settles, so
concurrent calls cannot all see the same room. After the call, actual usage is checked again and
every 50/80/95/100 % threshold it crossed is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from stalwart.store import LedgerRow

__all__ = ["THRESHOLDS", "Budget", "Hold", "Spend", "affordable_out", "crossings", "reservation"]

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
    key: str = ""
    """The ledger key holds are reserved under (``run:ID``, ``org:ORG:YYYY-MM``)."""
    ledger_spent: bool = False
    """Whether the spent total lives in the ledger (org month) rather than in ``tokens``/``usd``
    (run and user scopes: summed from the run's journal by the engine)."""

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


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation made for one provider call: its output-token allowance and what it holds."""

    out_tokens: int
    holds: dict[str, tuple[float, float]]
    prompt_tokens: int = 0


def reservation(
    spends: list[Spend],
    rows: dict[str, LedgerRow],
    prompt_tokens: int,
    max_tokens: int,
    price_in: float,
    price_out: float,
    *,
    price_known: bool = True,
    model: str = "",
) -> Hold | str:
    """What one call may reserve given every key's ledger row, or why it does not fit.

    Each scope's room is its cap less what was spent (the ledger's total for the org month, the
    journal's for the run) less every live hold on its key. A model without prices cannot be
    charged against a USD cap: refused (fail closed), while token caps still apply."""
    if not price_known and any(s.cap.max_usd is not None for s in spends):
        scope = next(s.scope for s in spends if s.cap.max_usd is not None)
        return f"{scope} budget: a USD cap applies and the cost of {model or 'this model'} is unknown (no prices)"
    seen = []
    for s in spends:
        spent_t, spent_u, held_t, held_u = rows.get(s.key, (0.0, 0.0, 0.0, 0.0))
        base_t, base_u = (spent_t, spent_u) if s.ledger_spent else (s.tokens, s.usd)
        seen.append(replace(s, tokens=base_t + held_t, usd=base_u + held_u))
    out, why = affordable_out(seen, prompt_tokens, max_tokens, price_in, price_out)
    if why:
        return why
    hold = (float(prompt_tokens + out), (prompt_tokens * price_in + out * price_out) / 1_000_000)
    return Hold(out, {s.key: hold for s in spends if s.key}, prompt_tokens)
