"""Parallel branches, deterministic under replay; compensation in reverse order of completion."""

from __future__ import annotations

import asyncio

import pytest

import stalwart as sw
from stalwart.errors import ToolError

pytestmark = pytest.mark.asyncio


async def test_parallel_branches_journal_stable_seqs_and_replay_identically(db_url: str) -> None:
    app = sw.App("par", db=db_url)
    order: list[str] = []
    gate = asyncio.Event()

    async def slow(name: str, delay: float) -> str:
        await asyncio.sleep(delay)
        order.append(name)
        return name

    @app.workflow(name="w", version="1")
    async def w(ctx: sw.Context) -> list:
        a, b, c = await ctx.parallel(ctx.step("a", slow, "a", 0.3), ctx.step("b", slow, "b", 0.0),
                                     ctx.step("c", slow, "c", 0.1))
        if not gate.is_set():
            await asyncio.sleep(3600)  # crash after the parallel block
        d = await ctx.step("d", slow, "d", 0.0)
        return [a, b, c, d]

    worker = app.worker(concurrency=1, lease_s=0.5)
    await worker.start()
    rid = await app.start("w")
    for _ in range(300):
        if len(order) == 3:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    await worker.stop(graceful=False)
    assert order == ["b", "c", "a"]  # finished out of order
    before = [(e.seq, e.name) for e in await app.journal(rid)]
    assert before == [(0, "a"), (1, "b"), (2, "c")]  # sequence numbers follow the code, not completion
    gate.set()
    async with app.worker(concurrency=1):
        assert await app.result(rid, timeout=20) == ["a", "b", "c", "d"]
    assert order == ["b", "c", "a", "d"]  # the parallel steps were replayed, not re-run
    assert (await app.replay(rid)).outcome == "identical"
    await app.close()


async def test_a_failing_branch_cancels_the_others_and_compensates_in_completion_order(sqlite_url: str) -> None:
    app = sw.App("par-fail", db=sqlite_url)
    undone: list[str] = []
    started: list[str] = []

    @app.tool(sandbox="none", mutating=True, compensate=lambda name: undone.append(name))
    async def reserve(name: str, delay: float) -> str:
        started.append(name)
        await asyncio.sleep(delay)
        return name

    @app.tool(sandbox="none")
    async def explode(delay: float) -> None:
        await asyncio.sleep(delay)
        raise ToolError("no stock", retryable=False)

    @app.workflow(name="w", version="1", tools=[reserve, explode])
    async def w(ctx: sw.Context) -> None:
        await ctx.parallel(ctx.tool(reserve, name="late", delay=0.2), ctx.tool(reserve, name="early", delay=0.0),
                           ctx.tool(explode, delay=0.4), ctx.tool(reserve, name="never-done", delay=30))

    async with app.worker(concurrency=1):
        rid = await app.start("w")
        with pytest.raises(sw.WorkflowFailed) as exc:
            await app.result(rid, timeout=20)
    assert exc.value.error["type"] == "ToolError"
    assert undone == ["late", "early"]  # reverse order of completion; the cancelled branch had no effect
    assert "never-done" in started
    await app.close()
