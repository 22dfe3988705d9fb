"""MCP servers as governed tools, against real servers written with the official SDK
(tests/mcp_servers): a benign one and a malicious one, each stdio server inside bubblewrap.

Each attack of the malicious server is shown to achieve nothing: a poisoned description is refused
at approval and its tool stays uncallable; a rug pull after approval quarantines the tool (audited,
counted); injected instructions in a result are caught by the guard; a 10 MB result goes to the
artifact store (the journal keeps a hash); a hanging call times out and the cancellation reaches the
server; the server cannot read host files, reach the network, write outside /tmp or leave a process
behind. An HTTP server is reached only under the egress rules (a loopback address needs the
explicit opt-in, a redirect to another host is refused) and gets a credential on every request.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import stalwart as sw

pytestmark = pytest.mark.bwrap

SERVERS = Path(__file__).resolve().parent.parent / "mcp_servers"


def make_app(db: str, **server_kw: object) -> tuple[sw.App, object, object]:
    assert shutil.which("bwrap"), "bubblewrap is required for these tests: apt-get install bubblewrap"
    app = sw.App("mcp-test", db=db)
    app.default_retry = sw.RetryPolicy(max_attempts=1, initial_s=0.0, max_s=0.01)
    docs = app.mcp("docs", command=["python", "-m", "benign_server"], code=str(SERVERS), **server_kw)
    evil = app.mcp("evil", command=["python", "-m", "malicious_server"], code=str(SERVERS), timeout_s=30.0)
    evil.tool("hang", timeout_s=1.5)

    @app.workflow(name="ask", version="1", tools=[docs])
    async def ask(ctx: sw.Context, q: str) -> dict:
        return await ctx.tool(docs.tool("search"), query=q)

    @app.workflow(name="one", version="1", tools=[docs.tool("echo")])
    async def one(ctx: sw.Context, tool: str, args: dict) -> dict:
        return await ctx.tool(docs.tool(tool), **args)

    @app.workflow(name="evil", version="1", tools=[evil])
    async def evil_wf(ctx: sw.Context, tool: str, args: dict) -> dict:
        return await ctx.tool(evil.tool(tool), **args)

    return app, docs, evil


async def _run(app: sw.App, wf: str, data: object) -> tuple[str, object]:
    rid = await app.start(wf, data)
    try:
        return rid, await app.result(rid, timeout=60)
    except sw.WorkflowFailed as exc:
        return rid, exc


async def _audit_types(app: sw.App) -> list[str]:
    gov = await app.governance()
    kinds = ["mcp.tool_approved", "mcp.tool_refused", "mcp.tool_quarantined"]
    return [json.loads(body)["event_type"] for _, body in await gov.audit.db.events_by_type(kinds)]


async def test_approved_tool_is_called_in_the_sandbox_and_replayed_for_free(sqlite_url: str) -> None:
    app, docs, _ = make_app(sqlite_url)
    try:
        async with app.worker(concurrency=2):
            rid, result = await _run(app, "ask", "refund")
            assert isinstance(result, sw.WorkflowFailed) and "quarantined" in str(result)  # not approved yet
            approved = await docs.approve(by="ops")
            assert {r["tool"]: r["state"] for r in approved} == {"echo": "approved", "search": "approved", "whoami": "approved",
                                                                 "drop": "approved"}
            rid, result = await _run(app, "ask", "refund")
            assert result["structured"] == {"result": ["Refunds over 100 EUR need a second approver."]}
            starts = docs.session().starts
            await app.replay(rid)  # a replay reads the journal: no new session, no call
            assert docs.session().starts == starts
            # allowlist: `one` lists only echo; search is refused before anything reaches the server
            _, res2 = await _run(app, "one", {"tool": "search", "args": {"query": "x"}})
            assert isinstance(res2, sw.WorkflowFailed) and res2.error["code"] == "unauthorized_tool_call"
            # arguments are validated against the pinned input schema
            _, res3 = await _run(app, "one", {"tool": "echo", "args": {"text": 5}})
            assert isinstance(res3, sw.WorkflowFailed) and res3.error["code"] == "invalid_input"
        steps = [e for e in await app.journal(rid) if e.kind == "tool"]
        assert steps[0].name == "mcp:docs::search" and steps[0].status == "completed"
        assert [e for e in await app.journal(rid) if e.kind == "policy"]  # Cedar decided on mcp:docs::search
        types = await _audit_types(app)
        assert "mcp.tool_approved" in types and "mcp.tool_quarantined" in types
    finally:
        await app.close()


async def test_a_crashed_server_is_restarted(sqlite_url: str) -> None:
    app, _, evil = make_app(sqlite_url)
    try:
        await evil.approve(by="ops")
        async with app.worker(concurrency=1):
            _, died = await _run(app, "evil", {"tool": "die", "args": {}})
            assert isinstance(died, sw.WorkflowFailed) and died.error["code"] == "tool_error"
            _, again = await _run(app, "evil", {"tool": "cancelled", "args": {}})
        assert not isinstance(again, Exception), again
        assert again["structured"] == {"result": False}
        assert evil.session().starts == 2
    finally:
        await app.close()


async def test_poisoned_description_is_refused_and_stays_uncallable(sqlite_url: str) -> None:
    app, _, evil = make_app(sqlite_url)
    try:
        rows = {r["tool"]: r for r in await evil.approve(by="ops")}
        assert rows["poisoned"]["state"] == "refused" and rows["poisoned"]["guard"] == "block"
        assert rows["weather"]["state"] == "approved"
        async with app.worker(concurrency=1):
            _, res = await _run(app, "evil", {"tool": "poisoned", "args": {"a": 1, "b": 2}})
        assert isinstance(res, sw.WorkflowFailed) and res.error["code"] == "tool_quarantined"
        assert "mcp.tool_refused" in await _audit_types(app)
    finally:
        await app.close()


async def test_rug_pull_after_approval_is_quarantined(sqlite_url: str) -> None:
    app, _, evil = make_app(sqlite_url)
    try:
        await evil.approve("weather", by="ops")
        registry = app.telemetry.metrics.registry

        def quarantined() -> float:
            return registry.get_sample_value("agent_mcp_quarantined_total", {"server": "evil"}) or 0.0

        before = quarantined()
        async with app.worker(concurrency=1):
            _, ok = await _run(app, "evil", {"tool": "weather", "args": {"city": "Oslo"}})
            assert not isinstance(ok, Exception)  # first call: the approved definition; now it changes
            _, res = await _run(app, "evil", {"tool": "weather", "args": {"city": "Oslo"}})
        assert quarantined() == before + 1  # AgentMcpToolQuarantined fires on any increase
        assert isinstance(res, sw.WorkflowFailed) and res.error["code"] == "tool_quarantined"
        assert "differs from the approved pin" in res.error["message"]
        status = {r["tool"]: r["state"] for r in await evil.status()}
        assert status["weather"] == "quarantined:changed"
        assert "mcp.tool_quarantined" in await _audit_types(app)
    finally:
        await app.close()


async def test_injected_instructions_in_a_result_are_blocked(sqlite_url: str) -> None:
    app, _, evil = make_app(sqlite_url)
    try:
        await evil.approve("inject", by="ops")
        async with app.worker(concurrency=1):
            _, res = await _run(app, "evil", {"tool": "inject", "args": {"topic": "x"}})
        assert isinstance(res, sw.WorkflowFailed) and res.error["code"] == "injection_blocked"
    finally:
        await app.close()


async def test_a_10_mb_result_is_refused_and_a_large_one_goes_to_the_artifact_store(  # type: ignore[no-untyped-def]
    sqlite_url: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("STALWART_MASTER_KEY", base64.b64encode(b"q" * 32).decode())
    monkeypatch.setenv("STALWART_ARTIFACTS__URL", f"file:{tmp_path}/artifacts")
    app, _, evil = make_app(sqlite_url)
    try:
        await evil.approve("huge", by="ops")
        async with app.worker(concurrency=1):
            rid, res = await _run(app, "evil", {"tool": "huge", "args": {"n_kb": 10 * 1024}})
            assert isinstance(res, sw.WorkflowFailed) and res.error["details"]["limit"] == "result_bytes"
            [step] = [e for e in await app.journal(rid) if e.kind == "tool"]
            assert len(json.dumps(step.error)) < 4096  # the 10 MB never reached the journal
            rid, res = await _run(app, "evil", {"tool": "huge", "args": {"n_kb": 200}})
        assert not isinstance(res, Exception) and len(res["structured"]["result"]) == 200 * 1024
        [step] = [e for e in await app.journal(rid) if e.kind == "tool"]
        assert len(step.result_json or "") < 4096  # the journal holds a reference, not the result
        assert step.meta["artifact"]["size"] > 200 * 1024
    finally:
        await app.close()


async def test_a_hanging_call_times_out_and_the_cancellation_reaches_the_server(sqlite_url: str) -> None:
    app, _, evil = make_app(sqlite_url)
    try:
        await evil.approve(by="ops")
        async with app.worker(concurrency=1):
            _, res = await _run(app, "evil", {"tool": "hang", "args": {"seconds": 60}})
            assert isinstance(res, sw.WorkflowFailed) and res.error["code"] == "tool_timeout"
            _, seen = await _run(app, "evil", {"tool": "cancelled", "args": {}})
        assert seen["structured"] == {"result": True}
    finally:
        await app.close()


def _sleepers() -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read() == b"sleep\x00300\x00":
                    out.append(int(pid))
        except OSError:
            continue
    return out


async def test_the_server_cannot_read_host_files_reach_the_network_or_leave_a_process(sqlite_url: str) -> None:
    app, _, evil = make_app(sqlite_url)
    before = set(_sleepers())
    try:
        await evil.approve("escape", by="ops")
        async with app.worker(concurrency=1):
            _, res = await _run(app, "evil", {"tool": "escape", "args": {}})
        probe = res["structured"] or json.loads(res["content"][0]["text"])
        assert all(probe[p].startswith("denied") for p in ("/etc/shadow", "/root/.bashrc", "/work"))
        assert probe["network"].startswith("blocked") and probe["usr"].startswith("denied")
        assert probe["uid"] != 0
        assert set(_sleepers()) - before  # the child it left behind is alive while the server lives
    finally:
        await app.close()
    assert not set(_sleepers()) - before  # ... and gone with the sandbox


async def test_pins_are_stored_on_both_databases(db_url: str) -> None:
    from stalwart.store import open_store

    store = await open_store(db_url, migrate=True)
    try:
        await store.mcp_pin("docs", [{"tool": "search", "sha256": "a" * 64, "definition": "{}"}], "ann", 1.0)
        await store.mcp_pin("docs", [{"tool": "search", "sha256": "b" * 64, "definition": "{}"},
                                     {"tool": "echo", "sha256": "c" * 64, "definition": "{}"}], "bob", 2.0)
        await store.mcp_pin("crm", [{"tool": "lookup", "sha256": "d" * 64, "definition": "{}"}], "ann", 3.0)
        rows = await store.mcp_pins("docs")
        assert [(r["tool"], r["sha256"][0], r["approved_by"]) for r in rows] == [("echo", "c", "bob"),
                                                                                ("search", "b", "bob")]
        assert [r["server"] for r in await store.mcp_pins()] == ["crm", "docs", "docs"]
    finally:
        await store.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def http_server(*extra: str) -> AsyncIterator[int]:
    """The benign server over streamable HTTP on 127.0.0.1; yields its port."""
    import asyncio
    import socket
    import subprocess
    import sys

    port = _free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "benign_server", "--http", str(port), *extra,
                                                cwd=SERVERS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def test_an_http_server_gets_a_per_call_credential_as_its_bearer_token(sqlite_url: str) -> None:
    async with http_server() as port:
        app = sw.App("mcp-http", db=sqlite_url)
        app.default_retry = sw.RetryPolicy(max_attempts=1, initial_s=0.0, max_s=0.01)
        crm = app.mcp("crm", url=f"http://127.0.0.1:{port}/mcp", scopes=["read:crm"], allow_private=True)

        @app.workflow(name="who", version="1", tools=[crm])
        async def who(ctx: sw.Context) -> dict:
            first = await ctx.tool(crm.tool("whoami"))
            second = await ctx.tool(crm.tool("whoami"))
            return {"tokens": [first["structured"]["result"], second["structured"]["result"]]}

        try:
            await crm.approve(by="ops")
            async with app.worker(concurrency=1):
                rid = await app.start("who", None, org="acme")
                tokens = (await app.result(rid, timeout=60))["tokens"]
            broker = await app.credential_broker()
            claims = [await broker.verify(t, "read:crm", org="acme") for t in tokens]
            assert tokens[0] != tokens[1] and claims[0].jti != claims[1].jti  # minted per call
            assert {c.tool for c in claims} == {"mcp:crm::whoami"}
            steps = [e for e in await app.journal(rid) if e.kind == "tool"]
            assert [s.meta["credential_id"] for s in steps] == [c.jti for c in claims]
            # every connection went through the egress check, to the address it checked
            log = crm.session().egress_log
            assert log and all(e["allowed"] and e["address"] == "127.0.0.1" and e["port"] == port for e in log)
        finally:
            await app.close()


async def test_a_server_that_wants_a_token_on_every_request_gets_one(sqlite_url: str, tmp_path: Path) -> None:
    seen = tmp_path / "tokens.log"
    async with http_server("--require-auth", str(seen)) as port:
        app = sw.App("mcp-auth", db=sqlite_url)
        app.default_retry = sw.RetryPolicy(max_attempts=1, initial_s=0.0, max_s=0.01)
        crm = app.mcp("crm", url=f"http://127.0.0.1:{port}/mcp", scopes=["read:crm"], allow_private=True)

        @app.workflow(name="find", version="1", tools=[crm])
        async def find(ctx: sw.Context, q: str) -> dict:
            return await ctx.tool(crm.tool("search"), query=q)

        try:
            approved = await crm.approve(by="ops")  # handshake + tools/list, outside any run
            assert {r["tool"] for r in approved} >= {"search", "whoami"}
            async with app.worker(concurrency=1):
                rid = await app.start("find", "refund", org="acme")
                out = await app.result(rid, timeout=60)
            assert out["structured"]["result"] == ["Refunds over 100 EUR need a second approver."]
            broker = await app.credential_broker()
            lines = [line.split(" ", 1) for line in seen.read_text().splitlines()]
            assert lines and all(m in ("POST", "GET", "DELETE") for m, _ in lines)
            subjects = set()
            for _, token in dict.fromkeys(map(tuple, lines)):
                org = "acme" if token != lines[0][1] else "default"
                subjects.add((await broker.verify(token, "read:crm", org=org)).tool)
            # the listing (and handshake) carried a server-scoped credential, the call its own
            assert subjects == {"mcp:crm", "mcp:crm::search"}
        finally:
            await app.close()


async def test_an_http_server_on_a_loopback_address_needs_the_opt_in(sqlite_url: str) -> None:
    port = _free_port()  # nothing listens: the refusal comes before any connection
    app = sw.App("mcp-private", db=sqlite_url)
    try:
        for host in ("127.0.0.1", "localhost"):
            crm = app.mcp(f"crm-{host.replace('.', '-')}", url=f"http://{host}:{port}/mcp")
            with pytest.raises(sw.ToolError) as info:
                await crm.approve(by="ops")
            assert "127.0.0.1 is a loopback address" in str(info.value)
            assert "allow_private=True" in str(info.value)
            (entry,) = crm.session().egress_log
            assert entry["allowed"] is False and entry["address"] is None and entry["host"] == host
    finally:
        await app.close()


async def test_a_redirect_to_another_host_is_refused(sqlite_url: str) -> None:
    import asyncio

    import httpx2

    from stalwart.mcp._egress import GuardedBackend, guarded_transport

    other = _free_port()

    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{other}/mcp\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(redirect, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    app = sw.App("mcp-redirect", db=sqlite_url)
    try:
        crm = app.mcp("crm", url=f"http://127.0.0.1:{port}/mcp", allow_private=True)
        with pytest.raises(sw.ToolError):
            await crm.approve(by="ops")
        assert {(e["host"], e["port"]) for e in crm.session().egress_log} == {("127.0.0.1", port)}
        # and a client that did follow it would still be refused at connect time
        log: list[dict] = []
        backend = GuardedBackend([f"127.0.0.1:{port}"], allow_private=True, on_attempt=log.append)
        async with httpx2.AsyncClient(transport=guarded_transport(backend), follow_redirects=True) as client:
            with pytest.raises(httpx2.ConnectError, match=f"egress to localhost:{other} refused: not on the egress"):
                await client.get(f"http://127.0.0.1:{port}/mcp")
        assert [(e["host"], e["allowed"]) for e in log] == [("127.0.0.1", True), ("localhost", False)]
    finally:
        listener.close()
        await app.close()


async def test_cedar_decides_on_the_resource_mcp_server_tool(sqlite_url: str, tmp_path: Path) -> None:
    from stalwart.governance import DEFAULT_POLICIES

    bundle = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES, bundle)
    with (bundle / "default.cedar").open("a") as fh:
        fh.write('\n@id("no-echo-from-docs")\nforbid (principal, action == Stalwart::Action::"call_tool", '
                 'resource == Stalwart::Tool::"mcp:docs::echo");\n')
    app = sw.App("mcp-cedar", db=sqlite_url, policies=bundle)
    app.default_retry = sw.RetryPolicy(max_attempts=1, initial_s=0.0, max_s=0.01)
    docs = app.mcp("docs", command=["python", "-m", "benign_server"], code=str(SERVERS))

    @app.workflow(name="both", version="1", tools=[docs])
    async def both(ctx: sw.Context, tool: str) -> dict:
        return await ctx.tool(docs.tool(tool), **({"query": "ship"} if tool == "search" else {"text": "hi"}))

    try:
        await docs.approve(by="ops")
        async with app.worker(concurrency=1):
            _, ok = await _run(app, "both", "search")
            _, denied = await _run(app, "both", "echo")
        assert not isinstance(ok, Exception)
        assert isinstance(denied, sw.WorkflowFailed) and denied.error["code"] == "policy_denied"
        assert "no-echo-from-docs" in denied.error["message"]
    finally:
        await app.close()


async def test_an_mcp_tool_a_policy_sends_to_review_waits_for_a_human(sqlite_url: str, tmp_path: Path) -> None:
    import asyncio

    from stalwart.governance import DEFAULT_POLICIES

    bundle = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES, bundle)
    with (bundle / "default.cedar").open("a") as fh:
        fh.write('\n@id("docs-search-needs-review")\n@review("true")\nforbid (principal, action == '
                 'Stalwart::Action::"call_tool", resource == Stalwart::Tool::"mcp:docs::search")\n'
                 'unless { context.reviewed };\n')
    app = sw.App("mcp-review", db=sqlite_url, policies=bundle)
    docs = app.mcp("docs", command=["python", "-m", "benign_server"], code=str(SERVERS))

    @app.workflow(name="ask", version="1", tools=[docs])
    async def ask(ctx: sw.Context, q: str) -> dict:
        return await ctx.tool(docs.tool("search"), query=q)

    try:
        await docs.approve(by="ops")
        gov = await app.governance()
        async with app.worker(concurrency=1):
            rid = await app.start("ask", "ship", user="u1")
            for _ in range(400):
                reviews = [r for r in await gov.reviews.list() if r.run_id == rid]
                if reviews:
                    break
                await asyncio.sleep(0.05)
            assert reviews and reviews[0].proposed_action["tool"] == "mcp:docs::search"
            assert (await app.get_run(rid)).status.value == "WAITING"
            await gov.reviews.decide(reviews[0].id, "reviewer-ann", "approve")
            result = await app.result(rid, timeout=60)
        assert result["structured"]["result"] == ["Orders ship within two working days."]
    finally:
        await app.close()


async def test_annotations_raise_risk_but_never_lower_it(sqlite_url: str) -> None:
    app, docs, _ = make_app(sqlite_url)

    @app.workflow(name="any", version="1", tools=[docs])
    async def any_tool(ctx: sw.Context, tool: str, args: dict) -> dict:
        return await ctx.tool(docs.tool(tool), **args)

    try:
        await docs.approve(by="ops")
        async with app.worker(concurrency=1):
            rid_drop, _ = await _run(app, "any", {"tool": "drop", "args": {"name": "nope"}})
            rid_echo, _ = await _run(app, "any", {"tool": "echo", "args": {"text": "x"}})

        async def risk(rid: str) -> float:
            [p] = [e for e in await app.journal(rid) if e.kind == "policy"]
            return float(json.loads(p.result_json or "{}")["risk"]["score"])

        assert await risk(rid_drop) > await risk(rid_echo)
    finally:
        await app.close()


async def test_an_mcp_result_cannot_choose_a_guarded_argument(sqlite_url: str) -> None:
    assert shutil.which("bwrap"), "bubblewrap is required for these tests: apt-get install bubblewrap"
    app = sw.App("mcp-taint", db=sqlite_url)
    app.default_retry = sw.RetryPolicy(max_attempts=1, initial_s=0.0, max_s=0.01)
    docs = app.mcp("docs", command=["python", "-m", "benign_server"], code=str(SERVERS),
                   guarded_args={"drop": ["name"]})

    @app.workflow(name="tidy", version="1", tools=[docs])
    async def tidy(ctx: sw.Context, q: str, name: str = "") -> dict:
        hits = await ctx.tool(docs.tool("search"), query=q)
        first = hits["structured"]["result"][0].split()[0].lower()  # "refunds", read from the server's answer
        return await ctx.tool(docs.tool("drop"), name=name or first)

    try:
        await docs.approve(by="ops")
        async with app.worker(concurrency=2):
            _, denied = await _run(app, "tidy", {"q": "refund"})
            _, allowed = await _run(app, "tidy", {"q": "refund", "name": "refunds"})  # the caller named it
        assert isinstance(denied, sw.WorkflowFailed) and (denied.error or {}).get("code") == "tainted_argument"
        assert "mcp:docs::search" in str(denied)
        assert not isinstance(allowed, sw.WorkflowFailed), allowed
    finally:
        await app.close()
