"""The run state machine: the statuses and the table of legal transitions."""

from __future__ import annotations

from enum import StrEnum

from stalwart.errors import InvalidTransition

__all__ = ["RunStatus", "TRANSITIONS", "TERMINAL", "check_transition"]


class RunStatus(StrEnum):
    PENDING = "PENDING"
    """Created or released; any worker that has its workflow version may claim it."""
    RUNNING = "RUNNING"
    """Claimed by a worker that holds a lease and a fencing epoch."""
    WAITING = "WAITING"
    """Durably waiting for a timer, a signal or a human; holds no worker."""
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    DEAD_LETTER = "DEAD_LETTER"
    """Parked for an operator after its last attempt; ``stalwart dlq retry`` puts it back."""


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DEAD_LETTER})

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.RUNNING,  # lease takeover by another worker, or entering compensation
            RunStatus.PENDING,  # released: graceful shutdown, kill-switch drain
            RunStatus.WAITING,
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.DEAD_LETTER,
        }
    ),
    RunStatus.WAITING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.DEAD_LETTER: frozenset({RunStatus.PENDING}),  # operator retry
}


def check_transition(current: str, target: str) -> RunStatus:
    """Return ``target`` as a status if ``current -> target`` is legal; raise InvalidTransition if not."""
    try:
        src, dst = RunStatus(current), RunStatus(target)
    except ValueError as exc:
        raise InvalidTransition(f"unknown run status in {current!r} -> {target!r}") from exc
    if dst not in TRANSITIONS[src]:
        raise InvalidTransition(f"illegal run transition {src} -> {dst}")
    return dst
