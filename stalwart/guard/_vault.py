"""The PII vault: placeholder -> raw value, encrypted, in the store's key/value table.

Envelope encryption. A 32-byte master key comes from the environment variable or key file named
in :class:`~stalwart.settings.GuardSettings`, never from the database. It wraps (AES-GCM) one data
key per org, and one per data subject when entries are tagged with a subject. Entries are sealed
(AES-GCM) under the data key, with the entry's own name as associated data, so a ciphertext
moved to another name does not open.

Erasure is crypto-shredding: :meth:`Vault.erase_subject` deletes the subject's data key and
entries; any copy of the ciphertext left in a backup can no longer be opened.

Key layout in namespace ``guard.vault``::

    key/{org}                      org data key, wrapped by the master key
    skey/{org}/{sid}               subject data key, wrapped       (sid = HMAC of the subject id)
    e/{org}/{scope}/{placeholder}  {"k": "org" | sid, "n": nonce, "c": ciphertext}
    s/{org}/{sid}/{scope}/{placeholder}   index of a subject's entries
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stalwart.errors import ConfigError
from stalwart.guard._placeholders import PLACEHOLDER_RE, PlaceholderMap

if TYPE_CHECKING:
    from stalwart.settings import GuardSettings
    from stalwart.store._protocol import Store

__all__ = ["NAMESPACE", "Vault", "load_master_key"]

NAMESPACE = "guard.vault"
_SAFE = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")


def load_master_key(settings: GuardSettings) -> bytes:
    """The vault master key, from ``guard.master_key_env`` or ``guard.master_key_file``.

    Fails closed with :class:`ConfigError` naming the settings when neither yields a valid key.
    """
    raw: str | None = os.environ.get(settings.master_key_env)
    origin = f"environment variable {settings.master_key_env} (guard.master_key_env)"
    if not raw and settings.master_key_file:
        origin = f"key file {settings.master_key_file} (guard.master_key_file)"
        try:
            raw = Path(settings.master_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"the PII vault cannot read its master key from {origin}: {exc.strerror}"
            ) from None
    if not raw:
        raise ConfigError(
            "the PII vault needs a master key: set the environment variable "
            f"{settings.master_key_env} (guard.master_key_env) or guard.master_key_file to a base64-encoded "
            '32-byte key, e.g. from `python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"`'
        )
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"the master key in {origin} is not valid base64") from None
    if len(key) != 32:
        raise ConfigError(f"the master key in {origin} must decode to 32 bytes, not {len(key)}")
    return key


def _check(part: str, what: str) -> str:
    if not _SAFE.match(part):
        raise ValueError(f"invalid vault {what}: use 1-200 characters of [A-Za-z0-9_.:@-]")
    return part


class Vault:
    """Encrypted placeholder -> value storage for one store.

    ``master_key`` (32 bytes) may be given directly; otherwise it is loaded from ``settings`` on
    first use, and a missing key raises :class:`ConfigError` (the vault fails closed).
    ``rng`` supplies nonces and data keys (``os.urandom`` by default; inject for tests).
    """

    def __init__(
        self,
        store: Store,
        *,
        settings: GuardSettings | None = None,
        master_key: bytes | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if master_key is not None and len(master_key) != 32:
            raise ConfigError("the vault master key must be 32 bytes")
        self._store = store
        self._settings = settings
        self._master = master_key
        self._rng = rng
        self._dek_cache: dict[str, bytes] = {}

    # -- keys -----------------------------------------------------------------------------------
    def _master_key(self) -> bytes:
        if self._master is None:
            settings = self._settings
            if settings is None:
                from stalwart.settings import GuardSettings

                settings = GuardSettings()
            self._master = load_master_key(settings)
        return self._master

    def _aead(self, key: bytes) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(key)

    def _subject_id(self, org: str, subject: str) -> str:
        mac = hmac.new(self._master_key(), f"subject\0{org}\0{subject}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def _seal(self, key: bytes, plaintext: bytes, aad: str) -> dict[str, str]:
        nonce = self._rng(12)
        ct = self._aead(key).encrypt(nonce, plaintext, aad.encode())
        return {"n": base64.b64encode(nonce).decode(), "c": base64.b64encode(ct).decode()}

    def _open(self, key: bytes, sealed: dict[str, str], aad: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return bytes(
                self._aead(key).decrypt(
                    base64.b64decode(sealed["n"]), base64.b64decode(sealed["c"]), aad.encode()
                )
            )
        except (InvalidTag, KeyError, ValueError, binascii.Error) as exc:
            raise ConfigError(
                "a vault entry does not decrypt: the master key (guard.master_key_env / guard.master_key_file) "
                "is not the one it was written with, or the entry was tampered with"
            ) from exc

    async def _data_key(self, name: str, *, create: bool) -> bytes | None:
        cached = self._dek_cache.get(name)
        if cached is not None:
            return cached
        master = self._master_key()
        raw = await self._store.kv_get(NAMESPACE, name)
        if raw is None:
            if not create:
                return None
            dek = self._rng(32)
            wrapped = self._seal(master, dek, name)
            await self._store.kv_put(NAMESPACE, name, json.dumps(wrapped).encode())
            # Another writer may have raced us: the stored key wins.
            raw = await self._store.kv_get(NAMESPACE, name)
            if raw is None:
                raise ConfigError("the store did not keep the vault data key just written")
        dek = self._open(master, json.loads(raw), name)
        self._dek_cache[name] = dek
        return dek

    # -- entries ---------------------------------------------------------------------------------
    async def put(
        self,
        org: str,
        mapping: dict[str, str],
        *,
        scope: str = "default",
        subject: str | None = None,
    ) -> int:
        """Store placeholder -> value pairs for ``org`` under ``scope`` (usually the run id).

        With ``subject`` (a data-subject id, e.g. a customer id) the entries are sealed under
        that subject's own key, so :meth:`erase_subject` can shred them. Returns how many were stored.
        """
        _check(org, "org")
        _check(scope, "scope")
        if subject is not None:
            sid = self._subject_id(org, subject)
            kid, key_name = sid, f"skey/{org}/{sid}"
        else:
            sid, kid, key_name = None, "org", f"key/{org}"
        dek = await self._data_key(key_name, create=True)
        assert dek is not None
        for placeholder, value in mapping.items():
            if not PLACEHOLDER_RE.fullmatch(placeholder):
                raise ValueError("vault keys must be {{TYPE_N}} placeholders")
            name = f"e/{org}/{scope}/{placeholder}"
            sealed = self._seal(dek, value.encode(), name)
            await self._store.kv_put(NAMESPACE, name, json.dumps({"k": kid, **sealed}).encode())
            if sid is not None:
                await self._store.kv_put(NAMESPACE, f"s/{org}/{sid}/{scope}/{placeholder}", b"1")
        return len(mapping)

    async def get(self, org: str, placeholder: str, *, scope: str = "default") -> str | None:
        """The raw value behind one placeholder, or ``None`` (unknown or erased)."""
        name = f"e/{_check(org, 'org')}/{_check(scope, 'scope')}/{placeholder}"
        raw = await self._store.kv_get(NAMESPACE, name)
        if raw is None:
            return None
        entry = json.loads(raw)
        key_name = f"key/{org}" if entry["k"] == "org" else f"skey/{org}/{entry['k']}"
        dek = await self._data_key(key_name, create=False)
        if dek is None:  # the subject's key was shredded
            return None
        return self._open(dek, entry, name).decode()

    async def mapping(self, org: str, *, scope: str = "default") -> dict[str, str]:
        """Every placeholder -> value pair of a scope (e.g. to resume a run's numbering)."""
        prefix = f"e/{_check(org, 'org')}/{_check(scope, 'scope')}/"
        out: dict[str, str] = {}
        for name in await self._store.kv_keys(NAMESPACE, prefix):
            ph = name[len(prefix) :]
            value = await self.get(org, ph, scope=scope)
            if value is not None:
                out[ph] = value
        return out

    async def placeholders(self, org: str, *, scope: str = "default") -> PlaceholderMap:
        """A :class:`PlaceholderMap` that continues the numbering stored for a scope."""
        return PlaceholderMap.from_mapping(await self.mapping(org, scope=scope))

    async def rehydrate(self, text: str, org: str, *, scope: str = "default") -> str:
        """Replace placeholders in ``text`` by their raw values. Only for tools that declare they
        need real values (an email tool needs the address): never for prompts, logs or spans.
        Unknown or erased placeholders are left as they are."""
        out: list[str] = []
        pos = 0
        cache: dict[str, str | None] = {}
        for m in PLACEHOLDER_RE.finditer(text):
            ph = m.group(0)
            if ph not in cache:
                cache[ph] = await self.get(org, ph, scope=scope)
            value = cache[ph]
            out.append(text[pos : m.start()])
            out.append(value if value is not None else ph)
            pos = m.end()
        out.append(text[pos:])
        return "".join(out)

    async def rehydrate_args(self, args: Any, org: str, *, scope: str = "default") -> Any:
        """:meth:`rehydrate` applied to every string inside a JSON-like structure of tool args."""
        if isinstance(args, str):
            return await self.rehydrate(args, org, scope=scope)
        if isinstance(args, dict):
            return {k: await self.rehydrate_args(v, org, scope=scope) for k, v in args.items()}
        if isinstance(args, list | tuple):
            return type(args)([await self.rehydrate_args(v, org, scope=scope) for v in args])
        return args

    async def holds_entries(self) -> bool:
        """Whether the vault holds any entry at all (needs no master key: used to refuse an erasure
        that could not shred them)."""
        return bool(await self._store.kv_keys(NAMESPACE, "e/"))

    async def subject_orgs(self, subject: str) -> list[str]:
        """GDPR reach: the orgs holding a data key of ``subject`` (entries sealed for them)."""
        orgs = set()
        for name in await self._store.kv_keys(NAMESPACE, "skey/"):
            parts = name.split("/")
            if len(parts) == 3 and parts[2] == self._subject_id(parts[1], subject):
                orgs.add(parts[1])
        return sorted(orgs)

    async def subject_mapping(self, org: str, subject: str) -> dict[str, dict[str, str]]:
        """GDPR export: scope -> {placeholder: raw value} of every entry sealed for ``subject``."""
        sid = self._subject_id(_check(org, "org"), subject)
        prefix = f"s/{org}/{sid}/"
        out: dict[str, dict[str, str]] = {}
        for name in await self._store.kv_keys(NAMESPACE, prefix):
            scope, _, placeholder = name[len(prefix) :].partition("/")
            value = await self.get(org, placeholder, scope=scope)
            if value is not None:
                out.setdefault(scope, {})[placeholder] = value
        return out

    async def erase_subject(self, org: str, subject: str) -> int:
        """Crypto-shred a data subject: delete their data key, entries and index. Returns the
        number of entries removed. Idempotent."""
        sid = self._subject_id(_check(org, "org"), subject)
        prefix = f"s/{org}/{sid}/"
        n = 0
        for name in await self._store.kv_keys(NAMESPACE, prefix):
            rest = name[len(prefix) :]
            n += bool(await self._store.kv_delete(NAMESPACE, f"e/{org}/{rest}"))
        await self._store.kv_delete(NAMESPACE, f"skey/{org}/{sid}")
        self._dek_cache.pop(f"skey/{org}/{sid}", None)
        await self._store.kv_delete_prefix(NAMESPACE, prefix)
        return n

    async def erase_scope(self, org: str, scope: str) -> int:
        """Delete every entry of one scope (e.g. when a run's retention ends)."""
        return await self._store.kv_delete_prefix(
            NAMESPACE, f"e/{_check(org, 'org')}/{_check(scope, 'scope')}/"
        )
