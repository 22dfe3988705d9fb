"""Per-org and per-subject data keys for payloads at rest (artifacts), wrapped by the master key.

The same envelope scheme as the guard's PII vault (``stalwart.guard.Vault``), with its own key
names so that a key is never used for two purposes. The 32-byte master key is the vault's
(``guard.master_key_env`` / ``guard.master_key_file``); the caller loads it and hands it in, so
this layer needs no settings. Erasing a data subject shreds their key: any copy of their
ciphertext left in a backup or a bucket version can no longer be opened.

Key layout in namespace ``store.keys``::

    {purpose}/key/{org}           org data key, AES-GCM-wrapped by the master key
    {purpose}/skey/{org}/{sid}    subject data key (sid = HMAC of purpose, org and subject id)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from stalwart.errors import ConfigError

__all__ = ["NAMESPACE", "Keyring"]

NAMESPACE = "store.keys"


class Keyring:
    """Data keys for one ``purpose`` (e.g. ``artifacts``), created on first use and cached."""

    def __init__(
        self,
        store: Any,
        master_key: bytes,
        *,
        purpose: str = "artifacts",
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(master_key) != 32:
            raise ConfigError("the master key (guard.master_key_env / guard.master_key_file) must be 32 bytes")
        self._store = store
        self._master = master_key
        self._purpose = purpose
        self._rng = rng
        self._cache: dict[str, bytes] = {}

    def key_id(self, org: str, subject: str | None) -> str:
        """``org`` for the org key, else the subject's opaque id (no raw subject id is stored)."""
        if subject is None:
            return "org"
        mac = hmac.new(self._master, f"{self._purpose}\0{org}\0{subject}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def _name(self, org: str, key_id: str) -> str:
        if key_id == "org":
            return f"{self._purpose}/key/{org}"
        return f"{self._purpose}/skey/{org}/{key_id}"

    def _aead(self, key: bytes) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(key)

    async def get(self, org: str, key_id: str, *, create: bool = False) -> bytes | None:
        """The data key ``key_id`` of ``org``; ``None`` when it does not exist (or was shredded)."""
        name = self._name(org, key_id)
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        raw = await self._store.kv_get(NAMESPACE, name)
        if raw is None:
            if not create:
                return None
            nonce, dek = self._rng(12), self._rng(32)
            wrapped = self._aead(self._master).encrypt(nonce, dek, name.encode())
            record = {"n": base64.b64encode(nonce).decode(), "c": base64.b64encode(wrapped).decode()}
            await self._store.kv_put(NAMESPACE, name, json.dumps(record).encode())
            raw = await self._store.kv_get(NAMESPACE, name)  # a racing writer's key wins
            if raw is None:
                raise ConfigError("the store did not keep the data key just written")
        record = json.loads(raw)
        from cryptography.exceptions import InvalidTag

        try:
            dek = bytes(
                self._aead(self._master).decrypt(
                    base64.b64decode(record["n"]), base64.b64decode(record["c"]), name.encode()
                )
            )
        except (InvalidTag, KeyError, ValueError) as exc:
            raise ConfigError(
                "a data key does not unwrap: the master key (guard.master_key_env / guard.master_key_file) "
                "is not the one it was written with"
            ) from exc
        self._cache[name] = dek
        return dek

    async def shred(self, org: str, subject: str) -> bool:
        """Delete a subject's data key (crypto-shredding). Idempotent."""
        name = self._name(org, self.key_id(org, subject))
        self._cache.pop(name, None)
        return bool(await self._store.kv_delete(NAMESPACE, name))

    def seal(self, key: bytes, plaintext: bytes, aad: str) -> bytes:
        """``b"SWA1" + nonce + AES-GCM(ciphertext+tag)``, bound to ``aad`` (the object's name)."""
        nonce = self._rng(12)
        return b"SWA1" + nonce + self._aead(key).encrypt(nonce, plaintext, aad.encode())

    def open(self, key: bytes, blob: bytes, aad: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        if blob[:4] != b"SWA1":
            raise ConfigError("an encrypted payload has an unknown format")
        try:
            return bytes(self._aead(key).decrypt(blob[4:16], blob[16:], aad.encode()))
        except InvalidTag as exc:
            raise ConfigError("an encrypted payload does not decrypt: wrong key or tampered object") from exc
