"""API keys for service accounts: random, shown once, stored only as a SHA-256 hash.

A key reads ``sw_<kid>_<secret>``; the store keeps ``{kid: hash, org, roles, expiry, revoked}`` in
the ``api.keys`` namespace. Keys are 256-bit random strings, so a fast hash is the right tool (no
password-hashing work factor is needed to resist guessing). A key of another shape (the one given
by ``STALWART_ADMIN_KEY``) is filed under a kid derived from its hash.

Keys live in governance, not in the API, because two faces administer them: the HTTP API
(``/admin/keys``) and the ``stalwart keys`` command, which acts as the local platform operator.
Both record ``key.create`` / ``key.revoke`` in the audit log through the same :class:`KeyStore`.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from stalwart.errors import InvalidInput

__all__ = ["KEYS_NS", "PLATFORM_ORG", "ROLES", "ApiKey", "KeyStore", "check_org", "key_id_of"]

KEYS_NS = "api.keys"

ROLES = ("viewer", "operator", "reviewer", "admin", "auditor")
"""Every role a principal can hold."""

PLATFORM_ORG = "default"
"""The platform operator's org: its admins (the bootstrap key among them) administer every org."""

_ORG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_org(org: str) -> str:
    """``org`` if it is a valid org name (letters, digits, ``_ . -``; at most 64), else :class:`InvalidInput`."""
    if not isinstance(org, str) or not _ORG.fullmatch(org):
        raise InvalidInput(
            f"org {org!r} is not a valid org name (1-64 letters, digits, '_', '.', '-'; starting alphanumeric)"
        )
    return org


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_id_of(token: str) -> str:
    """The kid a presented key is filed under."""
    if token.startswith("sw_") and token.count("_") >= 2:
        kid = token.split("_", 2)[1]
        if kid.isalnum() and 8 <= len(kid) <= 32:
            return kid
    return "h" + _hash(token)[:15]


@dataclass
class ApiKey:
    """What the store keeps about one key (never the key itself)."""

    kid: str
    hash: str
    org: str
    roles: list[str]
    name: str = ""
    subject: str = ""
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    created_by: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """Everything but the hash (what listings show)."""
        d = asdict(self)
        d.pop("hash")
        return d

    def active(self, now: float) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class KeyStore:
    """Create, verify, list and revoke API keys in the store.

    With an ``audit`` log (a :class:`stalwart.governance.AuditLog`), every creation and revocation
    made with an ``actor`` is recorded as ``key.create`` / ``key.revoke`` under the key's org.
    """

    def __init__(self, store: Any, clock: Any = time.time, audit: Any = None) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit

    async def create(
        self,
        *,
        org: str,
        roles: list[str],
        name: str = "",
        subject: str | None = None,
        expires_at: float | None = None,
        created_by: str = "",
        token: str | None = None,
        actor: str | None = None,
    ) -> tuple[str, ApiKey]:
        """Return ``(key, record)``; the key is shown to the caller once and never stored."""
        check_org(org)
        bad = [r for r in roles if r not in ROLES]
        if bad or not roles:
            raise InvalidInput(f"roles must be a non-empty subset of {', '.join(ROLES)}; got {roles}")
        if token is None:
            kid = secrets.token_hex(6)
            token = f"sw_{kid}_{secrets.token_urlsafe(32)}"
        kid = key_id_of(token)
        rec = ApiKey(
            kid=kid,
            hash=_hash(token),
            org=org,
            roles=sorted(set(roles)),
            name=name,
            subject=subject or f"key:{kid}",
            created_at=self.clock(),
            expires_at=expires_at,
            created_by=created_by,
        )
        await self.store.kv_put(KEYS_NS, kid, json.dumps(asdict(rec)).encode())
        if actor is not None and self.audit is not None:
            await self.audit.record(
                "key.create",
                actor=actor,
                org_id=org,
                action="create",
                resource=f"key:{kid}",
                user_id=created_by,
                details={"roles": rec.roles, "org": org, "subject": rec.subject},
            )
        return token, rec

    async def get(self, kid: str) -> ApiKey | None:
        """The record filed under ``kid`` (active or not), or ``None``."""
        raw = await self.store.kv_get(KEYS_NS, kid)
        return ApiKey(**json.loads(raw)) if raw is not None else None

    async def verify(self, token: str) -> ApiKey | None:
        """The active key record for ``token``, or ``None`` (unknown, wrong, expired, revoked)."""
        if not token or len(token) > 512:
            return None
        rec = await self.get(key_id_of(token))
        if rec is None or not hmac.compare_digest(rec.hash, _hash(token)):
            return None
        return rec if rec.active(self.clock()) else None

    async def list(self, org: str | None = None) -> list[ApiKey]:
        """Every key (of ``org`` when given), oldest first, revoked ones included."""
        out = []
        for kid in await self.store.kv_keys(KEYS_NS):
            rec = await self.get(kid)
            if rec is not None and (org is None or rec.org == org):
                out.append(rec)
        return sorted(out, key=lambda r: r.created_at)

    async def orgs(self) -> builtins.list[str]:
        """The orgs that hold at least one key."""
        return sorted({k.org for k in await self.list()})

    async def revoke(self, kid: str, *, actor: str | None = None, user_id: str = "") -> ApiKey | None:
        """Revoke ``kid`` (idempotent); ``None`` when no such key exists."""
        rec = await self.get(kid)
        if rec is None:
            return None
        if rec.revoked_at is None:
            rec.revoked_at = self.clock()
            await self.store.kv_put(KEYS_NS, kid, json.dumps(asdict(rec)).encode())
            if actor is not None and self.audit is not None:
                await self.audit.record(
                    "key.revoke",
                    actor=actor,
                    org_id=rec.org,
                    action="revoke",
                    resource=f"key:{kid}",
                    user_id=user_id,
                    details={"org": rec.org},
                )
        return rec

    async def any(self) -> bool:
        """Whether any key was ever created."""
        return bool(await self.store.kv_keys(KEYS_NS))
