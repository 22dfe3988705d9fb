"""Per-key and per-org rate limits, shared by every API process.

With Redis, a true token bucket (capacity = the per-minute limit, refilled continuously) runs as
one Lua script, atomically. Without Redis the store's atomic counters hold a sliding-window
counter: this minute's count plus the previous minute's weighted by how much of it still
overlaps the window, which behaves like a bucket refilled continuously at ``limit/60`` per second.
A refusal carries the seconds until a request would be admitted again (``Retry-After``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Decision", "RateLimiter"]

_NS = "api.rate"
_WINDOW_S = 60.0

_LUA_BUCKET = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = cap; ts = now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 60)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    scope: str = ""


class RateLimiter:
    """``check(scopes)`` admits one request against each ``(name, limit_per_min)`` scope."""

    def __init__(
        self, store: Any, redis_url: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.clock = clock
        self._redis: Any = None
        self._script: Any = None
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(redis_url)
            self._script = self._redis.register_script(_LUA_BUCKET)

    async def check(self, scopes: list[tuple[str, int]]) -> Decision:
        for name, limit in scopes:
            d = await (self._bucket(name, limit) if self._redis is not None else self._window(name, limit))
            if not d.allowed:
                return d
        return Decision(True)

    async def _bucket(self, name: str, limit: int) -> Decision:
        allowed, wait = await self._script(
            keys=[f"stalwart:{_NS}:{name}"], args=[limit, limit / _WINDOW_S, self.clock()]
        )
        return Decision(bool(int(allowed)), float(wait), name)

    async def _window(self, name: str, limit: int) -> Decision:
        now = self.clock()
        window = int(now // _WINDOW_S)
        elapsed = (now - window * _WINDOW_S) / _WINDOW_S
        current = await self.store.counter_add(_NS, f"{name}:{window}", 1, now)
        if current > limit:
            return Decision(False, (window + 1) * _WINDOW_S - now, name)
        if current * 2 > limit:  # only near the limit is the previous window worth a read
            previous = await self.store.counter_get(_NS, f"{name}:{window - 1}")
            weighted = previous * (1.0 - elapsed) + current
            if weighted > limit:
                # Wait until the previous window's weight has decayed enough to admit one more.
                need = (weighted - limit) / max(previous, 1.0)
                return Decision(False, max(need * _WINDOW_S, 0.001), name)
        return Decision(True)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
