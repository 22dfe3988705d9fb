"""Redis as the home of the response cache and rate-limit counters, when ``redis_url`` is set.

Flags (breakers, caps) and durable spend counters stay in the store; this adapter delegates them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stalwart.errors import ConfigError
from stalwart.gateway._state import SharedState

__all__ = ["RedisState"]

_WINDOW_TTL_S = 180


class RedisState:
    """``SharedState`` whose key/value entries and ``gateway.rate`` counters live in Redis."""

    def __init__(self, url: str, fallback: SharedState, clock: Callable[[], float]) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - redis is a dependency
            raise ConfigError(
                "redis_url is set but the 'redis' package is missing: pip install redis"
            ) from None
        self._r = aioredis.Redis.from_url(url)
        self._fallback = fallback
        self._clock = clock

    async def get_flag(self, name: str) -> dict[str, Any] | None:
        return await self._fallback.get_flag(name)

    async def set_flag(self, name: str, value: dict[str, Any] | None, now: float) -> None:
        await self._fallback.set_flag(name, value, now)

    async def kv_get(self, namespace: str, key: str, now: float | None = None) -> bytes | None:
        value = await self._r.get(f"stalwart:{namespace}:{key}")
        return bytes(value) if value is not None else None

    async def kv_put(
        self, namespace: str, key: str, value: bytes, *, expires_at: float | None = None
    ) -> None:
        ttl = None if expires_at is None else max(1, int(expires_at - self._clock()))
        await self._r.set(f"stalwart:{namespace}:{key}", value, ex=ttl)

    async def counter_add(self, namespace: str, key: str, delta: float, now: float) -> float:
        if namespace != "gateway.rate":
            return await self._fallback.counter_add(namespace, key, delta, now)
        name = f"stalwart:{namespace}:{key}"
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.incrbyfloat(name, delta)
            pipe.expire(name, _WINDOW_TTL_S)
            total, _ = await pipe.execute()
        return float(total)

    async def counter_get(self, namespace: str, key: str) -> float:
        if namespace != "gateway.rate":
            return await self._fallback.counter_get(namespace, key)
        value = await self._r.get(f"stalwart:{namespace}:{key}")
        return float(value) if value is not None else 0.0

    async def aclose(self) -> None:
        await self._r.aclose()
