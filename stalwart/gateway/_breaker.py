"""Per-model circuit breakers: a pure state machine plus its shared, store-backed home.

closed --(``threshold`` consecutive failures)--> open --(``reset_s`` elapsed)--> half_open
half_open --(trial succeeds)--> closed; half_open --(trial fails)--> open.
The state lives in the store's flags (``gateway.breaker.NAME``) so every worker sees it; each
process keeps a copy for ``refresh_s`` to stay off the store on the hot path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from stalwart.gateway._state import SharedState

__all__ = ["BreakerState", "Breakers"]


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One model's breaker. Transitions return a new state; nothing here does I/O."""

    state: str = "closed"
    failures: int = 0
    opened_at: float = 0.0

    def allows(self, now: float, reset_s: float) -> bool:
        """Whether a call may go through (an open breaker lets a trial through after ``reset_s``)."""
        return self.state != "open" or now - self.opened_at >= reset_s

    def on_success(self) -> BreakerState:
        return BreakerState()

    def on_failure(self, now: float, threshold: int) -> BreakerState:
        failures = self.failures + 1
        if (
            self.state == "half_open"
            or (self.state == "open" and failures > threshold)
            or failures >= threshold
        ):
            return BreakerState("open", failures, now)
        return replace(self, failures=failures)

    def trial(self, now: float, reset_s: float) -> BreakerState:
        """The state once a call is let through (open past its reset time becomes half-open)."""
        if self.state == "open" and now - self.opened_at >= reset_s:
            return replace(self, state="half_open")
        return self


class Breakers:
    """Shared breakers for every model the gateway calls."""

    def __init__(self, state: SharedState, *, threshold: int, reset_s: float, refresh_s: float = 1.0) -> None:
        self._state = state
        self.threshold = threshold
        self.reset_s = reset_s
        self._refresh_s = refresh_s
        self._local: dict[str, tuple[float, BreakerState]] = {}

    async def get(self, model: str, now: float) -> BreakerState:
        seen = self._local.get(model)
        if seen is not None and now - seen[0] < self._refresh_s:
            return seen[1]
        raw = await self._state.get_flag(f"gateway.breaker.{model}")
        st = BreakerState(**raw) if raw else BreakerState()
        self._local[model] = (now, st)
        return st

    async def _put(self, model: str, st: BreakerState, now: float) -> None:
        self._local[model] = (now, st)
        value: dict[str, Any] | None = None if st == BreakerState() else asdict(st)
        await self._state.set_flag(f"gateway.breaker.{model}", value, now)

    async def record(self, model: str, ok: bool, now: float) -> BreakerState:
        """Record one call's outcome; writes to the store only when the state changes."""
        before = await self.get(model, now)
        after = before.on_success() if ok else before.on_failure(now, self.threshold)
        if after != before:
            await self._put(model, after, now)
        return after
