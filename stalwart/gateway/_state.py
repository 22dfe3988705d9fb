"""The slice of the store the gateway shares across workers, and an in-process stand-in for it.

Any ``stalwart.store.Store`` satisfies :class:`SharedState`. With ``store=None`` the gateway uses
:class:`MemoryState`: limits, breakers, caps and the cache then hold for this process only.
"""

from __future__ import annotations

from typing import Any, Protocol

from stalwart.store import LEDGER_NS, LedgerDecide, LedgerRow

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

    async def ledger_reserve(
        self, hold_id: str, keys: list[str], decide: LedgerDecide, expires_at: float, now: float
    ) -> dict[str, tuple[float, float]] | str: ...

    async def ledger_settle(
        self, hold_id: str, spend: dict[str, tuple[float, float]], now: float
    ) -> dict[str, tuple[float, float, float, float]]: ...


class MemoryState:
    """Process-local flags, key/value entries (with expiry) and counters."""

    def __init__(self) -> None:
        self.flags: dict[str, dict[str, Any]] = {}
        self.kv: dict[tuple[str, str], tuple[bytes, float | None]] = {}
        self.counters: dict[tuple[str, str], float] = {}
        self.holds: dict[tuple[str, str], tuple[float, float, float]] = {}

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

    async def ledger_reserve(
        self, hold_id: str, keys: list[str], decide: LedgerDecide, expires_at: float, now: float
    ) -> dict[str, tuple[float, float]] | str:
        # No await between reading and writing: atomic on the event loop.
        for hk in [hk for hk, (_, _, exp) in self.holds.items() if exp <= now]:
            del self.holds[hk]
        rows: dict[str, LedgerRow] = {}
        for key in keys:
            held = [(t, u) for (_, k), (t, u, _) in self.holds.items() if k == key]
            rows[key] = (
                self.counters.get((LEDGER_NS, f"{key}:tokens"), 0.0),
                self.counters.get((LEDGER_NS, f"{key}:usd"), 0.0),
                sum(t for t, _ in held),
                sum(u for _, u in held),
            )
        decision = decide(rows)
        if not isinstance(decision, str):
            for key, (t, u) in decision.items():
                self.holds[(hold_id, key)] = (t, u, expires_at)
        return decision

    async def ledger_settle(
        self, hold_id: str, spend: dict[str, tuple[float, float]], now: float
    ) -> dict[str, tuple[float, float, float, float]]:
        for hk in [hk for hk in self.holds if hk[0] == hold_id]:
            del self.holds[hk]
        out = {}
        for key, (t, u) in spend.items():
            bt = self.counters.get((LEDGER_NS, f"{key}:tokens"), 0.0)
            bu = self.counters.get((LEDGER_NS, f"{key}:usd"), 0.0)
            self.counters[(LEDGER_NS, f"{key}:tokens")] = bt + t
            self.counters[(LEDGER_NS, f"{key}:usd")] = bu + u
            out[key] = (bt, bu, bt + t, bu + u)
        return out
