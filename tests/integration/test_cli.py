"""The ``stalwart`` command: user mistakes get one clear line and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def stalwart(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "STALWART_DEMO_LEDGER": str(cwd / "payments.db"),
                "STALWART_MASTER_KEY": "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS0=", **(env or {})}
    full_env.pop("STALWART_DB", None)
    return subprocess.run([sys.executable, "-m", "stalwart.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "start", "nope", "--input", "{}"], "unknown workflow 'nope'"),
        (["run", "start", "refund", "--input", '{"order_id": 5'], "--input is not valid JSON"),
        (["run", "start", "refund", "--input", "[1, 2]"], "input does not match workflow refund@1"),
        (["--db", "mysql://x/y", "run", "list"], "unsupported database scheme"),
        (["--db", "sqlite://relative.db", "run", "list"], "three slashes"),
        (["run", "get", "no-such-run"], "no run with id 'no-such-run'"),
        (["--app", "no_such_module:app", "run", "start", "x"], "cannot import module 'no_such_module'"),
        (["--app", "json:dumps", "run", "start", "x"], "is not a stalwart.App"),
    ],
)
def test_user_errors_are_clear(tmp_path: Path, args: list[str], message: str) -> None:
    r = stalwart(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_database_down_retries_then_names_the_url_without_password(tmp_path: Path) -> None:
    r = stalwart("--db", "postgresql://bob:hunter2@127.0.0.1:1/app", "run", "list", cwd=tmp_path)
    assert r.returncode == 1
    assert "cannot reach the database at postgresql://bob:***@127.0.0.1:1/app after 5 attempts" in r.stderr
    assert "hunter2" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_start_get_list_and_dlq_round_trip(tmp_path: Path) -> None:
    r = stalwart("run", "start", "refund", "--input",
                 '{"message": "Refund order A-1001 please", "email": "x@bounce.invalid"}',
                 "--key", "k1", "--org", "acme", "--wait", "60", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    assert started["status"] == "DEAD_LETTER"
    again = json.loads(stalwart("run", "start", "refund", "--input", "{}", "--key", "k1", "--org", "acme",
                                "--json", cwd=tmp_path).stdout)
    assert again["id"] == started["id"]  # idempotent: the same key returns the same run
    got = json.loads(stalwart("run", "get", started["id"], "--json", cwd=tmp_path).stdout)
    assert [s["name"] for s in got["steps"] if s["kind"] != "policy"][:8] == [
        "triage", "recall_previous", "lookup_order", "customer_history", "check_fraud", "issue_refund", "reply",
        "send_email"]
    assert got["steps"][-1]["kind"] == "compensation"
    listed = json.loads(stalwart("run", "list", "--json", cwd=tmp_path).stdout)
    assert [x["id"] for x in listed] == [started["id"]]
    dlq = json.loads(stalwart("dlq", "list", "--json", cwd=tmp_path).stdout)
    assert [d["run_id"] for d in dlq] == [started["id"]]
    retried = stalwart("dlq", "retry", started["id"], cwd=tmp_path)
    assert retried.returncode == 0 and "starts over" in retried.stdout
    assert stalwart("migrate", cwd=tmp_path).stdout.strip() == "database is up to date"
