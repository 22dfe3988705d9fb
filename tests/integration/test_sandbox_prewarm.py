"""A starting worker pre-warms the pool for every sandboxed tool its app registers: per profile,
``concurrency`` sandboxes per tool, within the pool's bounds; it claims once they are ready or once
``pool_prewarm_wait_s`` has passed; pre-warmed entries drop to zero when the profile is idle."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest

import stalwart as sw
from stalwart.sandbox import BwrapSandbox, ToolInvocation
from stalwart.settings import SandboxSettings
from tests.integration.sandbox_tools import basic, slow_import, trivial

pytestmark = pytest.mark.bwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASIC = "tests.integration.sandbox_tools.basic"
TRIVIAL = "tests.integration.sandbox_tools.trivial"


def inv(module: str, fn: str, kwargs: str = "{}") -> ToolInvocation:
    return ToolInvocation(tool_name=fn, module=module, qualname=fn, code_root=ROOT, kwargs_json=kwargs)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[BwrapSandbox, Clock]]:
    assert shutil.which("bwrap"), "bubblewrap is required for these tests: apt-get install bubblewrap"
    clock = Clock()
    sb = BwrapSandbox(SandboxSettings(pool_max_memory_mb=4096), monotonic=clock)
    yield sb, clock
    await sb.aclose()
    assert sb.pool.ready_count() == 0


async def test_prewarm_fills_each_profile_and_drops_to_zero_when_idle(
    sandbox: tuple[BwrapSandbox, Clock],
) -> None:
    sb, clock = sandbox
    asked = await sb.prewarm(
        [inv(BASIC, "echo"), inv(BASIC, "async_add"), inv(TRIVIAL, "ping")], concurrency=2
    )
    assert asked == {BASIC: 4, TRIVIAL: 2}  # two tools share BASIC's profile: 2 x 2
    assert await sb.pool.wait_warm(120)
    assert sb.pool.ready_count() == 6
    # the very first call of a profile is served warm; arguments arrive only with it
    out = await sb.run(inv(TRIVIAL, "ping", '{"n": 41}'))
    assert out.ok and out.result_json == "42" and out.pooled
    await sb.pool.settle()
    assert sb.pool.ready_count() == 6  # refilled up to the floor in the background
    clock.t += SandboxSettings().pool_idle_s + 1
    sb.pool.sweep()
    assert sb.pool.ready_count() == 0  # idle: pre-warmed or not, the pool drops to zero


async def test_prewarm_stays_within_the_process_bound() -> None:
    sb = BwrapSandbox(SandboxSettings(pool_max_processes=3, pool_max_memory_mb=4096))
    try:
        asked = await sb.prewarm([inv(BASIC, "echo"), inv(TRIVIAL, "ping")], concurrency=8)
        assert asked == {BASIC: 2, TRIVIAL: 1}  # 3 processes shared fairly between two profiles
        assert await sb.pool.wait_warm(120)
        assert sb.pool.ready_count() == 3
    finally:
        await sb.aclose()


def make_app(db: str, *, with_slow: bool = False, **sandbox: object) -> sw.App:
    assert shutil.which("bwrap"), "bubblewrap is required for these tests: apt-get install bubblewrap"
    app = sw.App("prewarm", db=db)
    for key, value in sandbox.items():
        setattr(app.settings.sandbox, key, value)
    ping = app.tool(name="ping", timeout_s=30)(trivial.ping)
    echo = app.tool(name="echo", timeout_s=30)(basic.echo)
    slow = app.tool(name="slow", timeout_s=30)(slow_import.never_warm) if with_slow else None

    @app.tool(sandbox="none")
    def local(n: int) -> int:
        return n * 2

    tools = [ping, echo, local] + ([slow] if slow else [])

    @app.workflow(name="w", version="1", tools=tools)
    async def run(ctx: sw.Context, n: int) -> dict:
        if n < 0:
            return {"local": await ctx.tool(local, n=n)}
        return {"ping": await ctx.tool(ping, n=n), "echo": await ctx.tool(echo, value="x")}

    return app


async def test_a_starting_worker_prewarms_and_its_first_calls_are_warm(sqlite_url: str) -> None:
    app = make_app(sqlite_url, pool_max_memory_mb=4096)
    try:
        async with app.worker(concurrency=2) as worker:
            report = worker.prewarm or {}
            assert report["asked"] == {TRIVIAL: 2, BASIC: 2}, report
            assert report["complete"] is True and report["ready"] == 4, report
            rid = await app.start("w", 1)
            assert await app.result(rid, timeout=120) == {"ping": 2, "echo": {"value": "x"}}
            steps = [e for e in await app.journal(rid) if e.kind == "tool"]
            assert [e.meta["sandbox_pooled"] for e in steps] == [True, True]
            assert all(e.meta["sandbox_ms"] >= 0 for e in steps)
    finally:
        await app.close()


async def test_a_worker_claims_without_waiting_forever_for_its_prewarm(sqlite_url: str) -> None:
    app = make_app(sqlite_url, pool_prewarm_wait_s=0.5, with_slow=True)
    try:
        async with app.worker(concurrency=1) as worker:
            report = worker.prewarm or {}
            assert report["complete"] is False, report  # slow_import never finishes its warm-up
            rid = await app.start("w", -3)
            assert await app.result(rid, timeout=120) == {"local": -6}  # claimed all the same
    finally:
        await app.close()  # the sandboxes still warming are killed


async def test_prewarm_can_be_switched_off(sqlite_url: str) -> None:
    app = make_app(sqlite_url, pool_prewarm=False)
    try:
        async with app.worker(concurrency=1) as worker:
            assert worker.prewarm is None
            assert app._sandbox is None  # nothing started
    finally:
        await app.close()


async def test_a_host_that_cannot_sandbox_does_not_stop_the_worker(sqlite_url: str) -> None:
    app = make_app(sqlite_url, python="/nonexistent/python3")
    try:
        async with app.worker(concurrency=1) as worker:
            report = worker.prewarm or {}
            assert "cannot sandbox" in report.get("error", ""), report  # said once, at start
            rid = await app.start("w", -1)
            assert await app.result(rid, timeout=120) == {"local": -2}
    finally:
        await app.close()
