"""The app of the SDK agent chaos test, run in separate worker processes.

The same scripted three-turn agent and ledger as ``agent_chaos_app`` (two credits at once, then
one, then one more, then an answer), written once with Pydantic AI and once with the OpenAI Agents
SDK, both run through ``stalwart.integrations``.
"""

from __future__ import annotations

import os
import random
import time

import psycopg
from agents import Agent as OpenAIAgent
from agents import function_tool
from pydantic_ai import Agent as PydanticAgent

import stalwart as sw
from stalwart.integrations import openai_agents, pydantic_ai
from tests.chaos.agent_chaos_app import LEDGER_URL, script, setup_ledger

__all__ = ["app", "setup_ledger"]

app = sw.App("sdk-agent-chaos", local_rules=[script])
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


pai_agent = PydanticAgent(instructions="Credit the ticket.", tools=[credit])
oai_agent = OpenAIAgent(name="credits", instructions="Credit the ticket.", tools=[function_tool(credit)])


@app.workflow(name="pai-ledger", version="1", tools=[credit])
async def pai_ledger(ctx: sw.Context, n: int) -> dict:
    result = await pydantic_ai.run(ctx, pai_agent, f"ticket {n}")
    return {"output": result.output, "requests": result.usage.requests}


@app.workflow(name="oai-ledger", version="1", tools=[credit])
async def oai_ledger(ctx: sw.Context, n: int) -> dict:
    result = await openai_agents.run(ctx, oai_agent, f"ticket {n}")
    return {"output": result.final_output, "requests": result.context_wrapper.usage.requests}
