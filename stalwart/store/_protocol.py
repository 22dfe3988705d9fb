"""The one durable state layer, as a Protocol with two implementations (SQLite, PostgreSQL).

Rules every implementation follows:

* Times are floats (Unix seconds) handed in by the caller's injected clock; the store never
  reads the wall clock for business decisions.
* Every write on behalf of a claimed run checks ``(owner, epoch)`` in the same transaction and
  raises :class:`~stalwart.errors.LeaseLost` when another worker has taken the run over.
* One step is one transaction: the journal row, the run row and the outbox row commit together.
* The journal of a run is loaded once per claim (:meth:`Store.claim_runs`), never per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from stalwart.store._lease import FleetCounts, LeaderLease
from stalwart.store._ledger import LedgerDecide
from stalwart.store._records import (
    Claim,
    DeadLetter,
    JournalEntry,
    NewRun,
    OutboxEvent,
    RunEvent,
    RunRecord,
    SignalRecord,
)

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """Durable state for runs, journals, signals, breakers, flags and small key/value data."""

    kind: str
    """``sqlite`` or ``postgres``."""

    async def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""
        ...

    async def close(self) -> None: ...

    # -- runs -------------------------------------------------------------------------------
    async def create_run(
        self, run: NewRun, *, refuse_if_flag: str | None = None, audit_bodies: Sequence[str] = ()
    ) -> tuple[str | None, bool]:
        """Insert a PENDING run, or return the existing run with the same (org, idempotency_key).

        Returns ``(run_id, created)``; ``(None, False)`` when the flag ``refuse_if_flag`` is set
        (checked in the same statement, e.g. the kill switch).
        """
        ...

    async def fork_run(self, run: NewRun, source_id: str, from_seq: int, upto_seq: int) -> str:
        """Create ``run`` with copies of ``source_id``'s completed journal rows in ``[from_seq, upto_seq)``,
        renumbered from 0."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        org: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]: ...

    async def run_orgs(self) -> list[str]:
        """Every distinct org that has runs (``""`` for runs started without one), sorted."""
        ...

    async def claim_runs(
        self, worker_id: str, workflows: list[str], now: float, lease_s: float, limit: int
    ) -> list[Claim]:
        """Take up to ``limit`` runnable runs of the given ``name@version`` keys.

        Runnable: PENDING; WAITING whose ``wake_at`` has passed; RUNNING whose lease expired.
        Each claim bumps the run's fencing epoch.
        """
        ...

    async def renew_leases(
        self, worker_id: str, held: list[tuple[str, int]], now: float, lease_s: float
    ) -> list[str]:
        """Extend the leases of ``(run_id, epoch)`` pairs; return the ids that were lost."""
        ...

    async def commit_step(
        self,
        run_id: str,
        epoch: int,
        entry: JournalEntry,
        now: float,
        lease_s: float,
        *,
        consume_signal: int | None = None,
        events: list[OutboxEvent] | None = None,
        audit_bodies: Sequence[str] = (),
    ) -> tuple[bool, bool]:
        """Upsert one journal row, extend the lease and write outbox events, atomically.

        Returns ``(cancel_requested, kill_switch_engaged)`` as seen by that transaction, so the
        engine learns both before its next step without another round trip.
        """
        ...

    async def set_run_state(
        self,
        run_id: str,
        epoch: int,
        status: str,
        now: float,
        *,
        output_json: str | None = None,
        error: dict[str, Any] | None = None,
        wake_at: float | None = None,
        phase: str | None = None,
        release: bool = False,
        dead_letter: DeadLetter | None = None,
        events: list[OutboxEvent] | None = None,
        meta_patch: dict[str, Any] | None = None,
        signal_name: str | Sequence[str] | None = None,
        audit_bodies: Sequence[str] = (),
        notify: tuple[str, str, str | None] | None = None,
    ) -> None:
        """Move a claimed run to ``status`` (fenced). ``release`` gives up ownership.

        Entering WAITING, the run wakes at once (``wake_at = now``) if cancellation was requested
        or an unconsumed signal named ``signal_name`` already exists, so no wake-up is lost.
        ``notify=(run_id, name, payload_json)`` sends a signal to another run in the same
        transaction (a child telling its parent it ended).
        """
        ...

    async def request_cancel(self, run_id: str, now: float) -> RunRecord:
        """Mark a run for cancellation; a waiting run wakes at once to act on it."""
        ...

    async def journal(self, run_id: str) -> list[JournalEntry]: ...

    # -- signals ----------------------------------------------------------------------------
    async def send_signal(self, run_id: str, name: str, payload_json: str | None, now: float) -> None:
        """Record a signal and wake the run if it waits."""
        ...

    async def next_signal(self, run_id: str, name: str) -> SignalRecord | None:
        """The oldest unconsumed signal of that name, if any."""
        ...

    # -- dead-letter queue ------------------------------------------------------------------
    async def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    async def retry_dead_letter(self, run_id: str, now: float, *, new_generation: bool = False) -> RunRecord:
        """Put a DEAD_LETTER run back to PENDING (the engine decides how it resumes)."""
        ...

    # -- shared state (breakers, flags, key/value, counters) --------------------------------
    async def get_flag(self, name: str) -> dict[str, Any] | None: ...

    async def set_flag(self, name: str, value: dict[str, Any] | None, now: float) -> None: ...

    async def kv_get(self, namespace: str, key: str, now: float | None = None) -> bytes | None:
        """Read a value; an entry whose TTL has passed (``expires_at <= now``) reads as missing."""
        ...

    async def kv_put(
        self, namespace: str, key: str, value: bytes, *, expires_at: float | None = None
    ) -> None: ...

    async def kv_put_many(self, namespace: str, items: list[tuple[str, bytes]]) -> None:
        """Write many entries in one transaction (no TTL)."""
        ...

    async def kv_delete(self, namespace: str, key: str) -> bool: ...

    async def kv_delete_prefix(self, namespace: str, prefix: str) -> int: ...

    async def kv_keys(self, namespace: str, prefix: str = "") -> list[str]: ...

    async def counter_add(self, namespace: str, key: str, delta: float, now: float) -> float:
        """Atomically add ``delta`` and return the new total (shared by every worker)."""
        ...

    async def counter_get(self, namespace: str, key: str) -> float: ...

    # -- leader leases and fleet counts -----------------------------------------------------
    async def acquire_leader(self, name: str, holder: str, now: float, ttl_s: float) -> LeaderLease:
        """Take, renew or fail to take the lease of duty group ``name``, atomically.

        Applies :func:`~stalwart.store.decide_lease` under a row lock and returns the lease as it
        stands afterwards: ``holder`` leads iff ``lease.held_by(holder, now)``.
        """
        ...

    async def release_leader(self, name: str, holder: str, epoch: int, now: float) -> bool:
        """Give the lease up at once (a graceful stop) if ``holder`` still holds term ``epoch``."""
        ...

    async def fleet_counts(self, now: float) -> FleetCounts:
        """Runs by queue state, the DLQ size and the open reviews, counted in one snapshot."""

    async def ledger_reserve(
        self, hold_id: str, keys: list[str], decide: LedgerDecide, expires_at: float, now: float
    ) -> dict[str, tuple[float, float]] | str:
        """Atomically (against every other reservation on ``keys``, in any process): drop expired
        holds, read each key's :data:`LedgerRow`, and store the holds ``decide`` returns under
        ``hold_id`` until ``expires_at``. Returns ``decide``'s answer (a string: nothing held)."""
        ...

    async def ledger_settle(
        self, hold_id: str, spend: dict[str, tuple[float, float]], now: float
    ) -> dict[str, tuple[float, float, float, float]]:
        """Atomically release ``hold_id``'s holds and add ``spend`` (``(tokens, usd)`` per key) to
        the spent totals. Returns ``(tokens_before, usd_before, tokens_after, usd_after)`` per key."""
        ...

    # -- run event streams ------------------------------------------------------------------
    async def append_events(self, run_id: str, epoch: int, events: Sequence[RunEvent]) -> list[int]:
        """Append ``events`` to a claimed run's stream (fenced: ``LeaseLost`` if ``epoch`` is not
        current), in order, in one transaction. An event whose ``key`` the run already has is
        skipped; the others get the next offsets. Returns the offsets written."""
        ...

    async def read_events(
        self, run_id: str, after: int = 0, limit: int = 500, *, key_prefix: str | None = None
    ) -> list[RunEvent]:
        """The run's events with ``offset > after``, in offset order (only keys starting with
        ``key_prefix`` when given)."""
        ...

    # -- MCP definition pins -------------------------------------------------------------------
    async def mcp_pins(self, server: str | None = None) -> list[dict[str, Any]]:
        """Pinned MCP tool definitions (``server``, ``tool``, ``sha256``, ``definition``,
        ``approved_by``, ``approved_at``) of every server or of one, ordered by server and tool."""
        ...

    async def mcp_pin(self, server: str, pins: list[dict[str, Any]], approved_by: str, now: float) -> None:
        """Insert or replace ``server``'s pins (each ``tool``, ``sha256``, ``definition``) in one transaction."""
        ...

    # -- outbox ------------------------------------------------------------------------------
    async def outbox_after(self, after_id: int, limit: int = 500) -> list[OutboxEvent]: ...

    # -- wake-ups ----------------------------------------------------------------------------
    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be available, or after ``timeout`` seconds."""
        ...

    def ping_sync(self) -> None:
        """Check connectivity (raises StoreUnavailable)."""
        ...
