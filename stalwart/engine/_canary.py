"""Canary releases of a workflow version, a prompt template version or a model registry entry.

A canary sends a declared share of new runs (keyed stably by org, user or run) to a candidate,
records each arm's outcomes in the store, and rolls the candidate back on its own when its
error rate is higher than the baseline's with statistical significance (a one-sided
two-proportion z-test). An operator promotes it. Every change of split is audited.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from stalwart.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from stalwart.engine._app import App

__all__ = ["Canary", "choose_arm", "error_rate_test", "record_outcome", "set_canary"]

KINDS = ("workflow", "template", "model")
_NS = "canary"


@dataclass(frozen=True)
class Canary:
    """One canary. ``status``: ``active``, ``rolled_back`` (all traffic to the baseline) or
    ``promoted`` (all traffic to the candidate)."""

    kind: str
    name: str
    baseline: str
    candidate: str
    percent: float
    key: str = "org"
    status: str = "active"
    min_runs: int = 20
    alpha: float = 0.05
    max_error_increase: float = 0.02

    def flag(self) -> str:
        return f"canary:{self.kind}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_arm(c: Canary, key_value: str) -> str:
    """``baseline`` or ``candidate`` for this key, stable across calls and processes (pure)."""
    if c.status == "promoted":
        return "candidate"
    if c.status != "active":
        return "baseline"
    bucket = int.from_bytes(hashlib.sha256(f"{c.kind}:{c.name}:{key_value}".encode()).digest()[:8], "big") % 10_000
    return "candidate" if bucket < c.percent * 100 else "baseline"


def error_rate_test(base_n: int, base_err: int, cand_n: int, cand_err: int) -> tuple[float, float]:
    """One-sided two-proportion z-test that the candidate fails more: ``(difference, p_value)``."""
    if base_n == 0 or cand_n == 0:
        return 0.0, 1.0
    p1, p2 = base_err / base_n, cand_err / cand_n
    pooled = (base_err + cand_err) / (base_n + cand_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / base_n + 1 / cand_n))
    if se == 0:
        return p2 - p1, 0.0 if p2 > p1 else 1.0
    z = (p2 - p1) / se
    return p2 - p1, 0.5 * math.erfc(z / math.sqrt(2))


async def load(app: App, kind: str, name: str) -> Canary | None:
    raw = await app.store.get_flag(f"canary:{kind}:{name}")
    return Canary(**raw) if raw else None


async def set_canary(app: App, c: Canary, *, operator: str, action: str) -> Canary:
    """Store a canary's new state and audit the change."""
    from stalwart.governance import AuditEvent

    if c.kind not in KINDS:
        raise InvalidInput(f"canary kind must be one of {', '.join(KINDS)}")
    if not 0 <= c.percent <= 100:
        raise InvalidInput("canary percent must be between 0 and 100")
    await app.store.set_flag(c.flag(), c.to_dict(), app.clock.time())
    gov = await app.governance()
    await gov.audit.append([AuditEvent(
        event_type=f"canary.{action}", action=action, actor=operator, resource=f"{c.kind}:{c.name}",
        decision=c.status, details=c.to_dict())])
    return c


async def stats(app: App, c: Canary) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for arm in ("baseline", "candidate"):
        prefix = f"{c.kind}:{c.name}:{arm}"
        runs = await app.store.counter_get(_NS, f"{prefix}:runs")
        errors = await app.store.counter_get(_NS, f"{prefix}:errors")
        cost = await app.store.counter_get(_NS, f"{prefix}:cost_usd")
        seconds = await app.store.counter_get(_NS, f"{prefix}:seconds")
        out[arm] = {"runs": runs, "errors": errors, "error_rate": errors / runs if runs else 0.0,
                    "cost_per_run": cost / runs if runs else 0.0, "latency_s": seconds / runs if runs else 0.0}
    return out


async def record_outcome(app: App, arms: dict[str, tuple[str, str, str]], ok: bool, cost: float,
                         seconds: float) -> None:
    """Count a finished run for each canary arm it used; roll back a clearly worse candidate."""
    now = app.clock.time()
    for kind, name, arm in arms.values():
        prefix = f"{kind}:{name}:{arm}"
        await app.store.counter_add(_NS, f"{prefix}:runs", 1, now)
        if not ok:
            await app.store.counter_add(_NS, f"{prefix}:errors", 1, now)
        await app.store.counter_add(_NS, f"{prefix}:cost_usd", cost, now)
        await app.store.counter_add(_NS, f"{prefix}:seconds", seconds, now)
        c = await load(app, kind, name)
        if c is None or c.status != "active":
            continue
        s = await stats(app, c)
        b, k = s["baseline"], s["candidate"]
        if b["runs"] < c.min_runs or k["runs"] < c.min_runs:
            continue
        diff, p = error_rate_test(int(b["runs"]), int(b["errors"]), int(k["runs"]), int(k["errors"]))
        if diff > c.max_error_increase and p < c.alpha:
            from dataclasses import replace

            await set_canary(app, replace(c, status="rolled_back"), operator="system:canary",
                             action="rolled_back")
            app._canary_cache.pop(c.flag(), None)


def require(c: Canary | None, kind: str, name: str) -> Canary:
    if c is None:
        raise ConfigError(f"no {kind} canary named {name!r}")
    return c
