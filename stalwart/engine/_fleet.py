"""Fleet duties, exactly once: one elected process at a time runs them.

Every ``stalwart worker`` and ``stalwart server`` runs a :class:`Fleet`. Each tick it asks the store
for the ``fleet`` lease (:meth:`~stalwart.store.Store.acquire_leader`); the holder alone runs the
duties, each on its own interval (``[fleet]`` settings):

* ``escalation``: reviews past their SLA move up a tier (``ReviewQueue.escalate_overdue``), with
  the escalation notification the review queue sends;
* ``retention``: audit entries past ``fleet.audit_retention_days`` (``AuditLog.purge_expired``),
  expired artifacts (``ArtifactStore.sweep``) and expired memory items (``Memory.prune``);
* ``gauges``: the fleet gauges, counted in the store: ``agent_queue_depth{state}``
  (pending = claimable now, waiting, running = in flight under a live lease), ``agent_dlq_depth``
  and ``agent_human_review_queue_depth``.

What the other processes export: no ``agent_queue_depth`` series and 0 for the review queue and
DLQ depth, so ``max()`` and ``sum()`` across the fleet both equal the leader's count, never a
multiple of it; a process that loses the lease clears its gauges at once, and a killed leader's
series vanish with its scrape target. ``agent_kill_switch_active`` is refreshed by every process
(a cached flag read): each one also sets it when it commits a step, so each must also see the
switch released, or ``max()`` would keep the alert firing after a release.

Every duty is idempotent in the store (an escalation is a conditional update of the review's tier,
a sweep deletes only what expired), so the rare overlap of a deposed leader finishing a duty while
its successor starts one escalates nothing twice. The lease is renewed before each duty, and a
leader that cannot renew stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from stalwart.engine._ids import new_id
from stalwart.errors import ConfigError, StoreError
from stalwart.store import LeaderLease

if TYPE_CHECKING:
    from stalwart.engine._app import App
    from stalwart.settings import FleetSettings

__all__ = ["FLEET_LEASE", "Fleet", "start_fleet"]

FLEET_LEASE = "fleet"
"""The name of the fleet duties' lease in the store."""

_log = logging.getLogger("stalwart.fleet")


class Fleet:
    """This process's part in the fleet: stand for election, and run the duties while elected.

    ``await fleet.start()`` runs :meth:`tick` in the background every ``min(lease_s / 3, intervals)``
    seconds until :meth:`stop`, which gives the lease up so a successor need not wait for expiry.
    """

    def __init__(self, app: App, *, holder: str | None = None, settings: FleetSettings | None = None) -> None:
        self.app = app
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.cfg = settings or app.settings.fleet
        self.lease: LeaderLease | None = None
        """The lease while this process leads, else ``None``."""
        self.done: dict[str, int] = {"escalation": 0, "retention": 0, "gauges": 0}
        """How many times each duty completed in this process (for ``/healthz``-style inspection)."""
        self.failed: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._warned: set[str] = set()

    @property
    def interval_s(self) -> float:
        """Seconds between ticks: often enough to renew the lease thrice per term and run each duty."""
        c = self.cfg
        return min(c.lease_s / 3, c.gauges_interval_s, c.escalation_interval_s, c.retention_interval_s)

    @property
    def leading(self) -> bool:
        """Whether this process holds the fleet lease now."""
        return self.lease is not None and self.lease.held_by(self.holder, self.app.clock.time())

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> Fleet:
        await self.app.connect()
        if self.app.telemetry is not None:
            self.app.telemetry.clear_fleet_gauges()
        self._task = asyncio.create_task(self._loop(), name=f"stalwart-fleet-{self.holder}")
        return self

    async def stop(self) -> None:
        """Stop standing for election; a leader releases its lease for an immediate successor."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        lease, self.lease = self.lease, None
        if lease is not None:
            with contextlib.suppress(StoreError):
                await self.app.store.release_leader(
                    FLEET_LEASE, self.holder, lease.epoch, self.app.clock.time()
                )
            _log.info("fleet: %s released the lease (term %d)", self.holder, lease.epoch)
        gov = self.app._governance
        if gov is not None:  # deliver the escalation notices already queued
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gov.reviews.flush(), 10)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except StoreError as exc:  # the store is down: try again next tick, as a non-leader would
                _log.warning("fleet: tick failed: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)

    # -- one tick ----------------------------------------------------------------------------
    async def tick(self) -> bool:
        """Stand for election once; if elected, run every duty that is due. Returns ``leading``."""
        if await self._renew():
            for name, interval, duty in self._duties():
                if not await self._due(name, interval):
                    continue
                if not await self._renew():  # never start a duty on a lease that may have lapsed
                    break
                await self._run(name, duty)
        await self._refresh_kill_switch()
        return self.leading

    async def _due(self, name: str, interval: float) -> bool:
        """Whether duty ``name`` should run now; marks it started if so.

        Retention keeps its last run in the store: a fleet whose leader changes more often than the
        retention interval (rolling restarts) still purges on schedule, and a new leader does not
        purge again at once. The cheap duties run at the start of every term.
        """
        if name != "retention":
            mono = self.app.clock.monotonic()
            last = self._last.get(name)
            if last is not None and mono - last < interval:
                return False
            self._last[name] = mono
            return True
        now = self.app.clock.time()
        raw = await self.app.store.kv_get(FLEET_LEASE, "retention_at")
        if raw is None:  # a fleet's first leader: start the schedule, purge one interval from now
            await self.app.store.kv_put(FLEET_LEASE, "retention_at", repr(now).encode())
            return False
        if now - float(raw) < interval:
            return False
        await self.app.store.kv_put(FLEET_LEASE, "retention_at", repr(now).encode())
        return True

    def _duties(self) -> list[tuple[str, float, Callable[[], Awaitable[Any]]]]:
        c = self.cfg
        return [
            ("gauges", c.gauges_interval_s, self.refresh_gauges),
            ("escalation", c.escalation_interval_s, self.escalate_reviews),
            ("retention", c.retention_interval_s, self.purge_expired),
        ]

    async def _renew(self) -> bool:
        now = self.app.clock.time()
        try:
            lease: LeaderLease | None = await self.app.store.acquire_leader(
                FLEET_LEASE, self.holder, now, self.cfg.lease_s
            )
        except StoreError as exc:
            _log.warning("fleet: %s cannot reach the store for the lease: %s", self.holder, exc)
            lease = None
        if lease is not None and lease.held_by(self.holder, now):
            if self.lease is None or self.lease.epoch != lease.epoch:
                _log.info("fleet: %s leads (term %d)", self.holder, lease.epoch)
                self._last.clear()  # a new term runs every duty at once
            self.lease = lease
            return True
        if self.lease is not None:
            _log.warning("fleet: %s lost the lease (term %d); stepping down", self.holder, self.lease.epoch)
            self.lease = None
            if self.app.telemetry is not None:
                self.app.telemetry.clear_fleet_gauges()
        return False

    async def _run(self, name: str, duty: Callable[[], Awaitable[Any]]) -> None:
        try:
            result = await duty()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing duty must not stop the others or the election
            self.failed[name] = self.failed.get(name, 0) + 1
            _log.error("fleet duty %s failed: %s", name, exc, exc_info=not isinstance(exc, StoreError))
            return
        self.done[name] += 1
        if result:
            _log.info("fleet duty %s: %s", name, result)

    # -- the duties (public so an operator or a test can run one by hand) ---------------------
    async def refresh_gauges(self) -> dict[str, int]:
        """Count the queue, the DLQ and the open reviews in the store and set the fleet gauges."""
        n = await self.app.store.fleet_counts(self.app.clock.time())
        tel = self.app.telemetry
        if tel is not None and self.leading:
            tel.set_queue_depth(
                pending=n.pending, waiting=n.waiting, running=n.running, dead_letter=n.dead_letter
            )
            tel.set_review_queue_depth(n.reviews)
        return {}  # counted every few seconds: not worth a log line

    async def escalate_reviews(self) -> dict[str, int]:
        """Escalate every pending review past its SLA; the review queue notifies each escalation."""
        gov = await self.app.governance()
        escalated = await gov.reviews.escalate_overdue()
        return {"escalated": len(escalated)} if escalated else {}

    async def purge_expired(self) -> dict[str, int]:
        """Retention: audit entries, artifacts and memory items whose time is over."""
        out: dict[str, int] = {}
        gov = await self.app.governance()
        n = await gov.audit.purge_expired(operator="fleet", default_days=self.cfg.audit_retention_days)
        if n:
            out["audit_entries"] = n
        try:
            artifacts = await self.app.artifacts()
        except ConfigError as exc:  # no master key: no artifact was ever written by this config
            self._warn_once("artifacts", f"fleet: artifact sweep skipped: {exc}")
        else:
            swept, batch = 0, 1000
            while True:
                k = await artifacts.sweep(limit=batch)
                swept += k
                if k < batch or not await self._renew():
                    break
            if swept:
                out["artifacts"] = swept
        pruned = await self._memory().prune()
        if pruned:
            out["memory_items"] = pruned
        return out

    def _memory(self) -> Any:
        from stalwart.memory import Memory

        # Pruning is plain SQL: reuse the app's memory if it was opened, else one without an
        # embedder (the embedder loads lazily and pruning never asks for it).
        mem = self.app._memory
        return mem if mem is not None else Memory(self.app.store, None, clock=self.app.clock.time)

    async def _refresh_kill_switch(self) -> None:
        tel = self.app.telemetry
        if tel is None:
            return
        try:
            tel.set_kill_switch(await self.app.kill_switch_engaged())
        except StoreError as exc:
            self._warn_once("kill_switch", f"fleet: cannot read the kill switch: {exc}")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message)


async def start_fleet(app: App, *, holder: str | None = None) -> Fleet | None:
    """Start this process's part in the fleet (``None`` when ``fleet.enabled`` is false)."""
    if not app.settings.fleet.enabled:
        return None
    return await Fleet(app, holder=holder).start()
