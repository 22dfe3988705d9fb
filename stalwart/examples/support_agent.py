"""The bundled support agent: the model chooses between looking an order up and refunding it.

Written with ``ctx.agent``: each model turn and each tool call is a journaled step, the refund
(a mutating tool) is paid once per idempotency key into a small SQLite ledger, and the loop is
bounded (turns, repeated calls, tool errors). The order lookup runs in the sandbox with a
credential scoped to ``read:orders`` for the run's org.

Offline, the model is the ``local`` provider (not a real LLM) driven by :func:`scripted_support`,
a labelled script that plays a careful agent: look the order up, refund it if asked, answer.
Configure a real model (``[models.*]`` and ``[routes.default]``) and the same workflow runs on it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import stalwart as sw
from stalwart.examples import orders
from stalwart.gateway import ProviderRequest, ProviderResponse


def scripted_support(req: ProviderRequest, facts: dict[str, Any]) -> ProviderResponse | None:
    """The offline stand-in's script for this agent (deterministic; other requests pass through)."""
    offered = {t.get("name") or (t.get("function") or {}).get("name") for t in req.tools or []}
    if "lookup_order" not in offered:
        return None
    called = [tc["function"]["name"] for m in req.messages if m.get("role") == "assistant"
              for tc in m.get("tool_calls") or []]
    results = [json.loads(m["content"]) for m in req.messages if m.get("role") == "tool"]
    order = next((r for r in results if isinstance(r, dict) and "total_cents" in r), None)
    refund = next((r for r in results if isinstance(r, dict) and "refunded_cents" in r), None)
    order_id = facts.get("order_id")
    if order_id and "lookup_order" not in called:
        return _call("lookup_order", {"order_id": order_id})
    wants_refund = facts.get("intent") == "refund"
    if order is not None and wants_refund and "issue_refund" not in called:
        cents = min(int(facts.get("amount_cents") or order["total_cents"]), int(order["total_cents"]))
        return _call("issue_refund", {"order_id": order["order_id"], "cents": cents})
    if refund is not None:
        message = f"We refunded {refund['refunded_cents'] / 100:.2f} USD on order {refund['order_id']}."
    elif order is not None:
        message = f"Order {order['order_id']} is {order.get('status', 'on its way')}."
    else:
        message = "We could not find your order; a colleague will contact you."
    answer = {"order_id": str(order_id or "unknown"), "refunded_cents": int(refund["refunded_cents"]) if refund else 0,
              "message": message}
    return ProviderResponse(json.dumps(answer), 0, 0, "", "stop")


def _call(name: str, args: dict[str, Any]) -> ProviderResponse:
    return ProviderResponse("", 0, 0, "", "tool_calls", [{"id": f"call_{name}", "name": name, "arguments": args}])


app = sw.App("support-agent", policies="policies", local_rules=[scripted_support])
"""The refund example's Cedar bundle, ``stalwart/examples/policies``: a refund over 100 USD waits for a
human review, one over 500 USD is refused (and the model is told so), only the ``support`` role pays."""


def ledger_path() -> Path:
    """The agent's refund ledger: ``STALWART_AGENT_LEDGER``, else beside the default database."""
    return Path(os.environ.get("STALWART_AGENT_LEDGER", ".stalwart/agent-refunds.db"))


def _ledger() -> sqlite3.Connection:
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS refunds (idempotency_key TEXT PRIMARY KEY, order_id TEXT, cents INTEGER)")
    return db


lookup_order = app.tool(scopes=["read:orders"], timeout_s=5)(orders.lookup_order)


@app.tool(scopes=["write:payments"], mutating=True, sandbox="none")
def issue_refund(order_id: str, cents: int, *, idempotency_key: str) -> dict:
    """Refund ``cents`` on an order. Keyed by the idempotency key: a replay or a retry pays nothing twice."""
    with closing(_ledger()) as db:
        db.execute("INSERT OR IGNORE INTO refunds (idempotency_key, order_id, cents) VALUES (?,?,?)",
                   (idempotency_key, order_id, cents))
        row = db.execute("SELECT cents FROM refunds WHERE idempotency_key=?", (idempotency_key,)).fetchone()
    return {"order_id": order_id, "refunded_cents": row[0], "payment_id": idempotency_key}


class Reply(BaseModel):
    """The agent's answer to the customer."""

    order_id: str
    refunded_cents: int
    message: str


@app.workflow(name="support-agent", version="1", tools=[lookup_order, issue_refund], role="support")
async def support_agent(ctx: sw.Context, message: str) -> Reply:
    """Answer one customer message; the model decides which tools to call."""
    res = await ctx.agent(template="support-agent@1", input=message, tools=[lookup_order, issue_refund],
                          output=Reply, max_turns=8)
    if not res.answered:  # a bound stopped it: hand over to a person, saying why
        return Reply(order_id="unknown", refunded_cents=0, message=f"escalated to a colleague ({res.stopped})")
    return res.output  # type: ignore[no-any-return]


def ledger_rows() -> list[tuple[Any, ...]]:
    """Every refund the agent paid (idempotency key, order, cents)."""
    with closing(_ledger()) as db:
        return db.execute("SELECT idempotency_key, order_id, cents FROM refunds ORDER BY rowid").fetchall()
