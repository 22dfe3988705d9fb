"""The app the chaos and fencing tests run in separate worker processes.

Its tools write to a ledger table in the test's PostgreSQL database keyed by the injected
idempotency key, and log every invocation (deduplicated or not) to a calls table.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import psycopg

import stalwart as sw

app = sw.App("chaos")
app.default_retry = sw.RetryPolicy(max_attempts=20, initial_s=0.05, max_s=0.5)

LEDGER_URL = os.environ.get("CHAOS_LEDGER_URL", "")
LLM_URL = os.environ.get("CHAOS_LLM_URL", "")
"""An OpenAI-protocol server that streams (the test's fake), for the workflows that stream."""
if LLM_URL:
    from stalwart.engine import StreamLimits
    from stalwart.settings import ModelEntry, RouteEntry

    app.settings = app.settings.model_copy(update={
        "models": {"fake": ModelEntry(provider="openai", model="gpt-4o-2024-08-06", base_url=LLM_URL,
                                      price_in_per_mtok=2.5, price_out_per_mtok=10.0)},
        "routes": {"default": RouteEntry(models=["fake"])},
    })
    app.stream_limits = StreamLimits(max_chars=40, max_delay_s=0.05)  # many small batches: many cut points


def setup_ledger(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, run TEXT NOT NULL, amount INT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS calls (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, pid INT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS slow_started (pid INT NOT NULL, at TIMESTAMPTZ DEFAULT now())")


@app.tool(sandbox="none", mutating=True)
def credit(run: str, amount: int, *, idempotency_key: str) -> int:
    """Credit ``amount`` exactly once per idempotency key."""
    with psycopg.connect(LEDGER_URL, autocommit=True) as conn:
        conn.execute("INSERT INTO calls (key, pid) VALUES (%s, %s)", (idempotency_key, os.getpid()))
        conn.execute(
            "INSERT INTO ledger (key, run, amount) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING",
            (idempotency_key, run, amount),
        )
        row = conn.execute("SELECT amount FROM ledger WHERE key=%s", (idempotency_key,)).fetchone()
    assert row is not None
    time.sleep(random.uniform(0, 0.3))  # widen the window between the side effect and the journal commit
    return int(row[0])


async def jitter_sleep(ms: int) -> int:
    await asyncio.sleep(random.uniform(0, ms) / 1000)
    return ms


async def slow(seconds: float) -> int:
    with psycopg.connect(LEDGER_URL, autocommit=True) as conn:
        conn.execute("INSERT INTO slow_started (pid) VALUES (%s)", (os.getpid(),))
    await asyncio.sleep(seconds)
    return os.getpid()


@app.workflow(name="ledger", version="1", tools=[credit])
async def ledger(ctx: sw.Context, n: int) -> int:
    total = 0
    for i in range(3):
        await ctx.step(f"think-{i}", jitter_sleep, 1000)
        total += await ctx.tool(credit, run=ctx.run_id, amount=n + i)
    return total


@app.workflow(name="fenced", version="1", tools=[credit])
async def fenced(ctx: sw.Context, seconds: float) -> dict:
    pid = await ctx.step("slow", slow, seconds)
    amount = await ctx.tool(credit, run=ctx.run_id, amount=1)
    return {"slow_pid": pid, "amount": amount}


@app.workflow(name="streamer", version="1")
async def streamer(ctx: sw.Context, topic: str) -> str:
    await ctx.emit("start", {"topic": topic})
    text = await ctx.llm("default", messages=[{"role": "user", "content": f"tell me about {topic}"}], stream=True)
    await ctx.emit("end", {"chars": len(text)})
    return str(text)
