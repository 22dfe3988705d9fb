"""Two SQLite databases in one folder, the demo run on each, the default ``anchor_url``: each audit
log anchors under its own identity, so `audit verify` passes on both and names the first bad entry
of a tampered copy of either (before anchors were keyed by the log, the second demo's checkpoint
collided with the first's and an untouched database read as TAMPERED)."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STALWART_MASTER_KEY": base64.b64encode(b"q" * 32).decode()}
    for var in ("STALWART_DB", "STALWART_GOVERNANCE__ANCHOR_URL", "STALWART_CONFIG"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "stalwart.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def _tamper_copy(src: Path, dst: Path) -> str:
    """Copy ``src``, flip one byte of its 8th audit entry (dropping the triggers first, as an
    attacker with file access can); returns that entry's event id."""
    shutil.copy(src, dst)
    db = sqlite3.connect(dst)
    seq, body = db.execute("SELECT seq, body FROM audit_log ORDER BY seq LIMIT 1 OFFSET 7").fetchone()
    flipped = body.replace('"actor":"', '"actor":"X', 1)
    assert flipped != body
    for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_log'").fetchall():
        db.execute(f'DROP TRIGGER "{t}"')
    db.execute("UPDATE audit_log SET body = ? WHERE seq = ?", (flipped, seq))
    db.commit()
    event_id = db.execute("SELECT json_extract(?, '$.event_id')", (body,)).fetchone()[0]
    db.close()
    return str(event_id)


def test_two_databases_in_one_folder_verify_apart_and_tampered_copies_fail(tmp_path: Path) -> None:
    for name in ("one", "two"):
        demo = _cli("--db", f"sqlite:///{name}.db", "demo", "--model", "local", cwd=tmp_path)
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    logs = sorted(p.name for p in (tmp_path / ".stalwart" / "audit-checkpoints").iterdir())
    assert len(logs) == 2, logs  # one anchor folder per audit log, in the shared default location

    for name in ("one", "two"):
        ok = _cli("--db", f"sqlite:///{name}.db", "audit", "verify", cwd=tmp_path)
        assert ok.returncode == 0, f"{name}: {ok.stdout}{ok.stderr}"
        assert "intact" in ok.stdout and "warning" not in ok.stderr

    for name in ("one", "two"):
        event_id = _tamper_copy(tmp_path / f"{name}.db", tmp_path / f"{name}-tampered.db")
        bad = _cli("--db", f"sqlite:///{name}-tampered.db", "audit", "verify", cwd=tmp_path)
        assert bad.returncode == 1, f"{name}: {bad.stdout}{bad.stderr}"
        said = " ".join(bad.stderr.split())  # the console wraps long lines
        assert "TAMPERED" in said and f"first bad entry {event_id} (seq 7)" in said
        assert "entry 7 does not match its hash" in said
        # the originals are untouched and still verify after their copies were checked
        again = _cli("--db", f"sqlite:///{name}.db", "audit", "verify", cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
