"""The audit signing key when none is configured: generated once and kept in the store.

That is the embedded default, good for a laptop: whoever can rewrite the database can also read
this key. In production give ``AuditLog(signing_key=...)`` from a secret manager and verify with
the public key kept elsewhere (``stalwart audit verify --public-key``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stalwart.governance._checkpoint import load_private_key, public_bytes

__all__ = ["stored_public_key", "stored_signing_key"]

NAMESPACE = "audit"
_KEY = "signing_key"
_PUB = "public_key"


async def stored_signing_key(store: Any, clock: Any = time.time) -> Any:
    """Load the store's audit key, electing one process to generate it the first time."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = await store.kv_get(NAMESPACE, _KEY)
    if raw is None:
        first = await store.counter_add(NAMESPACE, "signing_key_election", 1, clock()) == 1
        for _ in range(0 if first else 100):
            raw = await store.kv_get(NAMESPACE, _KEY)
            if raw is not None:
                break
            await asyncio.sleep(0.05)
        if raw is None:
            key = Ed25519PrivateKey.generate()
            raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            await store.kv_put(NAMESPACE, _KEY, raw)
            await store.kv_put(NAMESPACE, _PUB, public_bytes(key.public_key()))
            raw = await store.kv_get(NAMESPACE, _KEY) or raw
    return load_private_key(raw)


async def stored_public_key(store: Any) -> bytes | None:
    """The public half of the store-kept key, if one was generated."""
    return await store.kv_get(NAMESPACE, _PUB)
