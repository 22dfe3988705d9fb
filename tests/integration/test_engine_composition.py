"""Parallel branches, deterministic under replay; compensation in reverse order of completion."""

from __future__ import annotations

import asyncio
import json

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


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


async def test_a_schedule_fires_once_per_tick_with_two_workers(db_url: str) -> None:
    from stalwart.engine._schedules import fire_due

    clock = FakeClock(1_800_000_000.0)  # 2027-01-15T08:00:00Z, a multiple of 5 minutes
    apps = [sw.App("cron", db=db_url, clock=clock) for _ in range(2)]
    for app in apps:
        @app.workflow(name="digest", version="1")
        async def digest(ctx: sw.Context, tick: str) -> str:
            return tick

        app.schedule("*/5 * * * *", workflow="digest", name="digest")(lambda t: t.isoformat())
        await app.connect()
    for app in apps:  # the first pass records where the schedule starts
        assert await fire_due(app, app.schedules["digest"]) == []
    started: list[str] = []
    for minute in range(1, 21):  # 20 minutes: ticks at +5, +10, +15, +20
        clock.t = 1_800_000_000.0 + 60 * minute
        for app in apps:
            started += await fire_due(app, app.schedules["digest"])
    runs = await apps[0].list_runs(workflow="digest")
    assert len(runs) == 4 and len(set(started)) == 4  # both workers saw every tick; one run each
    await apps[0].pause_schedule("digest")
    clock.t += 600
    assert await fire_due(apps[1], apps[1].schedules["digest"]) == []
    await apps[0].pause_schedule("digest", paused=False)
    clock.t += 3600  # an hour of downtime: "latest" fires only the most recent missed tick
    assert len(await fire_due(apps[1], apps[1].schedules["digest"])) == 1
    for app in apps:
        await app.close()


async def test_due_ticks_catch_up_policies() -> None:
    from stalwart.engine._schedules import due_ticks

    base = 1_800_000_000.0
    assert len(due_ticks("*/5 * * * *", base, base + 3600, "all")) == 12
    assert due_ticks("*/5 * * * *", base, base + 3600, "latest") == [base + 3600]
    assert due_ticks("*/5 * * * *", base, base + 3600 + 120, "skip") == []
    assert due_ticks("*/5 * * * *", base, base + 299, "all") == []


async def test_stale_data_falls_back_visibly_and_a_stale_fallback_is_never_used(sqlite_url: str) -> None:
    clock = FakeClock(1_800_000_000.0)
    app = sw.App("fresh", db=sqlite_url, clock=clock)
    app.default_retry = sw.RetryPolicy(max_attempts=1)
    cache_age = {"s": 5.0}

    @app.tool(sandbox="none")
    def price_cache(sku: str) -> dict:
        return {"sku": sku, "cents": 900, "as_of": clock.t - cache_age["s"]}

    @app.tool(sandbox="none", max_staleness_s=60, fallback=price_cache)
    def price_live(sku: str) -> dict:
        return {"sku": sku, "cents": 1000, "as_of": clock.t - 3600}  # the live feed is an hour behind

    @app.workflow(name="w", version="1", tools=[price_live])
    async def w(ctx: sw.Context) -> dict:
        return await ctx.tool(price_live, sku="X")

    async with app.worker(concurrency=1):
        rid = await app.start("w")
        assert (await app.result(rid, timeout=20))["cents"] == 900
        [_policy, entry] = await app.journal(rid)
        assert entry.meta["fallback"]["tool"] == "price_cache" and entry.meta["fallback"]["outcome"] == "used"
        assert "stale_data" in entry.meta["fallback"]["because"]
        from stalwart.telemetry import explain

        text = explain(await app.get_run(rid), await app.journal(rid)).to_text()
        assert "fell back to price_cache (used)" in text  # visible in `stalwart run explain`
        cache_age["s"] = 7200  # now the fallback is stale as well
        rid2 = await app.start("w")
        with pytest.raises(sw.WorkflowFailed) as exc:
            await app.result(rid2, timeout=20)
    assert exc.value.error["type"] == "StaleData" and "fallback 'price_cache' failed too" in exc.value.error["message"]
    await app.close()


async def test_child_workflows_run_durably_roll_up_cost_and_are_cancelled_with_their_parent(sqlite_url: str) -> None:
    app = sw.App("kids", db=sqlite_url)

    async def double(x: int) -> int:
        return 2 * x

    @app.workflow(name="kid", version="1")
    async def kid(ctx: sw.Context, x: int) -> int:
        return await ctx.step("double", double, x)

    @app.workflow(name="slow-kid", version="1")
    async def slow_kid(ctx: sw.Context) -> str:
        await ctx.wait_signal("never")
        return "unreachable"

    @app.workflow(name="parent", version="1", budget=sw.Budget(max_tokens=1000))
    async def parent(ctx: sw.Context, n: int) -> list:
        results = await ctx.parallel(ctx.child("kid", n), ctx.child("kid", n + 1))
        return results

    @app.workflow(name="impatient", version="1")
    async def impatient(ctx: sw.Context) -> None:
        await ctx.parallel(ctx.child("slow-kid"), ctx.step("boom", _explode))

    async with app.worker(concurrency=8, poll_interval_s=0.05):
        rid = await app.start("parent", 5, org="acme")
        assert await app.result(rid, timeout=20) == [10, 12]
        children = [r for r in await app.list_runs(workflow="kid")]
        assert len(children) == 2 and all(c.org == "acme" for c in children)
        for c in children:
            rec = await app.store.get_run(c.id)
            assert rec is not None and rec.parent_id == rid
        assert all(c.meta["budget_cap"]["max_tokens"] == 1000 for c in children)
        bad = await app.start("impatient")
        with pytest.raises(sw.WorkflowFailed):
            await app.result(bad, timeout=20)
        [orphan] = await app.list_runs(workflow="slow-kid")
        for _ in range(100):
            if (await app.get_run(orphan.id)).status == "CANCELLED":
                break
            await asyncio.sleep(0.05)
        assert (await app.get_run(orphan.id)).status == "CANCELLED"  # parent-close policy: cancel
    await app.close()


async def _explode() -> None:
    await asyncio.sleep(0.3)
    raise ToolError("boom", retryable=False)


async def test_http_tool_backs_off_on_429_without_holding_a_worker(sqlite_url: str) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[dict] = []

    class Service(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            seen.append({"auth": self.headers.get("authorization"), "key": self.headers.get("idempotency-key"),
                         "body": body})
            if len(seen) <= 2:  # overloaded: back off
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.end_headers()
                return
            out = json.dumps({"quote_cents": body["cents"] + 1}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    app = sw.App("http", db=sqlite_url)
    quote = app.http_tool("quote", url=f"http://127.0.0.1:{httpd.server_port}/quote", scopes=["read:quotes"])

    @app.workflow(name="w", version="1", tools=[quote])
    async def w(ctx: sw.Context) -> dict:
        return await ctx.tool(quote, cents=100)

    statuses: set[str] = set()
    async with app.worker(concurrency=1, poll_interval_s=0.05):
        rid = await app.start("w", org="acme")
        for _ in range(200):
            info = await app.get_run(rid)
            statuses.add(info.status.value)
            if info.status.value == "COMPLETED":
                break
            await asyncio.sleep(0.02)
        assert await app.result(rid, timeout=20) == {"quote_cents": 101}
    httpd.shutdown()
    assert "WAITING" in statuses  # the Retry-After wait released the worker
    assert len(seen) == 3 and len({s["key"] for s in seen}) == 1  # one idempotency key across retries
    token = seen[-1]["auth"].removeprefix("Bearer ")
    broker = await app.credential_broker()
    await broker.refresh()
    claims = await broker.verify(token, "read:quotes", org="acme")
    assert claims.tool == "quote"
    await app.close()


async def test_a_worse_prompt_canary_rolls_back_on_its_own(tmp_path, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    good = 'system = "You greet people."\nuser = "Say hello to {{ name }}."\n[slots.name]\ntype = "str"\npart = "user"\n'
    (prompts / "greet@1.toml").write_text(good)
    # the new version references a slot it never declares: every render fails
    (prompts / "greet@2.toml").write_text(good.replace("{{ name }}.", "{{ name }} in {{ language }}."))
    settings = sw.load_settings(db=sqlite_url).model_copy(update={"prompts_dir": str(prompts)})
    app = sw.App("canary", settings=settings)
    app.default_retry = sw.RetryPolicy(max_attempts=1)

    @app.workflow(name="greet", version="1")
    async def greet(ctx: sw.Context, name: str) -> str:
        return await ctx.llm("default", template="greet@1", vars={"name": name})

    await app.canary("template", "greet", baseline="1", candidate="2", percent=50, key="run", min_runs=6,
                     operator="user:release-manager")
    async with app.worker(concurrency=4):
        outcomes = []
        for i in range(60):
            rid = await app.start("greet", f"n{i}")
            try:
                await app.result(rid, timeout=20)
                outcomes.append(True)
            except sw.WorkflowFailed:
                outcomes.append(False)
            if (await app.canary_stats("template", "greet"))["canary"]["status"] == "rolled_back":
                break
        stats = await app.canary_stats("template", "greet")
        assert stats["canary"]["status"] == "rolled_back", (stats, outcomes)
        assert stats["arms"]["candidate"]["error_rate"] == 1.0 and stats["arms"]["baseline"]["error_rate"] == 0.0
        after = [await app.start("greet", f"after{i}") for i in range(10)]
        for rid in after:  # everything goes to the baseline now
            await app.result(rid, timeout=20)
    gov = await app.governance()
    rows = await gov.audit.db.events_by_type(["canary.started", "canary.rolled_back"])
    bodies = [json.loads(body) for _seq, body in rows]
    assert [b["event_type"] for b in bodies] == ["canary.started", "canary.rolled_back"]
    assert bodies[0]["actor"] == "user:release-manager" and bodies[1]["actor"] == "system:canary"
    await app.close()


async def test_a_large_tool_result_lands_in_the_artifact_store(tmp_path, sqlite_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import base64

    monkeypatch.setenv("STALWART_MASTER_KEY", base64.b64encode(b"a" * 32).decode())
    monkeypatch.chdir(tmp_path)
    app = sw.App("big", db=sqlite_url)
    app.artifact_inline_limit = 10_000

    @app.tool(sandbox="none")
    def report(rows: int) -> dict:
        return {"rows": [{"i": i, "text": "x" * 40} for i in range(rows)]}

    @app.workflow(name="w", version="1", tools=[report])
    async def w(ctx: sw.Context) -> int:
        big = await ctx.tool(report, rows=2000)
        small = await ctx.tool(report, rows=3)
        return len(big["rows"]) + len(small["rows"])

    async with app.worker(concurrency=1):
        rid = await app.start("w")
        assert await app.result(rid, timeout=30) == 2003
    big, small = [e for e in await app.journal(rid) if e.kind == "tool"]
    assert '"$artifact"' in big.result_json and len(big.result_json) < 400  # only the reference in the row
    assert big.meta["artifact"]["size"] > 10_000
    assert '"$artifact"' not in small.result_json
    assert (await app.replay(rid)).outcome == "identical"  # replay reads the artifact back
    blobs = list((tmp_path / ".stalwart" / "artifacts").rglob("*"))
    assert any(p.is_file() for p in blobs) and not any(b"xxxxxxxx" in p.read_bytes() for p in blobs if p.is_file())
    await app.close()
