"""``stalwart mcp list|approve``: the pins an operator makes, the states they show, a poisoned description refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.bwrap


def stalwart(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STALWART_DB": f"sqlite:///{cwd}/cli.db",
           "STALWART_APP": "tests.mcp_servers.cli_app:app"}
    return subprocess.run([sys.executable, "-m", "stalwart.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def _states(tmp_path: Path) -> dict[str, str]:
    r = stalwart("mcp", "list", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return {f"{row['server']}::{row['tool']}": row["state"] for row in json.loads(r.stdout)}


def test_approve_and_list(tmp_path: Path) -> None:
    r = stalwart("mcp", "approve", "docs", "search", "--operator", "ann", cwd=tmp_path)
    assert r.returncode == 0 and "approved docs::search" in r.stdout, r.stdout + r.stderr
    r = stalwart("mcp", "approve", "evil", "--operator", "ann", cwd=tmp_path)
    assert r.returncode == 1 and "refused evil::poisoned" in r.stdout, r.stdout + r.stderr
    states = _states(tmp_path)
    assert states["docs::search"] == "approved" and states["docs::echo"] == "quarantined:new"
    assert states["evil::poisoned"] == "quarantined:new" and states["evil::weather"] == "approved"
    r = stalwart("mcp", "approve", "docs", "nope", "--operator", "ann", cwd=tmp_path)
    assert r.returncode == 2 and "lists no tool 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = stalwart("mcp", "approve", "ghost", "--operator", "ann", cwd=tmp_path)
    assert r.returncode == 2 and "declares no MCP server 'ghost'" in r.stderr
