"""The slice of the store the gateway shares across workers, and an in-process stand-in for it.

Any ``stalwart.store.Store`` satisfies :class:`SharedState`. With ``store=None`` the gateway uses
:class:`MemoryState`: limits, breakers, caps and the cache then hold for this process only.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["MemoryState", "SharedState"]


class SharedState(Protocol):
    async def get_flag(self, name: str) -> dict[str, Any] | None: ...

    async def set_flag(self, name: str, value: dict[str, Any] | None, now: float) -> None: ...

    async def kv_get(self, namespace: str, key: str, now: float | None = None) -> bytes | None: ...

    async def kv_put(
        self, namespace: str, key: str, value: bytes, *, expires_at: float | None = None
    ) -> None: ...

    async def counter_add(self, namespace: str, key: str, delta: float, now: float) -> float: ...

    async def counter_get(self, namespace: str, key: str) -> float: ...


class MemoryState:
    """Process-local flags, key/value entries (with expiry) and counters."""

    def __init__(self) -> None:
        self.flags: dict[str, dict[str, Any]] = {}
        self.kv: dict[tuple[str, str], tuple[bytes, float | None]] = {}
        self.counters: dict[tuple[str, str], float] = {}

    async def get_flag(self, name: str) -> dict[str, Any] | None:
        return self.flags.get(name)

    async def set_flag(self, name: str, value: dict[str, Any] | None, now: float) -> None:
        if value is None:
            self.flags.pop(name, None)
        else:
            self.flags[name] = dict(value)

    async def kv_get(self, namespace: str, key: str, now: float | None = None) -> bytes | None:
        hit = self.kv.get((namespace, key))
        if hit is None:
            return None
        value, expires_at = hit
        if expires_at is not None and now is not None and expires_at <= now:
            return None
        return value

    async def kv_put(
        self, namespace: str, key: str, value: bytes, *, expires_at: float | None = None
    ) -> None:
        if len(self.kv) > 50_000:
            self.kv.clear()
        self.kv[(namespace, key)] = (value, expires_at)

    async def counter_add(self, namespace: str, key: str, delta: float, now: float) -> float:
        total = self.counters.get((namespace, key), 0.0) + delta
        self.counters[(namespace, key)] = total
        return total

    async def counter_get(self, namespace: str, key: str) -> float:
        return self.counters.get((namespace, key), 0.0)
