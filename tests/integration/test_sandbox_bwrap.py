"""The sandbox contract, run on both implementations, plus what only bubblewrap does:
credentials over stdin, the egress proxy's admitted path, failing closed, doctor."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator

import pytest

from stalwart.engine._breaker import BreakerPolicy, BreakerState, breaker_failure
from stalwart.errors import SandboxUnavailable, StaleData, ToolError, error_from_dict
from stalwart.sandbox import (
    BwrapSandbox,
    CredentialBroker,
    InProcessSandbox,
    Sandbox,
    ToolInvocation,
    doctor,
)
from stalwart.settings import SandboxSettings
from stalwart.store import open_store

pytestmark = pytest.mark.bwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASIC = "tests.integration.sandbox_tools.basic"


def inv(fn: str, module: str = BASIC, **kwargs: object) -> ToolInvocation:
    return ToolInvocation(
        tool_name=fn, module=module, qualname=fn, code_root=ROOT, kwargs_json=json.dumps(kwargs), timeout_s=20
    )


_bwrap: BwrapSandbox | None = None


def bwrap_sandbox() -> BwrapSandbox:
    global _bwrap
    assert shutil.which("bwrap"), "bubblewrap is required for these tests: apt-get install bubblewrap"
    if _bwrap is None:
        _bwrap = BwrapSandbox(pool=False)  # shared by tests on different event loops; the pool has its own tests
    return _bwrap


@pytest.fixture(params=["bwrap", "inprocess"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    return bwrap_sandbox() if request.param == "bwrap" else InProcessSandbox()


@pytest.fixture
async def broker(tmp_path) -> AsyncIterator[CredentialBroker]:
    store = await open_store(f"sqlite:///{tmp_path}/s.db", migrate=True)
    b = CredentialBroker(store, refresh_s=0)
    await b.refresh()
    yield b
    await b.stop()
    await store.close()


# -- the contract, on both implementations --------------------------------------------------
async def test_sync_async_and_model_results(sandbox: Sandbox) -> None:
    out = await sandbox.run(inv("echo", value="hi"))
    assert out.ok and json.loads(out.result_json or "") == {"value": "hi"} and out.error is None
    assert (await sandbox.run(inv("async_add", a=2, b=3))).result_json == "5"
    out = await sandbox.run(inv("lookup", order_id="o-1"))
    assert json.loads(out.result_json or "") == {"order_id": "o-1", "cents": 1250}


@pytest.mark.parametrize("fn", ["wrong_type", "bad_model"])
async def test_result_must_match_return_annotation(sandbox: Sandbox, fn: str) -> None:
    out = await sandbox.run(inv(fn))
    assert not out.ok and out.error is not None
    assert out.error["code"] == "tool_result_invalid" and out.error["retryable"] is False


@pytest.mark.parametrize(
    "fn,kwargs,etype,retryable",
    [
        ("raise_value_error", {}, ToolError, False),
        ("raise_connection_error", {}, ToolError, True),
        ("raise_stalwart", {"retryable": False}, StaleData, False),
        ("raise_stalwart", {"retryable": True}, StaleData, True),
    ],
)
async def test_errors_keep_their_type_and_retryable(
    sandbox: Sandbox, fn: str, kwargs: dict, etype: type, retryable: bool
) -> None:
    out = await sandbox.run(inv(fn, **kwargs))
    assert not out.ok and out.error is not None
    err = error_from_dict(out.error)
    assert type(err) is etype and err.retryable is retryable


async def test_credential_reaches_the_tool(sandbox: Sandbox) -> None:
    i = inv("whoami")
    i.credential = "tok-123"
    out = await sandbox.run(i)
    assert json.loads(out.result_json or "") == {"kw": "tok-123", "current": "tok-123"}


async def test_timeout(sandbox: Sandbox) -> None:
    i = inv("never_returns", module="tests.integration.sandbox_tools.escape")
    i.timeout_s = 0.5
    if isinstance(sandbox, InProcessSandbox):
        i = inv("sleep_async", module="tests.integration.sandbox_tools.basic", seconds=30)
        i.timeout_s = 0.5
    out = await sandbox.run(i)
    assert out.error is not None and out.error["type"] == "ToolTimeout"


# -- bubblewrap only -------------------------------------------------------------------------
async def test_tool_prints_go_to_stderr_tail() -> None:
    out = await bwrap_sandbox().run(inv("noisy", lines=3))
    assert out.ok and out.result_json == "3" and "line 2" in out.stderr_tail


async def test_crash_is_a_retryable_tool_error_that_feeds_the_breaker() -> None:
    out = await bwrap_sandbox().run(inv("crash"))
    assert not out.ok and out.error is not None and out.error["code"] == "tool_crashed"
    err = error_from_dict(out.error)
    assert isinstance(err, ToolError) and err.retryable
    state, policy = BreakerState(), BreakerPolicy(failure_threshold=2)
    for t in range(2):
        state = breaker_failure(state, float(t), policy)
    assert state.state == "open"


async def test_tool_verifies_its_credential_inside_the_sandbox(broker: CredentialBroker) -> None:
    token, _ = await broker.mint("run-1", "acme", "lookup_order", ["read:orders"])
    ok = inv("verify_scope", scope="read:orders", org="acme")
    ok.credential, ok.verifier = token, broker.snapshot()
    out = await bwrap_sandbox().run(ok)
    assert out.ok, out.error
    assert json.loads(out.result_json or "") == {"org": "acme", "scopes": ["read:orders:org:acme"]}
    for scope, org, why in [("write:payments", "acme", "scope"), ("read:orders", "globex", "org")]:
        bad = inv("verify_scope", scope=scope, org=org)
        bad.credential, bad.verifier = token, broker.snapshot()
        out = await bwrap_sandbox().run(bad)
        assert out.error is not None and out.error["type"] == "CredentialError"
        assert out.error["details"]["reason"] == why


async def test_revoked_by_epoch_inside_the_sandbox(broker: CredentialBroker) -> None:
    token, _ = await broker.mint("run-1", "acme", "lookup_order", ["read:orders"])
    await broker.bump_epoch()
    i = inv("verify_scope", scope="read:orders", org="acme")
    i.credential, i.verifier = token, broker.snapshot()
    out = await bwrap_sandbox().run(i)
    assert out.error is not None and out.error["details"]["reason"] == "epoch"


async def test_credential_is_not_in_any_argv_or_environment() -> None:
    secret = "eyJ.secret-token-value.sig"
    i = inv("visible_text")
    i.credential = secret
    out = await bwrap_sandbox().run(i)
    assert out.ok, out.error
    seen = json.loads(out.result_json or "")
    assert seen["has_credential"] is True
    assert "1/cmdline" in seen["seen"] and "bwrap" in seen["seen"]["1/cmdline"]
    assert all(secret not in text for text in seen["seen"].values())


async def test_allowlisted_egress_goes_through_the_proxy() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def resolver(host: str, p: int) -> list[str]:
        return ["93.184.216.34"]

    async def connector(ip: str, p: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert (ip, p) == ("93.184.216.34", 443)  # the checked address, never a second lookup
        return await asyncio.open_connection("127.0.0.1", port)

    sb = BwrapSandbox(resolver=resolver, connector=connector)
    i = inv(
        "connect_via_proxy", module="tests.integration.sandbox_tools.escape", host="api.example.com", port=443
    )
    i.egress = ["api.example.com:443"]
    out = await sb.run(i)
    server.close()
    assert out.ok and json.loads(out.result_json or "") == "ping", out.error
    (entry,) = out.egress_log
    assert (
        entry["allowed"] is True
        and entry["address"] == "93.184.216.34"
        and entry["host"] == "api.example.com"
    )


async def test_fails_closed_without_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stalwart.sandbox._host.find_bwrap", lambda: None)
    with pytest.raises(SandboxUnavailable) as exc:
        await BwrapSandbox().run(inv("echo", value="x"))
    assert "apt-get install bubblewrap" in str(exc.value)


async def test_fails_closed_without_a_usable_interpreter() -> None:
    with pytest.raises(SandboxUnavailable) as exc:
        await BwrapSandbox(SandboxSettings(python="/root/.pyenv/versions/nope/bin/python")).run(
            inv("echo", value="x")
        )
    assert "sandbox interpreter" in str(exc.value)


async def test_unreadable_code_root_fails_closed(tmp_path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    i = inv("echo", value="x")
    i.code_root = str(hidden)
    if os.geteuid() != 0:
        pytest.fail("these tests run as root in CI so that tools can run under the sandbox uid")
    with pytest.raises(SandboxUnavailable):
        await bwrap_sandbox().run(i)


def test_doctor_reports_required_checks() -> None:
    checks = {c.name: c for c in doctor()}
    for name in (
        "bubblewrap",
        "seccomp filter",
        "sandbox interpreter",
        "user namespaces",
        "stalwart package readable",
    ):
        assert checks[name].ok, checks[name]
    assert all(c.fix for c in checks.values() if not c.ok)


async def test_concurrent_sandboxes_are_independent() -> None:
    outs = await asyncio.gather(*(bwrap_sandbox().run(inv("echo", value=str(i))) for i in range(8)))
    assert [json.loads(o.result_json or "{}") for o in outs] == [{"value": str(i)} for i in range(8)]
