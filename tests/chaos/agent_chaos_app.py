"""The app of the agent chaos test, run in separate worker processes.

A scripted model (the offline ``local`` provider) plays a three-turn agent: two credits at once,
then one, then one more, then an answer. Each credit writes a ledger row keyed by its injected
idempotency key and logs every invocation, so a side effect done twice, or lost, shows.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import psycopg

import stalwart as sw
from stalwart.gateway import ProviderRequest, ProviderResponse

LEDGER_URL = os.environ.get("CHAOS_LEDGER_URL", "")
TURNS = [[1, 2], [3], [4]]
"""The amounts credited at each turn; every run credits 1 + 2 + 3 + 4 = 10."""


def setup_ledger(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, run TEXT NOT NULL, amount INT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS calls (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, pid INT NOT NULL)")


def script(req: ProviderRequest, facts: dict[str, Any]) -> ProviderResponse:
    n = sum(1 for m in req.messages if m.get("role") == "assistant")
    if n >= len(TURNS):
        return ProviderResponse("credited", 0, 0, "", "stop")
    calls = [{"id": f"t{n}_{i}", "name": "credit", "arguments": {"amount": a}} for i, a in enumerate(TURNS[n])]
    return ProviderResponse("", 0, 0, "", "tool_calls", calls)


app = sw.App("agent-chaos", local_rules=[script])
app.default_retry = sw.RetryPolicy(max_attempts=20, initial_s=0.05, max_s=0.5)


@app.tool(sandbox="none", mutating=True)
def credit(amount: int, *, idempotency_key: str) -> int:
    """Credit ``amount`` exactly once per idempotency key."""
    with psycopg.connect(LEDGER_URL, autocommit=True) as conn:
        conn.execute("INSERT INTO calls (key, pid) VALUES (%s, %s)", (idempotency_key, os.getpid()))
        conn.execute("INSERT INTO ledger (key, run, amount) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING",
                     (idempotency_key, idempotency_key.split(":")[0], amount))
    time.sleep(random.uniform(0.2, 0.5))  # widen the window between the side effect and the journal commit
    return amount


@app.workflow(name="agent-ledger", version="1", tools=[credit])
async def agent_ledger(ctx: sw.Context, n: int) -> dict:
    res = await ctx.agent(template="support-agent@1", input=f"ticket {n}", tools=[credit], max_turns=6)
    return {"stopped": res.stopped, "turns": res.turns, "total": sum(c.result for c in res.tool_calls if c.ok)}
