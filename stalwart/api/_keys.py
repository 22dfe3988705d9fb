"""API keys: the logic lives in :mod:`stalwart.governance` (the CLI administers keys too)."""

from __future__ import annotations

from stalwart.governance import KEYS_NS, ApiKey, KeyStore, key_id_of

__all__ = ["KEYS_NS", "ApiKey", "KeyStore", "key_id_of"]
