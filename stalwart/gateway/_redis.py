"""Redis as the home of the response cache, rate-limit counters and budget ledger, when
``redis_url`` is set.

Flags (breakers, caps) stay in the store; this adapter delegates them. The budget ledger (spent
totals and leased holds) lives in Redis: reservations are optimistic transactions (``WATCH`` the
ledger keys, decide, ``MULTI``/``EXEC``, retry when another client changed them first).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from stalwart.errors import ConfigError, StoreUnavailable
from stalwart.gateway._state import SharedState
from stalwart.store import LEDGER_NS, LedgerDecide, LedgerRow

__all__ = ["RedisState"]

_WINDOW_TTL_S = 180
_LEDGER = "stalwart:ledger:"
_HOLD_INDEX_TTL_S = 40 * 24 * 3600
_MAX_RACES = 200


class RedisState:
    """``SharedState`` whose key/value entries and ``gateway.rate`` counters live in Redis."""

    def __init__(self, url: str, fallback: SharedState, clock: Callable[[], float]) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - redis is a dependency
            raise ConfigError(
                "redis_url is set but the 'redis' package is missing: pip install redis"
            ) from None
        self._r: Any = aioredis.Redis.from_url(url)  # redis-py's sync/async union types
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
        if namespace == LEDGER_NS:
            ledger_key, _, dim = key.rpartition(":")
            value = await self._r.hget(f"{_LEDGER}{ledger_key}:spent", dim)
            return float(value) if value is not None else 0.0
        if namespace != "gateway.rate":
            return await self._fallback.counter_get(namespace, key)
        value = await self._r.get(f"stalwart:{namespace}:{key}")
        return float(value) if value is not None else 0.0

    async def ledger_reserve(
        self, hold_id: str, keys: list[str], decide: LedgerDecide, expires_at: float, now: float
    ) -> dict[str, tuple[float, float]] | str:
        from redis.exceptions import WatchError

        watched = [f"{_LEDGER}{k}:{part}" for k in keys for part in ("spent", "holds")]
        for _ in range(_MAX_RACES):
            async with self._r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*watched)
                    rows: dict[str, LedgerRow] = {}
                    expired: dict[str, list[bytes]] = {}
                    for k in keys:
                        spent = await pipe.hgetall(f"{_LEDGER}{k}:spent")
                        holds = await pipe.hgetall(f"{_LEDGER}{k}:holds")
                        live_t = live_u = 0.0
                        for hid, raw in holds.items():
                            t, u, exp = json.loads(raw)
                            if exp <= now:
                                expired.setdefault(k, []).append(hid)
                            else:
                                live_t, live_u = live_t + t, live_u + u
                        rows[k] = (
                            float(spent.get(b"tokens", 0.0)),
                            float(spent.get(b"usd", 0.0)),
                            live_t,
                            live_u,
                        )
                    decision = decide(rows)
                    pipe.multi()
                    for k, hids in expired.items():
                        pipe.hdel(f"{_LEDGER}{k}:holds", *hids)
                    if not isinstance(decision, str):
                        for k, (t, u) in decision.items():
                            pipe.hset(f"{_LEDGER}{k}:holds", hold_id, json.dumps([t, u, expires_at]))
                        index = f"{_LEDGER}hold:{hold_id}"
                        if decision:
                            pipe.sadd(index, *decision)
                            pipe.expire(index, _HOLD_INDEX_TTL_S)
                    await pipe.execute()
                    return decision
                except WatchError:
                    continue
        raise StoreUnavailable(f"budget reservation lost {_MAX_RACES} races in a row on Redis")

    async def ledger_settle(
        self, hold_id: str, spend: dict[str, tuple[float, float]], now: float
    ) -> dict[str, tuple[float, float, float, float]]:
        index = f"{_LEDGER}hold:{hold_id}"
        held = [m.decode() for m in await self._r.smembers(index)]
        async with self._r.pipeline(transaction=True) as pipe:
            for k in held:
                pipe.hdel(f"{_LEDGER}{k}:holds", hold_id)
            pipe.delete(index)
            order = list(spend)
            for k in order:
                pipe.hincrbyfloat(f"{_LEDGER}{k}:spent", "tokens", float(spend[k][0]))
                pipe.hincrbyfloat(f"{_LEDGER}{k}:spent", "usd", float(spend[k][1]))
            results = await pipe.execute()
        tail = results[len(held) + 1 :]
        out = {}
        for i, k in enumerate(order):
            at, au = float(tail[2 * i]), float(tail[2 * i + 1])
            out[k] = (at - spend[k][0], au - spend[k][1], at, au)
        return out

    async def aclose(self) -> None:
        await self._r.aclose()
