"""Timeouts that mean it, end to end: a CPU-bound sandboxed tool is killed at its timeout, is not
retried by default (it burned its whole budget), and the dead letter says which limit fired; the
tool can opt in to retries."""

from __future__ import annotations

import shutil

import pytest

import stalwart as sw
from tests.integration.sandbox_tools.escape import cpu_spin, never_returns

pytestmark = pytest.mark.bwrap


def make_app(db: str, *, retry_on_timeout: bool | None) -> sw.App:
    assert shutil.which("bwrap"), "bubblewrap is required for these tests: apt-get install bubblewrap"
    app = sw.App("timeouts", db=db)
    app.default_retry = sw.RetryPolicy(max_attempts=3, initial_s=0.0, max_s=0.01)
    spin = app.tool(name="spin", timeout_s=1.5, retry_on_timeout=retry_on_timeout)(cpu_spin)
    wait = app.tool(name="wait", timeout_s=1.0, max_attempts=2)(never_returns)

    @app.workflow(name="spin", version="1", tools=[spin, wait])
    async def run(ctx: sw.Context, which: str) -> None:
        await ctx.tool(spin if which == "spin" else wait)

    return app


async def _dead_letter(app: sw.App, which: str) -> tuple[dict, int]:
    async with app.worker(concurrency=1):
        rid = await app.start("spin", which)
        with pytest.raises(sw.WorkflowFailed) as exc:
            await app.result(rid, timeout=120)
    assert exc.value.status == "DEAD_LETTER"
    [dl] = await app.dead_letters()
    [step] = [e for e in await app.journal(rid) if e.kind == "tool"]
    return dl.error or {}, step.attempts


async def test_cpu_bound_tool_is_not_retried_and_the_dead_letter_names_the_limit(sqlite_url: str) -> None:
    app = make_app(sqlite_url, retry_on_timeout=None)
    try:
        error, attempts = await _dead_letter(app, "spin")
    finally:
        await app.close()
    assert attempts == 1
    assert error["code"] == "tool_timeout" and error["retryable"] is False
    assert error["details"]["limit"] == "timeout" and error["details"]["cpu_bound"] is True


async def test_a_tool_may_opt_in_to_retrying_its_timeouts(sqlite_url: str) -> None:
    app = make_app(sqlite_url, retry_on_timeout=True)
    try:
        error, attempts = await _dead_letter(app, "spin")
    finally:
        await app.close()
    assert attempts == 3
    assert error["details"]["cpu_bound"] is True


async def test_a_waiting_tool_is_retried_by_default(sqlite_url: str) -> None:
    app = make_app(sqlite_url, retry_on_timeout=None)
    try:
        error, attempts = await _dead_letter(app, "wait")
    finally:
        await app.close()
    assert attempts == 2
    assert error["details"]["limit"] == "timeout" and error["details"]["cpu_bound"] is False
