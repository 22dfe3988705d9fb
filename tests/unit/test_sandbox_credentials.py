"""Credential broker against the real embedded (SQLite) store, with an injected clock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stalwart.errors import CredentialError
from stalwart.sandbox import CredentialBroker, verify_credential
from stalwart.sandbox._context import use_credential
from stalwart.store import open_store


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[object]:
    s = await open_store(f"sqlite:///{tmp_path}/creds.db", migrate=True)
    yield s
    await s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def broker(store, clock) -> AsyncIterator[CredentialBroker]:
    b = CredentialBroker(store, clock=clock, refresh_s=0)
    yield b
    await b.stop()


def reason(exc: pytest.ExceptionInfo[CredentialError]) -> str:
    return str(exc.value.details["reason"])


async def test_mint_carries_exactly_the_bound_scopes(broker: CredentialBroker, clock: Clock) -> None:
    token, jti = await broker.mint("run-1", "acme", "lookup_order", ["read:orders"], ttl_s=45)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["scope"] == ["read:orders:org:acme"]
    assert payload["org"] == "acme" and payload["jti"] == jti and payload["sub"] == "lookup_order"
    assert payload["exp"] == clock.t + 45
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    claims = await broker.verify(token, "read:orders", org="acme")
    assert claims.scopes == ("read:orders:org:acme",) and claims.run_id == "run-1"
    assert (await broker.verify(token, "read:orders:org:acme")).jti == jti


async def test_expiry_uses_the_injected_clock(broker: CredentialBroker, clock: Clock) -> None:
    token, _ = await broker.mint("run-1", "acme", "t", ["read:orders"], ttl_s=30)
    clock.t += 29.9
    await broker.verify(token, "read:orders", org="acme")
    clock.t += 0.1
    with pytest.raises(CredentialError) as exc:
        await broker.verify(token, "read:orders", org="acme")
    assert reason(exc) == "expired"


async def test_scope_mismatch(broker: CredentialBroker) -> None:
    token, _ = await broker.mint("run-1", "acme", "t", ["read:orders"])
    with pytest.raises(CredentialError) as exc:
        await broker.verify(token, "write:payments", org="acme")
    assert reason(exc) == "scope"


async def test_unbound_scope_without_org_is_refused(broker: CredentialBroker) -> None:
    token, _ = await broker.mint("run-1", "acme", "t", ["read:orders"])
    with pytest.raises(CredentialError) as exc:
        await broker.verify(token, "read:orders")
    assert reason(exc) == "scope"


@pytest.mark.parametrize("scope,org", [("read:orders", "globex"), ("read:orders:org:globex", None)])
async def test_cross_org_use(broker: CredentialBroker, scope: str, org: str | None) -> None:
    token, _ = await broker.mint("run-1", "acme", "t", ["read:orders"])
    with pytest.raises(CredentialError) as exc:
        await broker.verify(token, scope, org=org)
    assert reason(exc) == "org"


async def test_revocation_of_one_jti(broker: CredentialBroker) -> None:
    token, jti = await broker.mint("run-1", "acme", "t", ["read:orders"])
    other, _ = await broker.mint("run-1", "acme", "t", ["read:orders"])
    await broker.revoke(jti)
    with pytest.raises(CredentialError) as exc:
        await broker.verify(token, "read:orders", org="acme")
    assert reason(exc) == "revoked"
    await broker.verify(other, "read:orders", org="acme")


async def test_epoch_bump_in_one_worker_revokes_everywhere(store, clock: Clock) -> None:
    worker_a = CredentialBroker(store, clock=clock, refresh_s=0)
    worker_b = CredentialBroker(store, clock=clock, refresh_s=0)
    before, _ = await worker_b.mint("run-1", "acme", "t", ["read:orders"])
    await worker_a.verify(before, "read:orders", org="acme")  # same signing key from the store
    assert await worker_a.bump_epoch() == 1
    with pytest.raises(CredentialError) as exc:
        await worker_b.verify(before, "read:orders", org="acme")
    assert reason(exc) == "epoch"
    after, _ = await worker_b.mint("run-2", "acme", "t", ["read:orders"])
    await worker_a.verify(after, "read:orders", org="acme")


async def test_cached_state_is_refreshed_after_refresh_s(store, clock: Clock) -> None:
    worker_a = CredentialBroker(store, clock=clock, refresh_s=0)
    worker_b = CredentialBroker(store, clock=clock, refresh_s=3600)
    token, _ = await worker_b.mint("run-1", "acme", "t", ["read:orders"])
    await worker_a.bump_epoch()
    worker_b.verify_cached(token, "read:orders", org="acme")  # stale by design until refreshed
    await worker_b.refresh()
    with pytest.raises(CredentialError):
        worker_b.verify_cached(token, "read:orders", org="acme")


async def test_signature_from_another_key(store, clock: Clock) -> None:
    forger = CredentialBroker(store, clock=clock, signing_key=Ed25519PrivateKey.generate())
    real = CredentialBroker(store, clock=clock, refresh_s=0)
    token, _ = await forger.mint("run-1", "acme", "t", ["read:orders"])
    with pytest.raises(CredentialError) as exc:
        await real.verify(token, "read:orders", org="acme")
    assert reason(exc) == "signature"


async def test_per_org_mint_quota(store, clock: Clock) -> None:
    b = CredentialBroker(store, clock=clock, mint_quota_per_min=3, refresh_s=0)
    clock.t = 60 * 1000.0
    for _ in range(3):
        await b.mint("run-1", "acme", "t", ["read:orders"])
    with pytest.raises(CredentialError) as exc:
        await b.mint("run-1", "acme", "t", ["read:orders"])
    assert reason(exc) == "quota" and exc.value.retryable and exc.value.retry_after == 60
    await b.mint("run-1", "globex", "t", ["read:orders"])
    clock.t += 60
    await b.mint("run-1", "acme", "t", ["read:orders"])


async def test_mint_metric_counts_minted_and_denied(store, clock: Clock) -> None:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    b = CredentialBroker(store, clock=clock, mint_quota_per_min=1, refresh_s=0, registry=reg)
    await b.mint("run-1", "acme", "t", ["read:orders"])
    with pytest.raises(CredentialError):
        await b.mint("run-1", "acme", "t", ["read:orders"])
    assert reg.get_sample_value("stalwart_credential_mints_total", {"org": "acme", "result": "minted"}) == 1
    assert reg.get_sample_value("stalwart_credential_mints_total", {"org": "acme", "result": "denied"}) == 1


@pytest.mark.parametrize("ttl", [0, 301])
async def test_ttl_bounds(broker: CredentialBroker, ttl: float) -> None:
    with pytest.raises(CredentialError):
        await broker.mint("run-1", "acme", "t", ["read:orders"], ttl_s=ttl)


@pytest.mark.parametrize("scope", ["read:orders:org:evil", "READ", ""])
async def test_scopes_cannot_smuggle_an_org(broker: CredentialBroker, scope: str) -> None:
    with pytest.raises(CredentialError):
        await broker.mint("run-1", "acme", "t", [scope])


async def test_verify_credential_uses_the_installed_broker(store) -> None:
    b = CredentialBroker(store, refresh_s=0)
    async with b:
        token, _ = await b.mint("run-1", "acme", "t", ["read:orders"])
        assert verify_credential(token, "read:orders", org="acme").org == "acme"
        with pytest.raises(CredentialError):
            verify_credential(token, "read:orders", org="globex")
        await b.bump_epoch()
        with pytest.raises(CredentialError):
            verify_credential(token, "read:orders", org="acme")


async def test_verify_credential_offline_from_a_snapshot(store) -> None:
    b = CredentialBroker(store, refresh_s=0)
    token, jti = await b.mint("run-1", "acme", "t", ["read:orders"])
    with use_credential(token, b.snapshot()):
        assert verify_credential(token, "read:orders:org:acme").jti == jti
    await b.revoke(jti, expires_at=time.time() + 60)
    with use_credential(token, b.snapshot()), pytest.raises(CredentialError) as exc:
        verify_credential(token, "read:orders:org:acme")
    assert reason(exc) == "revoked"
    await b.stop()
