"""Leader leases: one holder at a time per duty group, with a fencing epoch.

The decision is pure (:func:`decide_lease`); each store applies it inside one transaction that
locks the lease row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE`` on PostgreSQL), so two
processes racing for the same group can never both win. Times come from the caller's clock;
holders on different hosts must keep their clocks within a small fraction of the TTL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["FLEET_COUNTS_SQL", "FleetCounts", "LeaderLease", "decide_lease"]


@dataclass(frozen=True, slots=True)
class LeaderLease:
    """The state of one duty group's lease.

    ``epoch`` grows by one each time a new term starts (a first acquisition, or a takeover after
    expiry), never on renewal: work stamped with an older epoch is from a deposed leader.
    ``holder`` is empty and ``expires_at`` 0 while nobody ever held it.
    """

    name: str
    holder: str
    epoch: int
    acquired_at: float
    expires_at: float

    def held_by(self, holder: str, now: float) -> bool:
        """Whether ``holder`` leads at ``now``."""
        return self.holder == holder and self.expires_at > now


def decide_lease(
    current: LeaderLease | None, name: str, holder: str, now: float, ttl_s: float
) -> LeaderLease | None:
    """The lease after ``holder`` asks for ``name`` at ``now``, or ``None`` when another holds it.

    * nobody holds it (no row, or the row expired, or it was released): a new term, ``epoch + 1``;
    * ``holder`` holds it and it has not expired: renewed to ``now + ttl_s``, same epoch;
    * another holder's unexpired lease: refused (``None``), nothing changes.

    A holder whose own lease lapsed starts a new term too: someone else may have led in between.
    """
    if ttl_s <= 0:
        raise ValueError("a lease needs a positive ttl_s")
    if current is None:
        return LeaderLease(name, holder, 1, now, now + ttl_s)
    if current.expires_at > now:
        if current.holder != holder:
            return None
        return replace(current, expires_at=max(current.expires_at, now + ttl_s))
    return LeaderLease(name, holder, current.epoch + 1, now, now + ttl_s)


@dataclass(frozen=True, slots=True)
class FleetCounts:
    """What the fleet gauges show, counted in the store at one instant.

    ``pending``: runs a worker could claim now (PENDING, a WAITING run whose wake-up is due, or a
    RUNNING run whose lease expired). ``waiting``: WAITING runs not yet due. ``running``: RUNNING
    runs under a live lease (in flight somewhere in the fleet). ``dead_letter``: runs in the DLQ.
    ``reviews``: reviews waiting for a human decision.
    """

    pending: int
    waiting: int
    running: int
    dead_letter: int
    reviews: int


# The counts of FleetCounts, in its field order (``%s``: now, four times; SQLite swaps in ``?``).
FLEET_COUNTS_SQL = (
    "SELECT"
    " (SELECT COUNT(*) FROM runs WHERE status='PENDING' OR (status='WAITING' AND wake_at IS NOT NULL AND wake_at<=%s)"
    "   OR (status='RUNNING' AND (lease_expires_at IS NULL OR lease_expires_at<=%s))),"
    " (SELECT COUNT(*) FROM runs WHERE status='WAITING' AND (wake_at IS NULL OR wake_at>%s)),"
    " (SELECT COUNT(*) FROM runs WHERE status='RUNNING' AND lease_expires_at>%s),"
    " (SELECT COUNT(*) FROM runs WHERE status='DEAD_LETTER'),"
    " (SELECT COUNT(*) FROM reviews WHERE status='pending')"
)
