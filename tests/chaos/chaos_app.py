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
