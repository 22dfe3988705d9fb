"""The hash chain: ``hash_i = sha256(prev_hash || seq_i as 8-byte big-endian || body_i)``.

The same formula is written in SQL in the PostgreSQL migration (``stalwart_audit_chain``), so both
sides must change together.
"""

from __future__ import annotations

import hashlib

__all__ = ["GENESIS", "chain_hash"]

GENESIS = bytes(32)
"""The ``prev_hash`` of the first entry."""


def chain_hash(prev_hash: bytes, seq: int, body: str | bytes) -> bytes:
    """The hash of entry ``seq`` whose predecessor hashed to ``prev_hash``."""
    data = body.encode() if isinstance(body, str) else body
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big") + data).digest()
