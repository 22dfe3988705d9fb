"""The engine through its public API, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

import stalwart as sw
from stalwart.errors import InvalidInput, KillSwitchEngaged, ToolError, UnknownWorkflow
from stalwart.engine import KILL_SWITCH_FLAG

pytestmark = pytest.mark.asyncio


class Ticket(BaseModel):
    order_id: str
    cents: int


def make_app(db: str) -> tuple[sw.App, dict[str, Any]]:
    app = sw.App("test", db=db)
    app.default_retry = sw.RetryPolicy(max_attempts=3, initial_s=0.01, max_s=0.05)
    state: dict[str, Any] = {"ledger": {}, "calls": {}, "voids": []}

    def void(order_id: str, cents: int, *, idempotency_key: str) -> None:
        state["voids"].append((order_id, cents, idempotency_key))

    @app.tool(sandbox="none", mutating=True, compensate=void)
    def pay(order_id: str, cents: int, *, idempotency_key: str) -> dict:
        state["ledger"].setdefault(idempotency_key, (order_id, cents))
        return {"key": idempotency_key}

    @app.tool(sandbox="none", max_attempts=4)
    def flaky(n: int) -> int:
        state["calls"]["flaky"] = state["calls"].get("flaky", 0) + 1
        if state["calls"]["flaky"] < 3:
            raise ToolError("transient")
        return n + 1

    @app.tool(sandbox="none")
    def fatal() -> None:
        raise ToolError("permanent", retryable=False)

    @app.workflow(name="order", version="1", tools=[pay, flaky, fatal])
    async def order(ctx: sw.Context, ticket: Ticket) -> dict:
        doubled = await ctx.step("double", _double, ticket.cents)
        bumped = await ctx.tool(flaky, n=doubled)
        paid = await ctx.tool(pay, order_id=ticket.order_id, cents=bumped)
        if ticket.order_id == "FAIL":
            await ctx.tool(fatal)
        return {"paid": paid, "cents": bumped, "rand": ctx.random(), "uuid": str(ctx.uuid())}

    return app, state


async def _double(x: int) -> int:
    return 2 * x


async def test_run_completes_with_retries_and_injected_idempotency_key(db_url: str) -> None:
    app, state = make_app(db_url)
    async with app.worker(concurrency=4):
        rid = await app.start("order", {"order_id": "A1", "cents": 5}, idempotency_key="t-1", org="acme")
        out = await app.result(rid, timeout=20)
    assert out["cents"] == 11 and out["paid"]["key"] == f"{rid}:8"  # each tool call reserves 4 positions
    assert state["calls"]["flaky"] == 3
    journal = await app.journal(rid)
    assert [(e.kind, e.name, e.status) for e in journal] == [
        ("step", "double", "completed"), ("policy", "flaky", "completed"), ("tool", "flaky", "completed"),
        ("policy", "pay", "completed"), ("tool", "pay", "completed")]
    assert journal[2].attempts == 3
    assert all(e.kind != "policy" or '"action":"allow"' in (e.result_json or "") for e in journal)
    info = await app.get_run(rid)
    assert info.status == "COMPLETED" and info.org == "acme"
    await app.close()


async def test_idempotent_start_returns_the_same_run(db_url: str) -> None:
    app, _ = make_app(db_url)
    a = await app.start("order", {"order_id": "A1", "cents": 1}, idempotency_key="same")
    b = await app.start("order", {"order_id": "A1", "cents": 1}, idempotency_key="same")
    assert a == b
    assert len(await app.list_runs()) == 1
    await app.close()


async def test_bad_input_is_refused_before_anything_starts(sqlite_url: str) -> None:
    app, _ = make_app(sqlite_url)
    with pytest.raises(UnknownWorkflow, match="unknown workflow 'nope'"):
        await app.start("nope", {})
    with pytest.raises(InvalidInput, match=r"ticket.cents"):
        await app.start("order", {"order_id": "A1", "cents": "lots"})
    with pytest.raises(InvalidInput, match="ticket"):
        await app.start("order", None)
    assert await app.list_runs() == []
    await app.close()


async def test_failure_compensates_in_reverse_and_dead_letters(db_url: str) -> None:
    app, state = make_app(db_url)
    async with app.worker(concurrency=2):
        rid = await app.start("order", {"order_id": "FAIL", "cents": 1})
        with pytest.raises(sw.WorkflowFailed) as exc:
            await app.result(rid, timeout=20)
    assert exc.value.status == "DEAD_LETTER"
    assert exc.value.error["step"] == "fatal" and "traceback" in exc.value.error
    assert [c["status"] for c in exc.value.error["compensation"]] == ["completed"]
    assert state["voids"] == [("FAIL", 3, f"{rid}:13")]
    [dl] = await app.dead_letters()
    assert dl.run_id == rid and "permanent" in dl.reason
    await app.close()


async def test_dead_letter_retry_after_compensation_starts_a_new_generation(sqlite_url: str) -> None:
    app, state = make_app(sqlite_url)
    async with app.worker(concurrency=2):
        rid = await app.start("order", {"order_id": "FAIL", "cents": 1})
        with pytest.raises(sw.WorkflowFailed):
            await app.result(rid, timeout=20)
        info = await app.retry_dead_letter(rid)
        assert info.status == "PENDING" and info.generation == 1
        with pytest.raises(sw.WorkflowFailed):
            await app.result(rid, timeout=20)
    keys = sorted(state["ledger"])
    assert len(keys) == 2 and len(set(keys)) == 2  # a new payment key in the new generation
    await app.close()


async def test_replay_after_crash_uses_the_journal(db_url: str) -> None:
    """A worker dies mid-run; the next one replays completed steps instead of re-running them."""
    app = sw.App("crash", db=db_url)
    calls: list[str] = []
    gate = asyncio.Event()

    async def record(name: str) -> str:
        calls.append(name)
        return name.upper()

    @app.workflow(name="w", version="1")
    async def w(ctx: sw.Context, x: int) -> list:
        a = await ctx.step("a", record, "a")
        b = await ctx.step("b", record, "b")
        if not gate.is_set():
            await asyncio.sleep(3600)  # "crash" here: the task is killed with its lease held
        c = await ctx.step("c", record, "c")
        return [a, b, c, str(ctx.uuid())]

    worker = app.worker(concurrency=1, lease_s=0.5)
    await worker.start()
    rid = await app.start("w", 1)
    for _ in range(1000):  # until step b is journaled (not merely run: a step cut before its commit runs again)
        if any(e.name == "b" and e.status == "completed" for e in await app.journal(rid)):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"step b was never journaled (calls: {calls})")
    await worker.stop(graceful=False)  # hard stop: task cancelled, lease released to PENDING
    gate.set()
    async with app.worker(concurrency=1):
        out = await app.result(rid, timeout=20)
    assert out[:3] == ["A", "B", "C"]
    assert calls == ["a", "b", "c"]
    await app.close()


async def test_nondeterminism_goes_to_dead_letter(sqlite_url: str) -> None:
    app = sw.App("nd", db=sqlite_url)
    flip = {"name": "first"}

    async def noop() -> int:
        return 1

    @app.workflow(name="w", version="1")
    async def w(ctx: sw.Context) -> str:
        await ctx.step(flip["name"], noop)
        await ctx.wait_signal("go")
        return "done"

    async with app.worker(concurrency=1):
        rid = await app.start("w")
        for _ in range(100):
            if (await app.get_run(rid)).status == "WAITING":
                break
            await asyncio.sleep(0.02)
        flip["name"] = "renamed"  # the code changed under a running version
        await app.signal(rid, "go")
        with pytest.raises(sw.WorkflowFailed) as exc:
            await app.result(rid, timeout=10)
    assert exc.value.status == "DEAD_LETTER"
    assert exc.value.error["type"] == "NonDeterminismError"
    [dl] = await app.dead_letters()
    assert dl.reason.startswith("non_determinism")
    await app.close()


async def test_durable_sleep_and_signals(db_url: str) -> None:
    app = sw.App("sig", db=db_url)

    @app.workflow(name="w", version="1")
    async def w(ctx: sw.Context) -> dict:
        await ctx.sleep(0.3)
        approved = await ctx.wait_signal("approve")
        late = await ctx.wait_signal("never", timeout=0.2)
        return {"approved": approved, "late": late}

    async with app.worker(concurrency=2, poll_interval_s=0.05):
        rid = await app.start("w")
        for _ in range(400):  # the waiting row commits first, then the run is released to WAITING
            if any(e.kind == "signal" for e in await app.journal(rid)) and \
                    (await app.get_run(rid)).status == "WAITING":
                break
            await asyncio.sleep(0.02)
        info = await app.get_run(rid)
        assert info.status == "WAITING"
        await app.signal(rid, "approve", {"by": "alice"})
        out = await app.result(rid, timeout=10)
    assert out == {"approved": {"by": "alice"}, "late": None}
    await app.close()


async def test_cancellation_between_steps_compensates(db_url: str) -> None:
    app = sw.App("cancel", db=db_url)
    voided: list[str] = []

    @app.tool(sandbox="none", mutating=True, compensate=lambda order_id: voided.append(order_id))
    def charge(order_id: str) -> str:
        return order_id

    @app.workflow(name="w", version="1", tools=[charge])
    async def w(ctx: sw.Context) -> str:
        await ctx.tool(charge, order_id="o-1")
        await ctx.wait_signal("continue")
        await ctx.tool(charge, order_id="o-2")
        return "done"

    async with app.worker(concurrency=1, poll_interval_s=0.05):
        rid = await app.start("w")
        for _ in range(200):
            if (await app.get_run(rid)).status == "WAITING":
                break
            await asyncio.sleep(0.02)
        await app.cancel(rid)
        with pytest.raises(sw.WorkflowFailed) as exc:
            await app.result(rid, timeout=10)
    assert exc.value.status == "CANCELLED"
    assert voided == ["o-1"]
    await app.close()


async def test_versions_run_side_by_side_and_workers_skip_unknown_versions(sqlite_url: str) -> None:
    old = sw.App("v", db=sqlite_url)
    new = sw.App("v", db=sqlite_url)

    @old.workflow(name="w", version="1")
    async def w1(ctx: sw.Context) -> str:
        return "v1"

    @new.workflow(name="w", version="1")
    async def w1b(ctx: sw.Context) -> str:
        return "v1"

    @new.workflow(name="w", version="2")
    async def w2(ctx: sw.Context) -> str:
        return "v2"

    r_old = await old.start("w")
    r_new = await new.start("w")
    assert (await new.get_run(r_new)).version == "2"
    async with old.worker(concurrency=2):
        assert await old.result(r_old, timeout=10) == "v1"
        await asyncio.sleep(0.3)
        assert (await old.get_run(r_new)).status == "PENDING"  # the v1-only worker left it alone
    async with new.worker(concurrency=2):
        assert await new.result(r_new, timeout=10) == "v2"
    await old.close()
    await new.close()


async def test_kill_switch_stops_new_runs_and_new_steps(sqlite_url: str) -> None:
    app = sw.App("ks", db=sqlite_url)
    reached: list[int] = []

    async def mark(i: int) -> int:
        reached.append(i)
        return i

    @app.workflow(name="w", version="1")
    async def w(ctx: sw.Context) -> int:
        await ctx.step("one", mark, 1)
        await ctx.wait_signal("go")
        await ctx.step("two", mark, 2)
        return 2

    async with app.worker(concurrency=1, poll_interval_s=0.05):
        rid = await app.start("w")
        for _ in range(200):
            if (await app.get_run(rid)).status == "WAITING":
                break
            await asyncio.sleep(0.02)
        await app.store.set_flag(KILL_SWITCH_FLAG, {"reason": "test"}, 0.0)
        with pytest.raises(KillSwitchEngaged):
            await app.start("w")
        await app.signal(rid, "go")
        await asyncio.sleep(0.5)
        assert reached == [1]  # no new step started while engaged
        assert (await app.get_run(rid)).status in ("WAITING", "PENDING")
        await app.store.set_flag(KILL_SWITCH_FLAG, None, 0.0)
        assert await app.result(rid, timeout=10) == 2
    assert reached == [1, 2]
    await app.close()


async def test_circuit_breaker_opens_and_is_shared_through_the_store(sqlite_url: str) -> None:
    app = sw.App("cb", db=sqlite_url)
    app.breaker_policy = sw.engine.BreakerPolicy(failure_threshold=2, reset_s=60)
    calls = {"n": 0}

    @app.tool(sandbox="none", retry=sw.RetryPolicy(max_attempts=4, initial_s=0.0, max_s=0.01))
    def down() -> None:
        calls["n"] += 1
        raise ToolError("503 from upstream")

    @app.workflow(name="w", version="1", tools=[down])
    async def w(ctx: sw.Context) -> None:
        await ctx.tool(down)

    async with app.worker(concurrency=1):
        rid = await app.start("w")
        with pytest.raises(sw.WorkflowFailed) as exc:
            await app.result(rid, timeout=10)
    assert calls["n"] == 2  # the breaker opened after 2 failures; later attempts never reached the tool
    assert exc.value.error["type"] == "CircuitOpen"
    state = await app.store.get_flag("breaker:tool:down")
    assert state is not None and state["state"] == "open"
    await app.close()


async def test_budget_exceeded_completes_with_the_partial_result(sqlite_url: str) -> None:
    app = sw.App("budget", db=sqlite_url)

    async def spend(i: int) -> int:
        if i == 3:
            raise sw.BudgetExceeded("cap reached")
        return i

    @app.workflow(name="w", version="1")
    async def w(ctx: sw.Context) -> str:
        for i in range(10):
            ctx.partial({"done": i})
            await ctx.step(f"s{i}", spend, i)
        return "all"

    async with app.worker(concurrency=1):
        rid = await app.start("w")
        out = await app.result(rid, timeout=10)
    assert out == {"partial": True, "budget_exceeded": True, "result": {"done": 3}}
    info = await app.get_run(rid)
    assert info.status == "COMPLETED" and info.partial and info.budget_exceeded
    await app.close()


async def test_replay_reproduces_a_run_without_executing_anything(db_url: str) -> None:
    app, state = make_app(db_url)
    async with app.worker(concurrency=2):
        rid = await app.start("order", {"order_id": "A1", "cents": 5})
        await app.result(rid, timeout=20)
    calls_before = dict(state["calls"])
    ledger_before = dict(state["ledger"])
    report = await app.replay(rid)
    assert report.outcome == "identical", report.detail
    assert report.steps_replayed == 5 and report.output_matches
    assert state["calls"] == calls_before and state["ledger"] == ledger_before  # nothing ran again
    # change the code under the recorded run: the replay reports the divergence
    wdef = app.workflow_def("order")
    original = wdef.fn

    async def changed(ctx: sw.Context, ticket: Ticket) -> dict:
        await ctx.step("triple", _double, ticket.cents)
        return {}

    wdef.fn = changed
    diverged = await app.replay(rid)
    assert diverged.outcome == "diverged" and "'triple'" in diverged.detail
    wdef.fn = original
    await app.close()


async def test_fork_reuses_the_journal_before_a_step(sqlite_url: str) -> None:
    app, state = make_app(sqlite_url)
    async with app.worker(concurrency=2):
        rid = await app.start("order", {"order_id": "A1", "cents": 5})
        first = await app.result(rid, timeout=20)
        flaky_calls = state["calls"]["flaky"]
        forked = await app.fork(rid, from_step=5)
        second = await app.result(forked, timeout=20)
    assert state["calls"]["flaky"] == flaky_calls  # steps 0-2 came from the journal
    assert second["cents"] == first["cents"] and second["paid"]["key"] == f"{forked}:8"
    assert (await app.get_run(forked)).meta["forked_from"] == rid
    await app.close()
