"""Budgets, the response cache and shared limits, with the real SQLite store (and Redis when up)."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stalwart.errors import BudgetExceeded
from stalwart.gateway import Budget, CallContext, Gateway, LLMRequest
from stalwart.settings import ModelEntry, RouteEntry, Settings
from stalwart.store import Store, open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # until pytest's pythonpath has the repo root
from tests.fakes import FakeLLMServer

MODEL, BACKUP = "gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"
LONG = "word " * 400


class Clock:
    def __init__(self, t: float = 1_790_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def srv(server: FakeLLMServer) -> FakeLLMServer:
    server.reset()
    return server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = await open_store(f"sqlite:///{tmp_path}/gw.db", migrate=True)
    yield st
    await st.close()


def settings(srv: FakeLLMServer, **kw: object) -> Settings:
    def entry(model: str, **extra: object) -> ModelEntry:
        return ModelEntry(
            provider="openai",
            model=model,
            base_url=srv.openai_url,
            price_in_per_mtok=2.5,
            price_out_per_mtok=10.0,
            **extra,
        )  # type: ignore[arg-type]

    return Settings(
        models={"primary": entry(MODEL, **kw), "backup": entry(BACKUP)},
        routes={"default": RouteEntry(models=["primary", "backup"])},
    )


def ask(text: str = "hello", **kw: object) -> LLMRequest:
    return LLMRequest("chat", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def test_budget_stops_a_runaway_loop_at_exactly_its_cap(srv: FakeLLMServer, store: Store) -> None:
    srv.reply(LONG)
    alerts: list[dict[str, object]] = []
    gw = Gateway(settings(srv), store, on_alert=alerts.append)
    cap = Budget(max_tokens=1000)
    spent_tokens, spent_usd, calls = 0, 0.0, 0
    with pytest.raises(BudgetExceeded):
        for _ in range(100):  # a runaway agent loop: it would go on forever
            res = await gw.complete(
                ask("go on", max_tokens=100),
                CallContext("run-1", budget=cap, spent_tokens=spent_tokens, spent_usd=spent_usd),
            )
            spent_tokens += res.tokens_in + res.tokens_out
            spent_usd += res.cost_usd
            calls += 1
    assert spent_tokens == 1000, "the loop stops exactly at the cap, never past it"
    assert srv.count() == calls and 8 <= calls <= 10, "the refused call never reached the provider"
    assert [a["threshold"] for a in alerts] == [50, 80, 95, 100]
    assert all(a["run_id"] == "run-1" and a["scope"] == "run" for a in alerts)
    await gw.aclose()


async def test_usd_cap_is_never_exceeded(srv: FakeLLMServer, store: Store) -> None:
    srv.reply(LONG)
    gw = Gateway(settings(srv), store)
    cap = Budget(max_usd=0.005)
    spent_tokens, spent_usd = 0, 0.0
    with pytest.raises(BudgetExceeded):
        for _ in range(100):
            res = await gw.complete(
                ask(max_tokens=200),
                CallContext("r", budget=cap, spent_tokens=spent_tokens, spent_usd=spent_usd),
            )
            spent_tokens += res.tokens_in + res.tokens_out
            spent_usd += res.cost_usd
    assert 0.005 - 20 * 2.5e-6 <= spent_usd <= 0.005
    await gw.aclose()


async def test_org_monthly_cap_is_shared_across_workers_and_resets_next_month(
    srv: FakeLLMServer, store: Store
) -> None:
    clock = Clock()
    worker_a = Gateway(settings(srv), store, clock=clock)
    worker_b = Gateway(settings(srv), store, clock=clock)
    await worker_a.set_cap("org", "acme", Budget(max_tokens=60))
    first = await worker_a.complete(ask(), CallContext("r1", org="acme"))
    spent = first.tokens_in + first.tokens_out
    assert (await worker_b.org_spend("acme"))[0] == spent
    with pytest.raises(BudgetExceeded, match="org_month"):
        for i in range(20):
            await worker_b.complete(ask(), CallContext(f"r{i + 2}", org="acme"))
    assert (await worker_a.org_spend("acme"))[0] <= 60
    clock.t += 40 * 86400
    await worker_b.complete(ask(), CallContext("r-next-month", org="acme"))
    await worker_a.aclose()
    await worker_b.aclose()


async def test_user_cap_per_run(srv: FakeLLMServer, store: Store) -> None:
    gw = Gateway(settings(srv), store, user_caps={"intern": Budget(max_tokens=20)})
    with pytest.raises(BudgetExceeded, match="user budget"):
        await gw.complete(ask(max_tokens=50), CallContext("r", user="intern", spent_tokens=20))
    assert srv.count() == 0
    await gw.complete(ask(max_tokens=50), CallContext("r", user="someone-else", spent_tokens=20))
    await gw.aclose()


async def test_cache_hit_costs_nothing(srv: FakeLLMServer, store: Store) -> None:
    clock = Clock()
    gw = Gateway(settings(srv), store, clock=clock, cache_ttl_s=60)
    first = await gw.complete(ask("same question", cacheable=True), CallContext("r1"))
    again = await Gateway(settings(srv), store, clock=clock).complete(
        ask("same question", cacheable=True), CallContext("r2")
    )
    assert first.cached is False and first.cost_usd > 0
    assert again.cached is True and again.tokens_in == again.tokens_out == again.cost_usd == 0
    assert again.text == first.text and again.attempts == [{"model": "primary", "outcome": "cache_hit"}]
    assert srv.count() == 1
    await gw.complete(ask("same question"), CallContext("r3"))
    assert srv.count() == 2, "a call that is neither cacheable nor deterministic is not served from cache"
    clock.t += 61
    expired = await gw.complete(ask("same question", cacheable=True), CallContext("r4"))
    assert expired.cached is False and srv.count() == 3
    await gw.aclose()


async def test_rpm_limit_is_shared_across_workers(srv: FakeLLMServer, store: Store) -> None:
    clock = Clock(1_790_000_010.0)
    a = Gateway(settings(srv, rpm=2), store, clock=clock, sleep=no_sleep)
    b = Gateway(settings(srv, rpm=2), store, clock=clock, sleep=no_sleep)
    assert (await a.complete(ask(), CallContext("r"))).model == "primary"
    assert (await b.complete(ask(), CallContext("r"))).model == "primary"
    third = await a.complete(ask(), CallContext("r"))
    assert third.model == "backup" and "rpm limit" in third.routing["skipped"][0]["why"]
    assert srv.count(model=MODEL) == 2
    await a.aclose()
    await b.aclose()


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.3).close()
        return True
    except OSError:
        return False


@pytest.mark.redis
@pytest.mark.skipif(not _redis_up(), reason="needs Redis at 127.0.0.1:6379")
async def test_cache_in_redis(srv: FakeLLMServer, store: Store) -> None:
    import uuid

    s = settings(srv)
    s = s.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"})
    gw = Gateway(s, store)
    q = f"redis question {uuid.uuid4()}"
    await gw.complete(ask(q, temperature=0), CallContext("r1"))
    hit = await gw.complete(ask(q, temperature=0), CallContext("r2"))
    assert hit.cached and hit.cost_usd == 0 and srv.count() == 1
    await gw.aclose()
