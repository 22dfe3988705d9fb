"""Retry policy: exponential backoff with full jitter, bounded attempts, server hints honoured."""

from __future__ import annotations

import random
from dataclasses import dataclass

from stalwart.errors import StalwartError

__all__ = ["RetryPolicy", "backoff_ceiling", "next_delay"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step or tool is retried.

    Attempt ``n`` (1-based) that fails retryably waits a uniformly random time in
    ``[0, min(max_s, initial_s * multiplier**(n-1))]`` ("full jitter"), or the error's
    ``retry_after`` when it carries one (a server's ``Retry-After``), capped at ``max_s``.
    """

    max_attempts: int = 5
    initial_s: float = 0.2
    multiplier: float = 2.0
    max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_s < 0 or self.max_s <= 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy needs initial_s >= 0, max_s > 0 and multiplier >= 1")


def backoff_ceiling(policy: RetryPolicy, attempt: int) -> float:
    """The upper bound of the jittered delay after failed attempt ``attempt`` (1-based)."""
    return min(policy.max_s, policy.initial_s * policy.multiplier ** max(0, attempt - 1))


def next_delay(policy: RetryPolicy, attempt: int, error: StalwartError, rng: random.Random) -> float | None:
    """Seconds to wait before the next attempt, or ``None`` when no retry is allowed."""
    if not error.retryable or attempt >= policy.max_attempts:
        return None
    if error.retry_after is not None and error.retry_after >= 0:
        return min(float(error.retry_after), policy.max_s)
    return rng.uniform(0.0, backoff_ceiling(policy, attempt))
