"""The exact-match response cache.

The key is a SHA-256 over the provider, the pinned model id, the (already redacted) messages, the
parameters that shape the answer and the template hash. Entries expire after ``ttl_s``. Only
deterministic (``temperature == 0``) or explicitly ``cacheable`` calls use it. A hit costs 0 tokens.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from stalwart.gateway._state import SharedState

__all__ = ["SEMANTIC_CACHE_STATUS", "ResponseCache", "cache_key"]

_NS = "gateway.cache"


def cache_key(
    provider: str,
    model_id: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    template_hash: str | None,
) -> str:
    """The exact-match key of one call."""
    doc = [provider, model_id, messages, params, template_hash]
    return hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def _semantic_status() -> str:
    import importlib.util

    # find_spec only looks: importing sentence-transformers (and torch) here cost seconds per process
    if importlib.util.find_spec("sentence_transformers") is None:
        return (
            "semantic cache off: no embedding model installed "
            "(install the 'semantic' extra with an offline embedding model to enable it)"
        )
    return "semantic cache available but not enabled (exact-match cache only)"


SEMANTIC_CACHE_STATUS = _semantic_status()
"""Why the semantic (embedding-similarity) cache is or is not in use."""


class ResponseCache:
    """Cached result documents in the store's key/value table, or Redis, with a TTL."""

    def __init__(self, state: SharedState, *, ttl_s: float) -> None:
        self._state = state
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0

    async def get(self, key: str, now: float) -> dict[str, Any] | None:
        raw = await self._state.kv_get(_NS, key, now)
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(raw)

    async def put(self, key: str, doc: dict[str, Any], now: float) -> None:
        await self._state.kv_put(
            _NS, key, json.dumps(doc, separators=(",", ":")).encode(), expires_at=now + self.ttl_s
        )

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
