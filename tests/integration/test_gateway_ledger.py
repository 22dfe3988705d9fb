"""Budgets that hold under concurrency: reservations in the ledger of SQLite, PostgreSQL and Redis.

Many calls (streaming and not, through several gateways sharing one store, as several workers
would) race for one org's monthly cap; the money spent never exceeds the cap plus what one call
may cost. Then: a crashed holder's reservation is released when its lease expires, each alert
threshold fires once, and a stream that outgrows its reservation is cut.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.errors import BudgetExceeded
from stalwart.gateway import Budget, CallContext, Gateway, LLMRequest
from stalwart.settings import ModelEntry, RouteEntry, Settings
from stalwart.store import LEDGER_NS, open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fakes import FakeLLMServer

MODEL = "gpt-4o-2024-08-06"
PRICE_IN, PRICE_OUT = 2.5, 10.0
MAX_TOKENS = 200
ANSWER = "word " * 150
REDIS = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def srv(server: FakeLLMServer) -> FakeLLMServer:
    server.reset()
    server.reply(ANSWER)
    return server


def settings(srv: FakeLLMServer, redis: bool = False) -> Settings:
    return Settings(
        models={
            "primary": ModelEntry(
                provider="openai",
                model=MODEL,
                base_url=srv.openai_url,
                price_in_per_mtok=PRICE_IN,
                price_out_per_mtok=PRICE_OUT,
            )
        },
        routes={"default": RouteEntry(models=["primary"])},
        redis_url=REDIS if redis else None,
    )


def ask() -> LLMRequest:
    return LLMRequest("chat", messages=[{"role": "user", "content": "tell me more"}], max_tokens=MAX_TOKENS)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, bool]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db", False
    elif request.param == "postgres":
        from tests.conftest import create_pg_database, drop_pg_database, pg_available

        if not pg_available():
            pytest.skip("needs PostgreSQL at 127.0.0.1:5432")
        url = create_pg_database()
        yield url, False
        drop_pg_database(url)
    else:
        if not _redis_up():
            pytest.skip("needs Redis at 127.0.0.1:6379")
        yield f"sqlite:///{tmp_path}/ledger.db", True


async def test_concurrent_calls_never_spend_past_the_org_cap(
    srv: FakeLLMServer, backend: tuple[str, bool]
) -> None:
    url, redis = backend
    org = f"acme-{secrets.token_hex(4)}"
    stores = [await open_store(url, migrate=True) for _ in range(3)]
    gateways = [Gateway(settings(srv, redis), st) for st in stores]
    # One call costs at most prompt + MAX_TOKENS; a cap of ~10 of them (at actual usage).
    worst = (30 * PRICE_IN + MAX_TOKENS * PRICE_OUT) / 1_000_000
    cap = 10 * worst
    await gateways[0].set_cap("org", org, Budget(max_usd=cap))

    async def one(i: int) -> str:
        gw = gateways[i % len(gateways)]
        seen: list[str] = []

        async def on_delta(piece: str) -> None:
            seen.append(piece)

        try:
            await gw.complete(
                ask(), CallContext(run_id=f"r{i}", org=org), on_delta=on_delta if i % 2 else None
            )
        except BudgetExceeded:
            return "402"
        return "ok"

    outcomes = await asyncio.gather(*(one(i) for i in range(60)))
    _, usd = await gateways[0].org_spend(org)
    ok = outcomes.count("ok")
    # Without reservations every call sees the same room and far more than 10 get through.
    assert 5 <= ok < 30, outcomes  # actual usage is below the worst case, so more than 10 may fit
    assert usd <= cap + worst + 1e-9, (usd, cap)
    assert outcomes.count("402") == 60 - ok
    for gw in gateways:
        await gw.aclose()
    for st in stores:
        await st.close()


async def test_a_crashed_holder_is_released_when_its_lease_expires(
    srv: FakeLLMServer, tmp_path: Path
) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/lease.db", migrate=True)
    now = [1_790_000_000.0]
    gw = Gateway(settings(srv), store, clock=lambda: now[0])
    org = "crashy"
    await gw.set_cap("org", org, Budget(max_tokens=300))

    def all_of_it(rows: dict) -> dict | str:
        return {f"org:{org}:2026-09": (300.0, 0.0)}

    # A worker reserved the whole cap, then died (kill -9): nothing settles its hold.
    month_key = f"org:{org}:2026-09"
    assert await store.ledger_reserve("dead-worker", [month_key], all_of_it, now[0] + 60, now[0]) != ""
    with pytest.raises(BudgetExceeded, match="budget"):
        await gw.complete(ask(), CallContext(run_id="r1", org=org))
    now[0] += 61  # the lease ran out
    result = await gw.complete(ask(), CallContext(run_id="r2", org=org))
    assert result.tokens_out > 0
    assert await store.counter_get(LEDGER_NS, f"{month_key}:tokens") == result.tokens_in + result.tokens_out
    await gw.aclose()
    await store.close()


async def test_each_alert_threshold_fires_once_under_concurrency(srv: FakeLLMServer, tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/alerts.db", migrate=True)
    srv.reply("word " * 400)  # every call uses all of its reservation
    alerts: list[dict] = []
    gw = Gateway(settings(srv), store, on_alert=alerts.append, clock=lambda: 1_790_000_000.0)
    await gw.set_cap("org", "acme", Budget(max_tokens=2000))

    async def one(i: int) -> None:
        try:
            await gw.complete(ask(), CallContext(run_id=f"r{i}", org="acme"))
        except BudgetExceeded:
            pass

    await asyncio.gather(*(one(i) for i in range(20)))
    await gw.aclose()
    fired = sorted(a["threshold"] for a in alerts if a["scope"] == "org_month")
    assert fired == sorted(set(fired)) and {50, 80, 95} <= set(fired), fired
    await store.close()


async def test_a_stream_that_outgrows_its_reservation_is_cut(srv: FakeLLMServer, tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/cut.db", migrate=True)
    gw = Gateway(settings(srv), store)
    await gw.set_cap("org", "acme", Budget(max_tokens=100_000))
    # A server that ignores max_tokens: 20 allowed, it streams 150 words.
    srv.reply(lambda body: ANSWER if body.get("stream") else "x")
    got: list[str] = []

    async def on_delta(piece: str) -> None:
        got.append(piece)

    req = LLMRequest("chat", messages=[{"role": "user", "content": "go"}], max_tokens=20)
    from tests.fakes import llm_server

    original = llm_server._truncate
    llm_server._truncate = lambda text, max_tokens, finish, model: original(text, 10_000, finish, model)
    try:
        with pytest.raises(BudgetExceeded, match="cut"):
            await gw.complete(req, CallContext(run_id="r", org="acme"), on_delta=on_delta)
    finally:
        llm_server._truncate = original
    streamed = "".join(got)
    assert 0 < len(streamed) < len(ANSWER)
    tokens, _ = await gw.org_spend("acme")
    assert 0 < tokens <= 20 + 30  # prompt plus what the reservation covered, not the whole answer
    await gw.aclose()
    await store.close()


async def test_concurrent_workflow_runs_hold_the_org_cap(srv: FakeLLMServer, db_url: str) -> None:
    import stalwart as sw

    srv.reply("word " * 300)  # every call uses all the output its reservation allows
    app = sw.App("ledger-race", settings=settings(srv).model_copy(update={"db": db_url}))

    @app.workflow(name="ask", version="1")
    async def ask_once(ctx: sw.Context) -> str:
        await ctx.llm(
            "default", messages=[{"role": "user", "content": "tell me more"}], max_tokens=MAX_TOKENS
        )
        return "answered"

    gw = await app.gateway()
    worst = (30 * PRICE_IN + MAX_TOKENS * PRICE_OUT) / 1_000_000
    cap = 5 * worst
    await gw.set_cap("org", "acme", Budget(max_usd=cap))
    ids = [await app.start("ask", org="acme") for _ in range(16)]
    async with app.worker(concurrency=16):
        outs = [await app.result(rid, timeout=60) for rid in ids]
    _, usd = await gw.org_spend("acme")
    answered = outs.count("answered")
    assert 1 <= answered <= 6, outs
    assert usd <= cap + worst + 1e-9, (usd, cap)
    await app.close()
