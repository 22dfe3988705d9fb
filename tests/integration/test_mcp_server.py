"""Stalwart's workflows as MCP tools, seen by the official SDK's own client: over stdio
(``stalwart mcp serve``) and over streamable HTTP (``POST /mcp``, API-key auth, org-scoped)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parents[2]


async def test_sdk_client_lists_and_calls_workflows_over_stdio(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "STALWART_DB": f"sqlite:///{tmp_path}/s.db",
           "STALWART_APP": "tests.mcp_servers.served_app:app", "PATH": os.environ.get("PATH", "")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "stalwart.cli", "mcp", "serve", "--org", "acme",
                                                                      "--progress-every", "0.2"],
                                   env=env, cwd=str(tmp_path))
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert set(tools) == {"greet", "double", "slow"}
            schema = tools["greet"].input_schema
            assert schema["required"] == ["name"] and schema["properties"]["excited"]["type"] == "boolean"
            assert "Greet someone by name." in (tools["greet"].description or "")
            result = await session.call_tool("greet", {"name": "Ada", "excited": True})
            assert not result.is_error, result.content
            assert result.structured_content == {"greeting": "Hello, Ada!", "org": "acme"}
            run_id = json.loads(result.content[0].text)["run_id"]
            doubled = await session.call_tool("double", {"n": 21})
            assert doubled.structured_content == {"result": 42}
            bad = await session.call_tool("double", {"n": "many"})
            assert bad.is_error
            progress: list[str] = []

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                progress.append(message or "")

            slow = await session.call_tool("slow", {"seconds": 1.5}, progress_callback=on_progress)
            assert slow.structured_content == {"result": "done"}
            assert progress[0].endswith("started") and any(m.endswith("is RUNNING") for m in progress[1:]), progress
    import stalwart as sw

    app = sw.App("check", db=f"sqlite:///{tmp_path}/s.db")
    try:
        info = await app.get_run(run_id)
        assert info.status.value == "COMPLETED" and info.org == "acme"
        assert (info.idempotency_key or "").startswith("mcp:")
    finally:
        await app.close()


def _key(server, org: str, roles: list[str]) -> str:  # type: ignore[no-untyped-def]
    import httpx

    from tests.e2e.server import ADMIN_KEY

    made = httpx.post(f"{server.url}/admin/keys", json={"org": org, "roles": roles, "subject": f"bot-{org}"},
                      headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


async def _call_over_http(url: str, key: str | None) -> tuple[set[str], object, str]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as client, \
            streamable_http_client(url, http_client=client) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        names = {t.name for t in (await session.list_tools()).tools}
        result = await session.call_tool("greet", {"name": "Grace"})
        assert not result.is_error, result.content
        return names, result.structured_content, json.loads(result.content[0].text)["run_id"]


def test_sdk_client_lists_and_calls_workflows_over_http_in_the_keys_org(tmp_path: Path) -> None:
    import asyncio

    import httpx
    import pytest

    from stalwart.api import ApiSettings
    from tests.e2e.server import ADMIN_KEY, ServerThread
    from tests.mcp_servers.served_app import app

    app.settings = app.settings.model_copy(update={"db": f"sqlite:///{tmp_path}/h.db"})
    os.environ["STALWART_TEST_MCP_ADMIN_KEY"] = ADMIN_KEY
    settings = ApiSettings(print_bootstrap_key=False, admin_key_env="STALWART_TEST_MCP_ADMIN_KEY")
    try:
        with ServerThread(app, settings) as server:
            key = _key(server, "acme", ["operator"])
            names, out, run_id = asyncio.run(_call_over_http(f"{server.url}/mcp", key))
            assert names == {"greet", "double", "slow"}
            assert out == {"greeting": "Hello, Grace.", "org": "acme"}  # the key's org, not the client's say
            info = server.call(app.get_run(run_id))
            assert info.org == "acme" and info.user == "bot-acme"
            # no key, or a key without a role that starts runs: refused before MCP sees anything
            assert httpx.post(f"{server.url}/mcp", json={}).status_code == 401
            viewer = _key(server, "acme", ["viewer"])
            r = httpx.post(f"{server.url}/mcp", json={}, headers={"Authorization": f"Bearer {viewer}"})
            assert r.status_code == 403
            with pytest.raises(Exception):  # noqa: B017 - the SDK raises its own transport error
                asyncio.run(_call_over_http(f"{server.url}/mcp", None))
    finally:
        os.environ.pop("STALWART_TEST_MCP_ADMIN_KEY", None)
