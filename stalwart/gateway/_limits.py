"""Per-model request (RPM) and token (TPM) limits shared across workers, and concurrency caps.

RPM/TPM are counted in one-minute windows in shared counters (Redis when configured, else the
store), so every worker draws from the same allowance. ``max_concurrency`` caps in-flight calls
per model in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from stalwart.gateway._providers._errors import provider_error
from stalwart.gateway._registry import Model
from stalwart.gateway._state import SharedState

__all__ = ["Limiter"]

_NS = "gateway.rate"


class Limiter:
    """Admission for provider calls. A refused call raises a retryable ``rate_limited`` error."""

    def __init__(self, state: SharedState) -> None:
        self._state = state
        self._sems: dict[str, asyncio.Semaphore] = {}

    async def _take(self, key: str, amount: float, limit: int, now: float, what: str, model: Model) -> None:
        window = int(now // 60)
        total = await self._state.counter_add(_NS, f"{model.name}:{what}:{window}", amount, now)
        if total > limit:
            await self._state.counter_add(_NS, f"{model.name}:{what}:{window}", -amount, now)
            raise provider_error(
                f"model {model.name!r}",
                "rate_limited",
                f"local {what} limit {limit}/min reached (models.{model.name}.{what})",
                retry_after=(window + 1) * 60 - now,
            )

    @contextlib.asynccontextmanager
    async def slot(self, model: Model, tokens: int, now: float) -> AsyncIterator[None]:
        """Hold a concurrency slot and charge one request plus ``tokens`` to the model's windows."""
        e = model.entry
        if e.rpm:
            await self._take("rpm", 1, e.rpm, now, "rpm", model)
        if e.tpm:
            await self._take("tpm", tokens, e.tpm, now, "tpm", model)
        if not e.max_concurrency:
            yield
            return
        sem = self._sems.get(model.name)
        if sem is None:
            sem = self._sems[model.name] = asyncio.Semaphore(e.max_concurrency)
        async with sem:
            yield
