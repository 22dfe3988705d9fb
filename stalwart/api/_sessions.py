"""Console sessions, kept in the store (``api.sessions``) under the hash of a random cookie value."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from stalwart.api._auth import Principal

__all__ = ["SessionStore"]

_NS = "api.sessions"


def _h(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, store: Any, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock

    async def create(self, p: Principal) -> str:
        token = secrets.token_urlsafe(32)
        data = {
            "subject": p.subject,
            "org": p.org,
            "roles": sorted(p.roles),
            "key_id": p.key_id,
            "csrf": secrets.token_urlsafe(24),
            "created_at": self.clock(),
        }
        await self.store.kv_put(
            _NS, _h(token), json.dumps(data).encode(), expires_at=self.clock() + self.ttl_s
        )
        return token

    async def principal(self, token: str) -> Principal | None:
        if not token or len(token) > 256:
            return None
        raw = await self.store.kv_get(_NS, _h(token), self.clock())
        if raw is None:
            return None
        d = json.loads(raw)
        if d.get("key_id"):
            # A session dies with the key that opened it.
            rec = await self._key(d["key_id"])
            if rec is None or not rec.active(self.clock()):
                return None
        return Principal(
            subject=d["subject"],
            org=d["org"],
            roles=frozenset(d["roles"]),
            via="session",
            key_id=d.get("key_id"),
            csrf=d.get("csrf"),
        )

    async def _key(self, kid: str) -> Any:
        from stalwart.governance import KeyStore

        return await KeyStore(self.store, self.clock).get(kid)

    async def delete(self, token: str) -> None:
        await self.store.kv_delete(_NS, _h(token))
