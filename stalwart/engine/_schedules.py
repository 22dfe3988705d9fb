"""Cron schedules: every worker runs the scheduler, each tick starts exactly one run.

Exactly-once needs no leader election: a tick's run is started with the idempotency key
``schedule:{name}:{tick}``, so however many workers see the tick, the store keeps one run. The
last tick fired is kept in the store, so after downtime the ``catch_up`` policy decides what to
fire: ``latest`` (the most recent missed tick only), ``all`` (every missed tick, at most 100) or
``skip`` (none; wait for the next). A paused schedule, or an engaged kill switch, fires nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stalwart.errors import ConfigError, KillSwitchEngaged, StalwartError

if TYPE_CHECKING:
    from stalwart.engine._app import App

__all__ = ["Schedule", "due_ticks", "run_scheduler"]

_log = logging.getLogger("stalwart.schedules")
_MAX_CATCH_UP = 100


@dataclass
class Schedule:
    """A cron expression that starts ``workflow`` on every tick."""

    name: str
    cron: str
    workflow: str
    input: Any = None
    input_factory: Callable[[datetime], Any] | None = None
    catch_up: str = "latest"
    org: str = ""
    user: str = "scheduler"

    def __post_init__(self) -> None:
        from croniter import croniter

        if not croniter.is_valid(self.cron):
            raise ConfigError(f"schedule {self.name!r}: {self.cron!r} is not a valid cron expression")
        if self.catch_up not in ("latest", "all", "skip"):
            raise ConfigError(f"schedule {self.name!r}: catch_up must be latest, all or skip")

    def __call__(self, fn: Callable[[datetime], Any]) -> Callable[[datetime], Any]:
        """Used as a decorator: ``fn(tick)`` builds each run's input."""
        self.input_factory = fn
        return fn

    def input_for(self, tick: float) -> Any:
        if self.input_factory is not None:
            return self.input_factory(datetime.fromtimestamp(tick, tz=UTC))
        return self.input


def due_ticks(cron: str, last: float, now: float, catch_up: str) -> list[float]:
    """Ticks in ``(last, now]`` to fire under the catch-up policy (pure)."""
    from croniter import croniter

    it = croniter(cron, datetime.fromtimestamp(last, tz=UTC))
    ticks: list[float] = []
    while True:
        t = it.get_next(float)
        if t > now:
            break
        ticks.append(t)
        if len(ticks) > _MAX_CATCH_UP * 10:
            break
    if not ticks:
        return []
    if catch_up == "all":
        return ticks[-_MAX_CATCH_UP:]
    if catch_up == "latest":
        return ticks[-1:]
    # skip: only a tick that is due now (within a minute), never a backlog
    return [ticks[-1]] if now - ticks[-1] < 60 else []


async def set_paused(app: App, name: str, paused: bool) -> None:
    if name not in app.schedules:
        raise ConfigError(f"no schedule named {name!r} (this app has: {', '.join(app.schedules) or 'none'})")
    value = {"paused_at": app.clock.time()} if paused else None
    await app.store.set_flag(f"schedule:{name}:paused", value, app.clock.time())


async def fire_due(app: App, sched: Schedule) -> list[str]:
    """Start the runs of ``sched``'s due ticks; return their run ids."""
    store = app.store
    now = app.clock.time()
    if await store.get_flag(f"schedule:{sched.name}:paused") is not None:
        return []
    state = await store.get_flag(f"schedule:{sched.name}")
    if state is None:
        await store.set_flag(f"schedule:{sched.name}", {"last_tick": now}, now)
        return []
    started = []
    for tick in due_ticks(sched.cron, float(state["last_tick"]), now, sched.catch_up):
        run_id = await app.start(
            sched.workflow,
            sched.input_for(tick),
            idempotency_key=f"schedule:{sched.name}:{int(tick)}",
            org=sched.org,
            user=sched.user,
        )
        started.append(run_id)
    await store.set_flag(f"schedule:{sched.name}", {"last_tick": max(now, float(state["last_tick"]))}, now)
    return started


async def run_scheduler(app: App, interval_s: float = 1.0) -> None:
    """The scheduler loop a worker runs beside its claim loop."""
    while True:
        if not await app.kill_switch_engaged():
            for sched in list(app.schedules.values()):
                try:
                    await fire_due(app, sched)
                except KillSwitchEngaged:
                    break
                except StalwartError as exc:
                    _log.warning("schedule %s: %s", sched.name, exc)
        await asyncio.sleep(interval_s)
