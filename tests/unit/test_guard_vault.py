"""The PII vault against the real SQLite store: envelope encryption, rehydration, erasure."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import stalwart as sw
from stalwart.guard import Guard, PlaceholderMap, Vault
from stalwart.guard._vault import NAMESPACE
from stalwart.settings import GuardSettings
from stalwart.store import open_store

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[object]:
    s = await open_store(f"sqlite:///{tmp_path / 'vault.db'}")
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> GuardSettings:
    monkeypatch.setenv("TEST_VAULT_KEY", KEY)
    return GuardSettings(master_key_env="TEST_VAULT_KEY")


async def test_round_trip_and_rehydrate(store, settings: GuardSettings) -> None:
    vault = Vault(store, settings=settings)
    red = Guard(settings).redact("Reply to ada@example.com about card 4111 1111 1111 1111")
    await vault.put("acme", red.mapping, scope="run-1")
    assert await vault.get("acme", "{{EMAIL_1}}", scope="run-1") == "ada@example.com"
    assert await vault.rehydrate("send to {{EMAIL_1}}", "acme", scope="run-1") == "send to ada@example.com"
    args = await vault.rehydrate_args({"to": "{{EMAIL_1}}", "cc": ["{{EMAIL_9}}"]}, "acme", scope="run-1")
    assert args == {"to": "ada@example.com", "cc": ["{{EMAIL_9}}"]}
    resumed = await vault.placeholders("acme", scope="run-1")
    assert isinstance(resumed, PlaceholderMap)
    assert Guard(settings).redact("bob@example.com", resumed).text == "{{EMAIL_2}}"


async def test_values_are_encrypted_at_rest(store, settings: GuardSettings) -> None:
    await Vault(store, settings=settings).put("acme", {"{{EMAIL_1}}": "ada@example.com"}, scope="r")
    for name in await store.kv_keys(NAMESPACE):
        raw = await store.kv_get(NAMESPACE, name)
        assert b"ada@example.com" not in raw
        assert KEY.encode() not in raw


async def test_orgs_and_scopes_are_separate(store, settings: GuardSettings) -> None:
    vault = Vault(store, settings=settings)
    await vault.put("acme", {"{{EMAIL_1}}": "ada@example.com"}, scope="r1")
    assert await vault.get("globex", "{{EMAIL_1}}", scope="r1") is None
    assert await vault.get("acme", "{{EMAIL_1}}", scope="r2") is None


async def test_erase_subject_crypto_shreds(store, settings: GuardSettings) -> None:
    vault = Vault(store, settings=settings)
    await vault.put("acme", {"{{EMAIL_1}}": "ada@example.com"}, scope="r1", subject="cust-42")
    await vault.put("acme", {"{{EMAIL_2}}": "other@example.com"}, scope="r1", subject="cust-7")
    # A copy of the sealed entry, as a backup would hold it.
    backup = await store.kv_get(NAMESPACE, "e/acme/r1/{{EMAIL_1}}")
    assert await vault.erase_subject("acme", "cust-42") == 1
    assert await vault.get("acme", "{{EMAIL_1}}", scope="r1") is None
    assert await vault.get("acme", "{{EMAIL_2}}", scope="r1") == "other@example.com"
    await store.kv_put(NAMESPACE, "e/acme/r1/{{EMAIL_1}}", backup)  # restoring the backup
    assert await Vault(store, settings=settings).get("acme", "{{EMAIL_1}}", scope="r1") is None
    assert await vault.erase_subject("acme", "cust-42") == 0


async def test_missing_master_key_fails_closed(store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STALWART_MASTER_KEY", raising=False)
    vault = Vault(store, settings=GuardSettings())
    with pytest.raises(sw.ConfigError, match="STALWART_MASTER_KEY"):
        await vault.put("acme", {"{{EMAIL_1}}": "ada@example.com"})
    assert await store.kv_keys(NAMESPACE) == []


async def test_key_file_and_wrong_key(store, tmp_path: Path, settings: GuardSettings) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(KEY)
    await Vault(
        store, settings=GuardSettings(master_key_env="UNSET_VAR_X", master_key_file=str(key_file))
    ).put("acme", {"{{EMAIL_1}}": "ada@example.com"})
    assert await Vault(store, settings=settings).get("acme", "{{EMAIL_1}}") == "ada@example.com"
    wrong = Vault(store, master_key=os.urandom(32))
    with pytest.raises(sw.ConfigError, match="master key"):
        await wrong.get("acme", "{{EMAIL_1}}")


async def test_moved_ciphertext_does_not_open(store, settings: GuardSettings) -> None:
    vault = Vault(store, settings=settings)
    await vault.put("acme", {"{{EMAIL_1}}": "ada@example.com", "{{EMAIL_2}}": "bob@example.com"})
    sealed = await store.kv_get(NAMESPACE, "e/acme/default/{{EMAIL_1}}")
    await store.kv_put(NAMESPACE, "e/acme/default/{{EMAIL_2}}", sealed)
    with pytest.raises(sw.ConfigError):
        await vault.get("acme", "{{EMAIL_2}}")
