"""A circuit breaker as a pure state machine; the engine keeps its state in the store."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["BreakerPolicy", "BreakerState", "breaker_allow", "breaker_success", "breaker_failure"]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    """Consecutive failures that open the breaker."""
    reset_s: float = 30.0
    """How long it stays open before one trial call is let through (half-open)."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    state: str = "closed"  # closed | open | half_open
    failures: int = 0
    changed_at: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state, "failures": self.failures, "changed_at": self.changed_at}

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> BreakerState:
        if not data:
            return cls()
        return cls(str(data["state"]), int(data["failures"]), float(data["changed_at"]))  # type: ignore[arg-type]


def breaker_allow(s: BreakerState, now: float, p: BreakerPolicy) -> tuple[bool, BreakerState, float]:
    """May a call go through now? Returns ``(allowed, new_state, retry_after_s)``.

    An open breaker turns half-open after ``reset_s`` and lets one trial through; a half-open
    breaker whose trial never reported back lets another through after ``reset_s``.
    """
    if s.state == "closed":
        return True, s, 0.0
    waited = now - s.changed_at
    if waited >= p.reset_s:
        return True, BreakerState("half_open", s.failures, now), 0.0
    if s.state == "open":
        return False, s, p.reset_s - waited
    return False, s, p.reset_s - waited  # half-open: a trial is in flight


def breaker_success(s: BreakerState, now: float) -> BreakerState:
    if s.state == "closed" and s.failures == 0:
        return s
    return BreakerState("closed", 0, now)


def breaker_failure(s: BreakerState, now: float, p: BreakerPolicy) -> BreakerState:
    if s.state == "half_open":
        return BreakerState("open", s.failures + 1, now)
    failures = s.failures + 1
    if failures >= p.failure_threshold:
        return BreakerState("open", failures, now)
    return replace(s, failures=failures)
