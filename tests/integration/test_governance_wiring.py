"""One governance, wired once: Python, the HTTP API and the CLI share the app's audit log (signing key,
anchor) and its kill switch (holding the credential broker).

Each entry point engages the kill switch and a credential minted before stops verifying, checked
through the broker's public API from a broker of its own (another process's view of the store).
With ``governance.signing_key_file`` set, ``GET /v1/audit/verify`` and ``stalwart audit verify``
check the checkpoints with that key and agree, on an intact log and on a tampered one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import stalwart as sw
from stalwart.errors import CredentialError
from stalwart.sandbox import CredentialBroker
from stalwart.store import open_store

MASTER = base64.b64encode(b"m" * 32).decode()


async def _mint(db: str) -> str:
    """A credential minted by a broker of its own (as a worker would), before anything is engaged."""
    store = await open_store(db, migrate=True)
    try:
        broker = CredentialBroker(store)
        token, _ = await broker.mint("run-1", "acme", "lookup_order", ["read:orders"], ttl_s=300)
        await broker.verify(token, "read:orders", org="acme")  # valid now
        return token
    finally:
        await store.close()


async def _revoked(db: str, token: str) -> str:
    """The reason a fresh broker on the same store gives for refusing ``token`` ('' if it verifies)."""
    store = await open_store(db, migrate=True)
    try:
        broker = CredentialBroker(store)
        try:
            await broker.verify(token, "read:orders", org="acme")
        except CredentialError as exc:
            return str((exc.details or {}).get("reason", exc.message))
        return ""
    finally:
        await store.close()


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "STALWART_MASTER_KEY": MASTER, **(env or {})}
    full.pop("STALWART_DB", None)
    return subprocess.run([sys.executable, "-m", "stalwart.cli", *args], check=False, cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.asyncio
async def test_kill_switch_from_python_revokes_credentials(db_url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    token = await _mint(db_url)
    app = sw.App("wired", db=db_url)
    try:
        gov = await app.governance()
        assert gov.kill_switch.broker is await app.credential_broker()  # the app's own broker
        record = await gov.kill_switch.engage("drill from python", "user:ops")
        assert record["credential_epoch"] >= 1
        with pytest.raises(CredentialError):  # the app's broker refuses it at once
            await (await app.credential_broker()).verify(token, "read:orders", org="acme")
    finally:
        await app.close()
    assert await _revoked(db_url, token) == "epoch"  # and so does every other process


def test_kill_switch_from_the_api_revokes_credentials(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.e2e.apps import build_app
    from tests.e2e.server import ServerThread

    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'api.db'}"
    token = asyncio.run(_mint(db))
    with ServerThread(build_app(db), worker=False) as server:
        ctx = server.api.state.stalwart
        admin, _ = server.call(ctx.keys.create(org="default", roles=["admin"], subject="ops"))
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/admin/kill-switch", json={"reason": "drill from the API"},
                       headers={"Authorization": f"Bearer {admin}"})
            assert r.status_code == 200, r.text
            assert r.json()["engaged"] is True
    assert asyncio.run(_revoked(db, token)) == "epoch"


def test_kill_switch_from_the_cli_revokes_credentials(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    token = asyncio.run(_mint(db))
    out = _cli("--db", db, "kill-switch", "engage", "--reason", "drill from the CLI", "--as", "ops", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert asyncio.run(_revoked(db, token)) == "epoch"


def _tamper(path: Path, seq: int) -> None:
    db = sqlite3.connect(path)
    for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_log'").fetchall():
        db.execute(f'DROP TRIGGER "{t}"')  # an attacker with file access drops the append-only triggers first
    db.execute("UPDATE audit_log SET body = replace(body, 'ops', 'xyz') WHERE seq = ?", (seq,))
    db.commit()
    db.close()


def _api_verify(db: str) -> dict[str, Any]:
    from tests.e2e.apps import build_app
    from tests.e2e.server import ServerThread

    with ServerThread(build_app(db), worker=False) as server:
        ctx = server.api.state.stalwart
        auditor, _ = server.call(ctx.keys.create(org="default", roles=["auditor"], subject="auditor"))
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.get("/v1/audit/verify", headers={"Authorization": f"Bearer {auditor}"})
            assert r.status_code == 200, r.text
            return dict(r.json())


def test_api_and_cli_audit_verify_agree_with_a_signing_key_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    key_file = tmp_path / "audit-signing.key"
    key_file.write_text(base64.b64encode(raw).decode())
    monkeypatch.setenv("STALWART_GOVERNANCE__SIGNING_KEY_FILE", str(key_file))
    monkeypatch.setenv("STALWART_MASTER_KEY", MASTER)
    monkeypatch.chdir(tmp_path)  # the anchor's default location is relative: keep it in this test's folder
    path = tmp_path / "signed.db"
    db = f"sqlite:///{path}"

    async def record() -> bytes:
        app = sw.App("signed", db=db)
        gov = await app.governance()
        for i in range(3):
            await gov.audit.record("settings.changed", actor="user:ops", resource=f"setting-{i}", org_id="default")
        await gov.audit.checkpoint()  # signed with the key file's key
        public = await gov.audit.public_key()
        await app.close()
        return bytes(public)

    public = asyncio.run(record())
    expected = Ed25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert public == expected  # the log signs with the key file's key, not a store-kept one

    api = _api_verify(db)
    cli = _cli("--db", db, "audit", "verify", "--json", cwd=tmp_path)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    cli_report = json.loads(cli.stdout)
    assert api["ok"] is True and cli_report["ok"] is True
    assert api["checked"] == cli_report["checked"] >= 3

    _tamper(path, 1)
    api = _api_verify(db)
    cli = _cli("--db", db, "audit", "verify", "--json", cwd=tmp_path)
    assert cli.returncode == 1
    cli_report = json.loads(cli.stdout)
    assert api["ok"] is False and cli_report["ok"] is False
    assert api["first_bad"]["seq"] == cli_report["first_bad_seq"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read the audit signing key"), ("not base64!", "not valid base64"),
     (base64.b64encode(b"short").decode(), "must decode to 32 bytes")],
)
def test_a_bad_signing_key_file_is_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    key_file = tmp_path / "audit.key"
    if content is not None:
        key_file.write_text(content)
    out = _cli("--db", f"sqlite:///{tmp_path / 'k.db'}", "audit", "verify", cwd=tmp_path,
               env={"STALWART_GOVERNANCE__SIGNING_KEY_FILE": str(key_file)})
    said = " ".join(out.stderr.split())  # the console wraps long lines
    assert out.returncode == 2 and message in said and "governance.signing_key_file" in said
    assert "Traceback" not in said
