"""Value objects that cross the store boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RunRecord", "JournalEntry", "NewRun", "Claim", "OutboxEvent", "DeadLetter", "SignalRecord", "RunEvent",
]


@dataclass(slots=True)
class NewRun:
    id: str
    workflow: str
    version: str
    input_json: str
    trace_id: str
    created_at: float
    org: str = ""
    user: str = ""
    idempotency_key: str | None = None
    parent_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RunRecord:
    id: str
    workflow: str
    version: str
    status: str
    input_json: str
    output_json: str | None
    error: dict[str, Any] | None
    org: str
    user: str
    idempotency_key: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    owner: str | None
    epoch: int
    lease_expires_at: float | None
    wake_at: float | None
    trace_id: str
    generation: int
    seq_base: int
    cancel_requested: bool
    phase: str
    parent_id: str | None
    meta: dict[str, Any]


@dataclass(slots=True)
class JournalEntry:
    """One durable step of a run, as recorded.

    ``status``: ``completed`` | ``failed`` (final, the run failed here) | ``retrying`` (an attempt
    failed, another will follow) | ``waiting`` (a sleep, signal or review not yet satisfied).
    """

    run_id: str
    seq: int
    kind: str
    name: str
    status: str
    result_json: str | None = None
    error: dict[str, Any] | None = None
    attempts: int = 1
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None
    meta: dict[str, Any] | None = None


@dataclass(slots=True)
class Claim:
    """A run this worker now owns at ``run.epoch``, with its journal loaded once."""

    run: RunRecord
    journal: list[JournalEntry]


@dataclass(slots=True)
class OutboxEvent:
    event_id: str
    type: str
    run_id: str | None
    payload: dict[str, Any]
    created_at: float
    id: int | None = None


@dataclass(slots=True)
class DeadLetter:
    run_id: str
    workflow: str
    version: str
    reason: str
    error: dict[str, Any] | None
    created_at: float
    retries: int


@dataclass(slots=True)
class SignalRecord:
    id: int
    run_id: str
    name: str
    payload_json: str | None
    created_at: float


@dataclass(slots=True)
class RunEvent:
    """One event of a run's durable stream (``ctx.emit``, or a batch of a streamed model call).

    ``key`` names the event's place in the workflow, unique within the run: a second write of
    the same key is skipped, which is what keeps a re-executed step from repeating itself.
    ``offset`` is assigned by the store when the event is written: 1, 2, 3… per run, no gaps.
    """

    key: str
    kind: str
    data: Any
    created_at: float
    offset: int = 0
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The event as readers see it (no key: that is the writer's business)."""
        return {"offset": self.offset, "kind": self.kind, "data": self.data, "at": self.created_at}
