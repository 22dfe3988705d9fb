"""``stalwart keys``: the local platform operator makes an org's first key, lists and revokes it.

The key is then used against a real server on the same database (SQLite and PostgreSQL), and the
creation and revocation are found in that org's audit log under the operator's identity.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.apps import build_app
from tests.e2e.server import ServerThread

ROOT = Path(__file__).resolve().parents[2]


def stalwart(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("STALWART_DB", None)
    env.pop("STALWART_APP", None)
    return subprocess.run(
        [sys.executable, "-m", "stalwart.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_operator_creates_lists_and_revokes_an_orgs_first_key(db_url: str, tmp_path: Path) -> None:
    made = stalwart("--db", db_url, "keys", "create", "--org", "acme", "--role", "admin", "--role", "auditor",
                    "--as", "user:ops-lead", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("sw_") and "\n" not in token  # only the key on stdout: KEY=$(stalwart keys create …)
    assert "shown once" in made.stderr
    other = stalwart("--db", db_url, "keys", "create", "--org", "globex", "--role", "viewer", "--json", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    globex = json.loads(other.stdout)
    assert globex["org"] == "globex" and globex["roles"] == ["viewer"] and globex["key"].startswith("sw_")

    listed = stalwart("--db", db_url, "keys", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    recs = json.loads(listed.stdout)
    assert {r["org"] for r in recs} == {"acme", "globex"}
    assert token not in listed.stdout and all("hash" not in r and "key" not in r for r in recs)
    # The global options work after the sub-command too.
    only = json.loads(stalwart("keys", "list", "--org", "acme", "--json", "--db", db_url, cwd=tmp_path).stdout)
    assert [r["org"] for r in only] == ["acme"] and only[0]["created_by"] == "user:ops-lead"
    kid = only[0]["kid"]
    table = stalwart("--db", db_url, "keys", "list", cwd=tmp_path)
    assert kid in table.stdout and "active" in table.stdout

    with ServerThread(build_app(db_url), worker=False) as server, httpx.Client(base_url=server.url) as c:
        h = {"Authorization": f"Bearer {token}"}
        assert c.get("/v1/runs", headers=h).status_code == 200
        own = c.get("/admin/keys", headers=h).json()
        assert [k["kid"] for k in own] == [kid]  # an org admin sees its own org's keys only
        assert c.post("/admin/keys", json={"org": "globex", "roles": ["admin"]}, headers=h).status_code == 403
        assert c.delete(f"/admin/keys/{globex['kid']}", headers=h).status_code == 404

        revoked = stalwart("--db", db_url, "keys", "revoke", kid, "--as", "user:ops-lead", cwd=tmp_path)
        assert revoked.returncode == 0, revoked.stderr
        assert c.get("/v1/runs", headers=h).status_code == 401
    state = json.loads(stalwart("--db", db_url, "keys", "list", "--org", "acme", "--json", cwd=tmp_path).stdout)
    assert state[0]["revoked_at"] is not None

    audit = stalwart("--db", db_url, "audit", "verify", "--json", cwd=tmp_path)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_key_events_are_audited_under_the_keys_org(db_url: str, tmp_path: Path) -> None:
    made = stalwart("--db", db_url, "keys", "create", "--org", "acme", "--role", "auditor", "--as", "user:ops",
                    cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    with ServerThread(build_app(db_url), worker=False) as server, httpx.Client(base_url=server.url) as c:
        events = c.get("/v1/audit/events", headers={"Authorization": f"Bearer {made.stdout.strip()}"}).json()
    created = [e for e in events if e["event_type"] == "key.create"]
    assert created and created[0]["actor"] == "user:ops" and created[0]["org_id"] == "acme"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--org", "a b", "--role", "admin"], "is not a valid org name"),
        (["keys", "create", "--org", "acme", "--role", "boss"], "roles must be a non-empty subset"),
        (["keys", "list", "--org", "../etc"], "is not a valid org name"),
        (["keys", "revoke", "nosuchkey"], "no key 'nosuchkey'"),
    ],
)
def test_bad_key_commands_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    r = stalwart("--db", f"sqlite:///{tmp_path}/k.db", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr + r.stdout
