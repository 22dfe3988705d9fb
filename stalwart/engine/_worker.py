"""A stateless worker: claims runnable runs, executes them, heartbeats their leases.

Nothing a worker holds in memory is needed by anyone else: kill it at any instant and another
worker takes its runs over once their leases expire, replaying their journals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from stalwart.engine._execution import RunExecution
from stalwart.engine._ids import new_id
from stalwart.errors import StoreError
from stalwart.store import Claim

if TYPE_CHECKING:
    from stalwart.engine._app import App

__all__ = ["Worker"]

_log = logging.getLogger("stalwart.worker")


class Worker:
    """Executes runs of the app's registered workflow versions, ``concurrency`` at a time.

    Use as ``async with app.worker(concurrency=64): ...`` or ``await worker.run_forever()``.
    """

    def __init__(
        self,
        app: App,
        *,
        concurrency: int = 64,
        lease_s: float | None = None,
        poll_interval_s: float | None = None,
        worker_id: str | None = None,
        drain_timeout_s: float = 30.0,
        scheduler: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.app = app
        self.concurrency = concurrency
        self.lease_s = lease_s or app.settings.worker.lease_s
        self.poll_interval_s = poll_interval_s or app.settings.worker.poll_interval_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.drain_timeout_s = drain_timeout_s
        self._inflight: dict[str, tuple[asyncio.Task[None], RunExecution]] = {}
        self._slot = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self.claimed = 0
        self._scheduler = scheduler
        self._sched_task: asyncio.Task[None] | None = None
        self.prewarm: dict[str, Any] | None = None
        """What the sandbox pre-warm asked for and had ready when this worker began claiming."""

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> Worker:
        await self.app.connect()
        # Warm sandboxes for the app's sandboxed tools while the guard's models load (about a
        # second, in a thread), both before claiming anything, so no lease is ever held while a
        # process warms up. The pre-warm is waited for at most [sandbox] pool_prewarm_wait_s.
        from stalwart.engine._sandboxed import prewarm_sandboxes

        prewarm = asyncio.ensure_future(prewarm_sandboxes(self.app, self.concurrency))
        try:
            await self.app.guard_ready()
            await self.app.guard_ready(pii=True)
            if any(m.provider == "embedded" for m in self.app.settings.models.values()):
                await (await self.app.gateway()).warm()  # in-process models load once, before any claim
        finally:
            self.prewarm = await prewarm
        self.app._attach_worker(self)
        self._loop_task = asyncio.create_task(self._loop(), name=f"stalwart-worker-{self.worker_id}")
        self._beat_task = asyncio.create_task(self._heartbeat(), name="stalwart-heartbeat")
        if self._scheduler and self.app.schedules:
            from stalwart.engine._schedules import run_scheduler

            self._sched_task = asyncio.create_task(run_scheduler(self.app), name="stalwart-scheduler")
        return self

    async def __aenter__(self) -> Worker:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def run_forever(self) -> None:
        await self.start()
        assert self._loop_task is not None
        try:
            await self._loop_task
        finally:
            await self.stop()

    async def stop(self, graceful: bool = True) -> None:
        """Stop claiming; let in-flight runs reach a step boundary and release their leases."""
        if self._stopping:
            return
        self._stopping = True
        self._slot.set()
        if self._sched_task is not None:
            self._sched_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sched_task
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for _task, ex in list(self._inflight.values()):
            ex.drain_reason = "worker shutting down"
        tasks = [t for t, _ in self._inflight.values()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.drain_timeout_s if graceful else 0)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
                await self._release_abandoned([ex for t, ex in self._inflight.values() if t in pending])
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
        self.app._detach_worker(self)

    async def _release_abandoned(self, executions: list[RunExecution]) -> None:
        for ex in executions:
            with contextlib.suppress(Exception):
                await self.app.store.set_run_state(
                    ex.run.id, ex.epoch, "PENDING", self.app.clock.time(), release=True,
                    meta_patch={"released": "worker stopped mid-step"},
                )

    # -- the loop ----------------------------------------------------------------------------
    def poke(self) -> None:
        self._slot.set()

    async def _loop(self) -> None:
        store = self.app.store
        keys = self.app.workflow_keys()
        backoff = 0.05
        while not self._stopping:
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                if await self.app.kill_switch_engaged():
                    await store.wait_for_work(self.poll_interval_s)
                    continue
                claims = await store.claim_runs(
                    self.worker_id, keys, self.app.clock.time(), self.lease_s, min(free, 64)
                )
                backoff = 0.05
            except StoreError as exc:
                _log.warning("worker %s: claim failed: %s; retrying in %.2fs", self.worker_id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for claim in claims:
                self._spawn(claim)
            if len(claims) < min(free, 64):  # the queue is drained: sleep until poked or a timer is due
                timeout = self.poll_interval_s
                wake = self.app._next_local_wake()
                if wake is not None:
                    timeout = max(0.0, min(timeout, wake - self.app.clock.time()))
                await self._idle(timeout)

    async def _idle(self, timeout: float) -> None:
        store_wait = asyncio.ensure_future(self.app.store.wait_for_work(timeout))
        slot_wait = asyncio.ensure_future(self._slot.wait())
        try:
            await asyncio.wait({store_wait, slot_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (store_wait, slot_wait):
                f.cancel()
            self._slot.clear()

    def _spawn(self, claim: Claim) -> None:
        self.claimed += 1
        if self.app.telemetry is not None:
            self.app.telemetry.run_started(claim.run)
        ex = RunExecution(self.app, claim, lease_s=self.lease_s, worker_id=self.worker_id)
        task = asyncio.create_task(ex.execute(), name=f"run-{claim.run.id}")
        self._inflight[claim.run.id] = (task, ex)
        task.add_done_callback(lambda t, rid=claim.run.id: self._done(rid, t))

    def _done(self, run_id: str, task: asyncio.Task[None]) -> None:
        was_full = len(self._inflight) >= self.concurrency
        self._inflight.pop(run_id, None)
        if not task.cancelled() and task.exception() is not None:
            _log.error("run %s: executor crashed", run_id, exc_info=task.exception())
        if was_full:  # only a full worker left work unclaimed; an idle one is woken by pokes
            self._slot.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = [(rid, ex.epoch) for rid, (_t, ex) in self._inflight.items()]
            if not held:
                continue
            try:
                lost = await self.app.store.renew_leases(self.worker_id, held, self.app.clock.time(), self.lease_s)
            except StoreError as exc:
                _log.warning("worker %s: heartbeat failed: %s", self.worker_id, exc)
                continue
            for rid in lost:
                entry = self._inflight.get(rid)
                if entry is not None:
                    _log.warning("run %s: lease lost, abandoning it to its new owner", rid)
                    entry[0].cancel()
