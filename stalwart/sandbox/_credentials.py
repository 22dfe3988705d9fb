"""The credential broker: one short-lived, scoped Ed25519 JWT per tool invocation.

A credential carries exactly the tool's declared scopes bound to the run's org
(``read:orders`` -> ``read:orders:org:acme``), a ``jti``, an expiry 30–60 s out and the revocation
epoch it was minted under. It is invalid once expired, once its ``jti`` is revoked, or once the
global epoch (bumped by the kill switch) moves past its own. Revocations and the epoch live in the
store, so every worker process sees them; brokers re-read them at most ``refresh_s`` apart.

Only a credential's ``jti`` (or a hash) is ever logged, never the token.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

# Imported with this module, not on the first verification (~120 ms): a sandboxed tool module that
# imports ``verify_credential`` at its top pays this while its pooled sandbox warms up, not in a call.
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from stalwart.errors import CredentialError

if TYPE_CHECKING:
    import asyncio

__all__ = ["Claims", "CredentialBroker", "bind_scope", "verify_credential"]

NAMESPACE = "credentials"
ISSUER = "stalwart"
_KEY = "signing_key"
_REVOKED = "revoked:"
_EPOCH = "epoch"
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9_.-]*(:[a-z0-9_.*-]+)*$")
_ORG_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

_registered: CredentialBroker | None = None


@dataclass(frozen=True)
class Claims:
    """What a verified credential says."""

    jti: str
    org: str
    run_id: str
    tool: str
    scopes: tuple[str, ...]
    expires_at: float
    epoch: int


@dataclass
class _State:
    public_key: bytes
    epoch: int = 0
    revoked: frozenset[str] = field(default_factory=frozenset)
    read_at: float = float("-inf")


def bind_scope(scope: str, org: str) -> str:
    """``bind_scope("read:orders", "acme") == "read:orders:org:acme"``."""
    if not _SCOPE_RE.match(scope) or ":org:" in f":{scope}:":
        raise CredentialError(f"invalid scope {scope!r}", details={"reason": "scope"})
    if not _ORG_RE.match(org):
        raise CredentialError(f"invalid org {org!r}", details={"reason": "org"})
    return f"{scope}:org:{org}"


def _fail(reason: str, message: str) -> CredentialError:
    return CredentialError(message, retryable=False, details={"reason": reason})


def _decode(token: str, public_key: bytes) -> dict[str, Any]:
    try:
        return dict(
            jwt.decode(
                token,
                Ed25519PublicKey.from_public_bytes(public_key),
                algorithms=["EdDSA"],
                issuer=ISSUER,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "require": ["exp", "jti", "scope", "org", "epoch", "iss"],
                },
            )
        )
    except jwt.InvalidSignatureError as exc:
        raise _fail("signature", "credential signature is invalid") from exc
    except jwt.PyJWTError as exc:
        raise _fail("malformed", f"credential is malformed: {exc}") from exc


def check_claims(
    payload: dict[str, Any], scope: str, org: str | None, *, now: float, epoch: int, revoked: frozenset[str]
) -> Claims:
    """Pure checks after the signature: expiry, epoch, revocation, org and scope."""
    if now >= float(payload["exp"]):
        raise _fail("expired", "credential has expired")
    if int(payload["epoch"]) < epoch:
        raise _fail("epoch", "credential was minted before the current revocation epoch")
    if payload["jti"] in revoked:
        raise _fail("revoked", "credential has been revoked")
    if ":org:" in scope:
        bound = scope
        scope_org = scope.rsplit(":org:", 1)[1]
        if org is not None and org != scope_org:
            raise _fail("org", f"scope names org {scope_org!r} but org {org!r} was asked for")
        org = scope_org
    elif org is None:
        raise _fail("scope", "pass a bound scope ('read:orders:org:acme') or org=")
    else:
        bound = bind_scope(scope, org)
    if payload["org"] != org:
        raise _fail("org", f"credential belongs to another org, not {org!r}")
    scopes = tuple(payload["scope"])
    if bound not in scopes:
        raise _fail("scope", f"credential does not grant {bound!r}")
    return Claims(
        jti=str(payload["jti"]),
        org=str(payload["org"]),
        run_id=str(payload.get("run", "")),
        tool=str(payload.get("sub", "")),
        scopes=scopes,
        expires_at=float(payload["exp"]),
        epoch=int(payload["epoch"]),
    )


def prime() -> None:
    """Sign and verify one throwaway token with a throwaway key: the libraries' one-time set-up
    (several milliseconds on the first verification) is done while a pooled sandbox warms up,
    before it knows any real credential."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    jwt.decode(jwt.encode({"iss": ISSUER}, key, algorithm="EdDSA"), key.public_key(), algorithms=["EdDSA"])


def verify_credential(token: str, scope: str, *, org: str | None = None) -> Claims:
    """Check a credential's signature, expiry, scope, org and revocation; return its claims.

    Inside a sandbox it uses the verifier snapshot that came with the invocation (no database
    there). Elsewhere it uses the broker registered in this process (:meth:`CredentialBroker.install`),
    whose revocation state is at most ``refresh_s`` old while its watcher runs. Raises
    :class:`~stalwart.errors.CredentialError` with ``details["reason"]`` in ``signature``,
    ``malformed``, ``expired``, ``epoch``, ``revoked``, ``org`` or ``scope``.
    """
    from stalwart.sandbox._context import current_verifier

    snap = current_verifier()
    if snap is not None:
        payload = _decode(token, base64.b64decode(snap["public_key"]))
        return check_claims(
            payload,
            scope,
            org,
            now=time.time(),
            epoch=int(snap["epoch"]),
            revoked=frozenset(snap.get("revoked", ())),
        )
    broker = _registered
    if broker is None or broker._state is None:
        raise CredentialError(
            "no credential verifier: install a CredentialBroker in this process",
            details={"reason": "no_verifier"},
        )
    return broker.verify_cached(token, scope, org=org)


class CredentialBroker:
    """Mints, verifies and revokes per-invocation credentials.

    ``store`` needs the shared-state methods of :class:`stalwart.store.Store` (``kv_*``,
    ``counter_*``). The Ed25519 signing key is ``signing_key`` (an ``Ed25519PrivateKey`` or 32 raw
    bytes) or else generated once and kept in the store (namespace ``credentials``), so every worker
    signs and verifies with the same key.
    """

    def __init__(
        self,
        store: Any,
        *,
        clock: Callable[[], float] = time.time,
        signing_key: Any = None,
        mint_quota_per_min: int = 600,
        refresh_s: float = 0.5,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        registry: Any = None,
    ) -> None:
        import asyncio
        self.store = store
        self.clock = clock
        self.mint_quota_per_min = mint_quota_per_min
        self.refresh_s = refresh_s
        self._new_id = new_id
        self._given_key = signing_key
        self._private: Any = None
        self._state: _State | None = None
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._metrics = _mint_metrics(registry)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> Self:
        """Load the key and state, register for :func:`verify_credential`, and keep state fresh."""
        import asyncio

        await self.refresh()
        self.install()
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch())
        return self

    async def stop(self) -> None:
        """Stop the watcher and unregister."""
        import asyncio

        global _registered
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if _registered is self:
            _registered = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def install(self) -> None:
        """Make this broker the one :func:`verify_credential` uses outside a sandbox."""
        global _registered
        _registered = self

    async def _watch(self) -> None:
        import asyncio
        while True:
            await asyncio.sleep(self.refresh_s)
            with contextlib.suppress(Exception):
                await self.refresh()

    # -- state ------------------------------------------------------------------------------
    async def _load_key(self) -> Any:
        import asyncio
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        if self._private is not None:
            return self._private
        given = self._given_key
        if given is not None:
            self._private = (
                given
                if isinstance(given, Ed25519PrivateKey)
                else Ed25519PrivateKey.from_private_bytes(bytes(given))
            )
            return self._private
        raw = await self.store.kv_get(NAMESPACE, _KEY)
        if raw is None:
            first = await self.store.counter_add(NAMESPACE, "signing_key_election", 1, self.clock()) == 1
            for _ in range(0 if first else 100):
                raw = await self.store.kv_get(NAMESPACE, _KEY)
                if raw is not None:
                    break
                await asyncio.sleep(0.05)
            if raw is None:
                fresh = Ed25519PrivateKey.generate().private_bytes(
                    Encoding.Raw, PrivateFormat.Raw, NoEncryption()
                )
                await self.store.kv_put(NAMESPACE, _KEY, fresh)
                raw = await self.store.kv_get(NAMESPACE, _KEY) or fresh
        self._private = Ed25519PrivateKey.from_private_bytes(raw)
        return self._private

    async def refresh(self) -> None:
        """Re-read the epoch and the revocation list from the store."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        async with self._lock:
            key = await self._load_key()
            epoch = int(await self.store.counter_get(NAMESPACE, _EPOCH))
            keys = await self.store.kv_keys(NAMESPACE, _REVOKED)
            self._state = _State(
                public_key=key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
                epoch=epoch,
                revoked=frozenset(k[len(_REVOKED) :] for k in keys),
                read_at=time.monotonic(),
            )
        if _registered is None:
            self.install()

    async def _fresh_state(self) -> _State:
        if self._state is None or time.monotonic() - self._state.read_at >= self.refresh_s:
            await self.refresh()
        assert self._state is not None
        return self._state

    def snapshot(self) -> dict[str, Any]:
        """What a sandbox needs to verify credentials offline: public key, epoch, revoked jtis."""
        if self._state is None:
            raise CredentialError("broker not started: await broker.refresh() first")
        return {
            "public_key": base64.b64encode(self._state.public_key).decode(),
            "epoch": self._state.epoch,
            "revoked": sorted(self._state.revoked),
        }

    # -- operations -------------------------------------------------------------------------
    async def mint(
        self, run_id: str, org: str, tool: str, scopes: Sequence[str], ttl_s: float = 45
    ) -> tuple[str, str]:
        """Mint a credential for one invocation; returns ``(token, jti)``.

        Raises :class:`CredentialError` (retryable, with ``retry_after``) when the org's mint quota
        for the current minute is spent.
        """
        if not 1 <= ttl_s <= 300:
            raise CredentialError(f"ttl_s must be within 1..300 s, got {ttl_s}", details={"reason": "ttl"})
        bound = [bind_scope(s, org) for s in scopes]
        state = await self._fresh_state()
        now = self.clock()
        minute = int(now // 60)
        count = await self.store.counter_add(NAMESPACE, f"mint:{org}:{minute}", 1, now)
        if count > self.mint_quota_per_min:
            self._metrics("denied", org)
            raise CredentialError(
                f"org {org!r} exceeded {self.mint_quota_per_min} credential mints per minute",
                retryable=True,
                retry_after=60 - (now % 60),
                details={"reason": "quota", "org": org},
            )
        jti = self._new_id()
        payload = {
            "iss": ISSUER,
            "sub": tool,
            "org": org,
            "run": run_id,
            "scope": bound,
            "jti": jti,
            "iat": int(now),
            "exp": now + ttl_s,
            "epoch": state.epoch,
        }
        token = jwt.encode(payload, await self._load_key(), algorithm="EdDSA")
        self._metrics("minted", org)
        return token, jti

    def verify_cached(self, token: str, scope: str, *, org: str | None = None) -> Claims:
        """Verify against the state last read from the store (synchronous)."""
        if self._state is None:
            raise CredentialError("broker not started: await broker.refresh() first")
        payload = _decode(token, self._state.public_key)
        return check_claims(
            payload, scope, org, now=self.clock(), epoch=self._state.epoch, revoked=self._state.revoked
        )

    async def verify(self, token: str, scope: str, *, org: str | None = None) -> Claims:
        """Verify against state at most ``refresh_s`` old."""
        await self._fresh_state()
        return self.verify_cached(token, scope, org=org)

    async def revoke(self, jti: str, *, expires_at: float | None = None) -> None:
        """Revoke one credential everywhere (the entry may expire when the credential would)."""
        await self.store.kv_put(NAMESPACE, _REVOKED + jti, b"1", expires_at=expires_at)
        await self.refresh()

    async def bump_epoch(self) -> int:
        """Invalidate every credential minted so far, in every process; returns the new epoch."""
        epoch = int(await self.store.counter_add(NAMESPACE, _EPOCH, 1, self.clock()))
        await self.refresh()
        return epoch


_metric_cache: dict[int, Any] = {}


def _mint_metrics(registry: Any) -> Callable[[str, str], None]:
    try:
        from prometheus_client import REGISTRY, Counter
    except ImportError:  # pragma: no cover - prometheus_client is a dependency
        return lambda result, org: None
    reg = registry if registry is not None else REGISTRY
    counter = _metric_cache.get(id(reg))
    if counter is None:
        counter = Counter(
            "stalwart_credential_mints",
            "Credentials minted (or refused by quota), by org",
            ["org", "result"],
            registry=reg,
        )
        _metric_cache[id(reg)] = counter
    return lambda result, org: counter.labels(org=org, result=result).inc()
