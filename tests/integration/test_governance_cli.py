"""Governance end to end through the CLI: audit verify on a real run's database and on tampered copies."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import stalwart as sw


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STALWART_MASTER_KEY": base64.b64encode(b"q" * 32).decode()}
    env.pop("STALWART_DB", None)
    return subprocess.run([sys.executable, "-m", "stalwart.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _make_runs(db: str, checkpoints: Path) -> None:
    async def go() -> None:
        settings = sw.load_settings(db=db)
        settings = settings.model_copy(update={"governance": settings.governance.model_copy(
            update={"checkpoint_dir": str(checkpoints)})})
        app = sw.App("audited", settings=settings)

        @app.tool(sandbox="none", mutating=True)
        def charge(cents: int) -> int:
            return cents

        @app.workflow(name="pay", version="1", tools=[charge])
        async def pay(ctx: sw.Context, cents: int) -> int:
            return await ctx.tool(charge, cents=cents)

        async with app.worker(concurrency=4):
            for i in range(5):
                await app.result(await app.start("pay", 100 + i, org="acme", user="u1"), timeout=30)
        await app.close()  # signs a final checkpoint over the head

    asyncio.run(go())


def _tamper(path: Path, sql: str) -> None:
    db = sqlite3.connect(path)
    triggers = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_log'")]
    for t in triggers:  # an attacker with file access can drop the append-only triggers first
        db.execute(f'DROP TRIGGER "{t}"')
    db.execute(sql)
    db.commit()
    db.close()


def test_audit_verify_passes_then_names_a_changed_byte_and_a_deleted_tail(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    checkpoints = tmp_path / "anchors"
    _make_runs(f"sqlite:///{db}", checkpoints)
    ok = _cli("--db", f"sqlite:///{db}", "audit", "verify", "--checkpoint-dir", str(checkpoints), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert "intact" in ok.stdout

    changed = tmp_path / "changed.db"
    shutil.copy(db, changed)
    victim = sqlite3.connect(changed).execute("SELECT seq, body FROM audit_log ORDER BY seq LIMIT 1 OFFSET 7").fetchone()
    body = victim[1]
    flipped = body.replace('"agent:', '"agenT:', 1)  # one byte, still valid JSON
    assert flipped != body and len(flipped) == len(body)
    _tamper(changed, f"UPDATE audit_log SET body = '{flipped}' WHERE seq = {victim[0]}")
    bad = _cli("--db", f"sqlite:///{changed}", "audit", "verify", "--checkpoint-dir", str(checkpoints), cwd=tmp_path)
    assert bad.returncode == 1
    assert "TAMPERED" in bad.stderr and "first bad entry" in bad.stderr

    truncated = tmp_path / "truncated.db"
    shutil.copy(db, truncated)
    _tamper(truncated, "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
    cut = _cli("--db", f"sqlite:///{truncated}", "audit", "verify", "--checkpoint-dir", str(checkpoints), cwd=tmp_path)
    assert cut.returncode == 1, cut.stdout
    assert "TAMPERED" in cut.stderr


def test_audit_log_is_append_only_in_the_database(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    _make_runs(f"sqlite:///{db}", tmp_path / "anchors")
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError):
        conn.execute("UPDATE audit_log SET body = 'x' WHERE seq = 0")
    with pytest.raises(sqlite3.DatabaseError):
        conn.execute("DELETE FROM audit_log WHERE seq = 0")
    kinds = {r[0] for r in conn.execute("SELECT json_extract(body, '$.event_type') FROM audit_log")}
    assert {"run.started", "policy.completed", "tool.completed", "run.completed"} <= kinds
