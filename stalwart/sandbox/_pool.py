"""The single-use warm pool: sandboxes started ahead of need, one call each, then destroyed.

Entries are kept per :class:`Profile` (tool module and code root, limits, egress on/off) and carry
the code hash of the module they imported. The size per profile follows the call rate
(:func:`target_size`), never below the floor a worker's pre-warm set (:meth:`WarmPool.prewarm`,
sized by :func:`prewarm_sizes`), and drops to zero after ``pool_idle_s`` without a call; the whole
pool is bounded per worker in processes (idle plus warming) and in the resident memory of idle
entries. At most ``max_warming`` sandboxes warm up at once, so the first entries are ready early.
Refills run as background tasks after a call has returned, never on a call's critical path. An
entry older than ``pool_max_age_s``, or whose code hash no longer matches the module on disk, is
discarded instead of used. Nothing per call (arguments, credential, verifier, egress log) is known
to an entry before :meth:`LiveSandbox.call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from stalwart.sandbox._live import LiveSandbox, Profile

__all__ = ["KeyStats", "PoolLimits", "WarmPool", "prewarm_sizes", "target_size"]

_log = logging.getLogger("stalwart.sandbox.pool")
_ALPHA = 0.3
_DEFAULT_RSS = 32 * 1024 * 1024


@dataclass(frozen=True)
class PoolLimits:
    """Bounds and timings of one worker's pool (from ``SandboxSettings``)."""

    max_processes: int = 16
    max_memory_mb: int = 1024
    per_profile_max: int = 2
    idle_s: float = 120.0
    max_age_s: float = 300.0
    warmup_timeout_s: float = 30.0
    max_warming: int = 2
    """Sandboxes warming up at once (more only share the same CPUs and are all ready late)."""
    refill_defer_s: float = 0.25
    """A refill waits up to this long for the calls in flight to finish (a warm-up's CPU would slow them)."""


@dataclass
class KeyStats:
    """Call rate and warm-up cost of one profile (exponentially weighted)."""

    last_call: float | None = None
    interval_s: float | None = None
    warmup_s: float = 0.3
    rss_bytes: int = 0
    """Resident memory of this profile's last ready entry (0: not measured yet)."""
    floor: int = 0
    """Ready entries kept while the profile is active, whatever the call rate (a worker's pre-warm)."""
    prewarmed_at: float | None = None

    def active_since(self) -> float | None:
        """The later of the last call and the pre-warm: the idle limit counts from here."""
        times = [t for t in (self.last_call, self.prewarmed_at) if t is not None]
        return max(times) if times else None

    def record_call(self, now: float, idle_s: float) -> None:
        """Fold one call into the rate; a call after more than ``idle_s`` starts a new rate."""
        if self.last_call is None or now - self.last_call > idle_s:
            self.interval_s = None
        else:
            gap = max(0.0, now - self.last_call)
            self.interval_s = gap if self.interval_s is None else (1 - _ALPHA) * self.interval_s + _ALPHA * gap
        self.last_call = now

    def record_warmup(self, seconds: float) -> None:
        """Fold one warm-up duration into the estimate."""
        self.warmup_s = (1 - _ALPHA) * self.warmup_s + _ALPHA * seconds


def target_size(stats: KeyStats, now: float, limits: PoolLimits) -> int:
    """How many ready entries a profile should have now (pure).

    Zero while the profile has neither been pre-warmed nor called, and again after ``idle_s``
    without a call (or since the pre-warm). Otherwise at least its pre-warm ``floor``; and, once it
    has a call rate (two calls within ``idle_s``: a tool called once is not worth a sandbox kept
    waiting), enough to cover the calls that arrive while one entry warms up
    (``warmup_s / interval_s``), at least one, at most ``per_profile_max``.
    """
    since = stats.active_since()
    if since is None or now - since > limits.idle_s or limits.per_profile_max <= 0:
        return 0
    rate = 0
    if stats.interval_s is not None and stats.last_call is not None and now - stats.last_call <= limits.idle_s:
        want = math.ceil(stats.warmup_s / max(stats.interval_s, 1e-3))
        rate = max(1, min(limits.per_profile_max, want))
    return max(rate, stats.floor)


def prewarm_sizes(wants: dict[Any, int], max_processes: int) -> dict[Any, int]:
    """Share ``max_processes`` among profiles that each want ``wants[p]`` entries (pure).

    Every profile gets what it wants when the total fits; otherwise entries are dealt one at a
    time, round robin in the given order, so each profile gets a fair share (and one entry each
    before any gets two, as far as the bound allows).
    """
    sizes = dict.fromkeys(wants, 0)
    left = max(0, max_processes)
    while left > 0:
        dealt = False
        for key, want in wants.items():
            if left > 0 and sizes[key] < want:
                sizes[key] += 1
                left -= 1
                dealt = True
        if not dealt:
            break
    return sizes


Spawner = Callable[[Profile, str], Awaitable[LiveSandbox]]


@dataclass
class WarmPool:
    """One worker's warm sandboxes. ``spawn(profile, code_hash)`` starts one (with the warm-up sent)."""

    spawn: Spawner
    limits: PoolLimits = field(default_factory=PoolLimits)
    clock: Callable[[], float] = time.monotonic
    entries: dict[Profile, list[LiveSandbox]] = field(default_factory=dict)
    warming: dict[Profile, int] = field(default_factory=dict)
    stats: dict[Profile, KeyStats] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _starting: set[LiveSandbox] = field(default_factory=set)
    _janitor: asyncio.Task[None] | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _slots: asyncio.Semaphore | None = None
    _quiet: asyncio.Event | None = None
    _in_flight: int = 0
    _closed: bool = False

    @property
    def enabled(self) -> bool:
        return self.limits.max_processes > 0 and self.limits.per_profile_max > 0 and not self._closed

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Entries of another (finished) event loop cannot be awaited here: kill them outright.
            for live in [x for xs in self.entries.values() for x in xs]:
                live.destroy()
                live.close_transport()
            self.entries.clear()
            self.warming.clear()
            self._tasks.clear()
            self._janitor = None
            self._slots = asyncio.Semaphore(max(1, self.limits.max_warming))
            self._quiet = asyncio.Event()
            self._in_flight = 0
            self._quiet.set()
            self._loop = loop

    def take(self, profile: Profile, code_hash: str) -> LiveSandbox | None:
        """A ready entry for ``profile`` built from ``code_hash``, or ``None`` (a cold call)."""
        if not self.enabled:
            return None
        self._bind_loop()
        self.stats.setdefault(profile, KeyStats()).record_call(self.clock(), self.limits.idle_s)
        bucket = self.entries.get(profile, [])
        now = self.clock()
        while bucket:
            live = bucket.pop(0)
            fresh = now - live.started <= self.limits.max_age_s
            if live.alive and fresh and live.code_hash == code_hash and live.ready.done() and live.ready.result():
                return live
            self._discard(live)
        return None

    def after_call(self, profile: Profile, code_hash: str) -> None:
        """Schedule a background refill for ``profile`` (called once the call has returned)."""
        if not self.enabled:
            return
        self._bind_loop()
        self._spawn_task(self._refill(profile, code_hash))

    def prewarm(self, floors: dict[Profile, tuple[str, int]]) -> None:
        """Start filling each profile up to its floor now, before its first call.

        ``floors`` maps a profile to (code hash, entries). The floor holds while the profile is
        active; like any entry, pre-warmed ones are dropped after ``idle_s`` without a call.
        """
        if not self.enabled:
            return
        self._bind_loop()
        now = self.clock()
        for profile, (digest, floor) in floors.items():
            stats = self.stats.setdefault(profile, KeyStats())
            stats.floor = max(0, floor)
            stats.prewarmed_at = now
            for _ in range(min(stats.floor, max(1, self.limits.max_warming))):
                self._spawn_task(self._refill(profile, digest))

    def floors_met(self) -> bool:
        """Whether every profile holds the ready entries its floor asks for."""
        return all(
            sum(1 for x in self.entries.get(p, []) if x.alive) >= st.floor for p, st in self.stats.items()
        )

    async def wait_warm(self, timeout_s: float) -> bool:
        """Wait until the pre-warm is done: every floor met, or no warm-up left that could meet it
        (bounds reached, warm-ups failed). ``False`` when ``timeout_s`` passed first or a floor is
        not met."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.floors_met():
            pending = [t for t in self._tasks if not t.done()]
            left = deadline - loop.time()
            if not pending or left <= 0:
                return False
            await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        return True

    def call_started(self) -> None:
        """A call began (cold or pooled): refills hold back until the calls in flight are done."""
        self._bind_loop()
        self._in_flight += 1
        assert self._quiet is not None
        self._quiet.clear()

    def call_ended(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        if self._in_flight == 0 and self._quiet is not None:
            self._quiet.set()

    def retire(self, live: LiveSandbox) -> None:
        """After its one call: kill the sandbox's tree now, reap it and free its cgroups in the
        background (:meth:`settle` and :meth:`aclose` wait for that)."""
        live.used = True
        live.kill()
        self._bind_loop()
        self._spawn_task(live.reap())

    def _spawn_task(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _discard(self, live: LiveSandbox) -> None:
        live.destroy()
        self._spawn_task(live.discard())

    def _counts(self) -> tuple[int, int]:
        """(processes idle or warming, resident bytes of idle entries)."""
        idle = [x for xs in self.entries.values() for x in xs]
        return len(idle) + sum(self.warming.values()), sum(x.rss_bytes for x in idle)

    def _room(self, stats: KeyStats) -> bool:
        """Whether one more entry of a profile fits the process and memory bounds. An entry of a
        profile not measured yet is assumed as large as the largest one seen (at least 32 MiB)."""
        procs, rss = self._counts()
        if procs >= self.limits.max_processes:
            return False
        largest = max((st.rss_bytes for st in self.stats.values()), default=0)
        estimate = stats.rss_bytes or max(largest, _DEFAULT_RSS)
        return rss + estimate <= self.limits.max_memory_mb * 1024 * 1024

    async def _refill(self, profile: Profile, code_hash: str) -> None:
        stats = self.stats.setdefault(profile, KeyStats())
        deferred = False
        while not self._closed:
            have = len(self.entries.get(profile, [])) + self.warming.get(profile, 0)
            if have >= target_size(stats, self.clock(), self.limits) or not self._room(stats):
                return
            if not deferred and self._in_flight and self._quiet is not None:
                deferred = True  # once per refill: under steady traffic it must not starve
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._quiet.wait(), self.limits.refill_defer_s)
                continue
            self.warming[profile] = self.warming.get(profile, 0) + 1
            started = self.clock()
            live: LiveSandbox | None = None
            try:
                assert self._slots is not None
                async with self._slots:
                    if self._closed:
                        return
                    started = self.clock()
                    live = await self.spawn(profile, code_hash)
                    self._starting.add(live)
                    ok = await asyncio.wait_for(asyncio.shield(live.ready), self.limits.warmup_timeout_s)
            except asyncio.CancelledError:
                if live is not None:
                    live.destroy()
                raise
            except Exception as exc:  # noqa: BLE001 - a failed warm-up only means the next call is cold
                _log.warning("sandbox pool: warm-up for %s failed: %s", profile.module, exc)
                ok = False
            finally:
                self.warming[profile] -= 1
                if live is not None:
                    self._starting.discard(live)
            if live is None:
                return
            if not ok or self._closed or not live.alive:
                await live.discard()
                return
            stats.record_warmup(self.clock() - started)
            with contextlib.suppress(Exception):
                # what the warm-up used: an idle entry uses nothing more, so this is the call's baseline
                live.baseline = live.usage()
                live.rss_bytes = live.baseline.rss_bytes
                stats.rss_bytes = live.rss_bytes
            self.entries.setdefault(profile, []).append(live)
            if self._janitor is None or self._janitor.done():
                # started with the first entry, it runs until the pool is empty again
                self._janitor = asyncio.get_running_loop().create_task(self._sweep())

    def _next_deadline(self, now: float) -> float | None:
        times: list[float] = []
        for profile, bucket in self.entries.items():
            if not bucket:
                continue
            last = self.stats.get(profile, KeyStats()).active_since()
            if last is not None:
                times.append(last + self.limits.idle_s)
            times += [x.started + self.limits.max_age_s for x in bucket]
        return min(times) - now if times else None

    def sweep(self) -> None:
        """Discard dead, aged and idle entries, and trim profiles above their target size."""
        now = self.clock()
        for profile, bucket in self.entries.items():
            want = target_size(self.stats.get(profile, KeyStats()), now, self.limits)
            keep: list[LiveSandbox] = []
            for live in bucket:
                if live.alive and now - live.started <= self.limits.max_age_s and len(keep) < want:
                    keep.append(live)
                else:
                    self._discard(live)
            bucket[:] = keep

    async def _sweep(self) -> None:
        while not self._closed:
            self.sweep()
            wait = self._next_deadline(self.clock())
            if wait is None:
                return
            await asyncio.sleep(max(0.05, wait + 0.01))

    async def settle(self) -> None:
        """Wait for the refills under way (tests and benchmarks use it to start from a warm pool)."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    def ready_count(self) -> int:
        """Idle entries ready for a call, over all profiles."""
        return sum(1 for xs in self.entries.values() for x in xs if x.alive)

    async def aclose(self) -> None:
        """Destroy every entry and stop background work."""
        self._closed = True
        same_loop = self._loop is asyncio.get_running_loop()
        lives = [x for xs in self.entries.values() for x in xs]
        self.entries.clear()
        if not same_loop:
            for live in lives:
                live.destroy()
                live.close_transport()
            return
        if self._janitor is not None and not self._janitor.done():
            self._janitor.cancel()
        # Refills are awaited, not cancelled: a subprocess start cancelled half-way can leave
        # asyncio waiting for an exit it is never told about (CPython 3.11). A refill that sees
        # the pool closed discards what it started.
        for live in list(self._starting):
            live.destroy()  # its reader sees EOF, so the refill stops waiting for it
        await self.settle()
        lives += [x for xs in self.entries.values() for x in xs]
        self.entries.clear()
        for live in lives:
            await live.discard()
