"""The bundled reference workflow: a customer-support refund.

It looks up the order (in the sandbox, with a scoped credential), checks it with a flaky fraud
service (retried), issues the refund with an idempotency key, and emails the customer. When a
later step fails for good, the refund is voided by its compensation.

Payments are written to a small SQLite ledger beside the Stalwart database, keyed by the
idempotency key, so a retried or replayed refund can never be paid twice.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

import stalwart as sw
from stalwart.errors import ToolError
from stalwart.examples import orders
from stalwart.memory import summarise_run

app = sw.App("support", policies="policies")
"""Its Cedar bundle, ``stalwart/examples/policies`` (refunds over 100 USD wait for a human review),
seeds a store that holds no policy version, wherever the process runs."""

BOUNCING_DOMAINS = ("bounce.invalid",)
_fraud_calls: dict[str, int] = {}


def ledger_path() -> Path:
    """The demo payment ledger: ``STALWART_DEMO_LEDGER``, else beside the default database."""
    return Path(os.environ.get("STALWART_DEMO_LEDGER", ".stalwart/payments.db"))


def _ledger() -> sqlite3.Connection:
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute(
        "CREATE TABLE IF NOT EXISTS payments (idempotency_key TEXT PRIMARY KEY, order_id TEXT, cents INTEGER,"
        " kind TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP)"
    )
    return db


lookup_order = app.tool(scopes=["read:orders"], timeout_s=5)(orders.lookup_order)
"""Runs sandboxed (the default) with a credential scoped to read:orders for the run's org."""
customer_history = app.tool(scopes=["read:orders"], timeout_s=5)(orders.customer_history)


@app.tool(sandbox="none", max_attempts=4)
def check_fraud(order_id: str, cents: int, *, idempotency_key: str) -> dict:
    """Score the refund with the fraud service; it times out on the first call of each run."""
    n = _fraud_calls.get(idempotency_key, 0) + 1
    _fraud_calls[idempotency_key] = n
    if n == 1:
        raise ToolError("fraud service timed out (simulated)", retryable=True)
    return {"order_id": order_id, "score": 3 if cents < 10_000 else 41, "attempt": n}


def void_refund(order_id: str, cents: int, *, idempotency_key: str) -> dict:
    """Compensation for :func:`issue_refund`: record a void of the same amount, once."""
    with closing(_ledger()) as db:
        db.execute(
            "INSERT OR IGNORE INTO payments (idempotency_key, order_id, cents, kind) VALUES (?,?,?,'void')",
            (idempotency_key, order_id, -cents),
        )
    return {"voided": order_id, "cents": cents}


@app.tool(scopes=["write:payments"], mutating=True, compensate=void_refund, sandbox="none")
def issue_refund(order_id: str, cents: int, *, idempotency_key: str) -> dict:
    """Pay the refund. The ledger's primary key is the idempotency key: a retry pays nothing twice."""
    with closing(_ledger()) as db:
        db.execute(
            "INSERT OR IGNORE INTO payments (idempotency_key, order_id, cents, kind) VALUES (?,?,?,'refund')",
            (idempotency_key, order_id, cents),
        )
        row = db.execute("SELECT cents FROM payments WHERE idempotency_key=?", (idempotency_key,)).fetchone()
    return {"order_id": order_id, "refunded_cents": row[0], "payment_id": idempotency_key}


SENT_MAIL: list[dict[str, str]] = []
"""What the demo's mail server accepted (in-process; the demo prints the recipients)."""


@app.tool(sandbox="none", max_attempts=2, pii_fields=["to"])
def send_email(to: str, subject: str, body: str) -> dict:
    """Send the confirmation email. ``to`` is re-hydrated from the vault: the model only ever
    saw a placeholder. Addresses at a bouncing domain fail permanently."""
    if "@" not in to:
        raise ToolError(f"cannot send to {to!r}: not an email address", retryable=False)
    if to.endswith(BOUNCING_DOMAINS):
        raise ToolError("the mailbox rejected the message (permanent bounce)", retryable=False)
    SENT_MAIL.append({"to": to, "subject": subject})
    return {"delivered": True, "message_id": f"msg-{len(SENT_MAIL)}"}


async def recall_previous(org: str, user: str, query: str) -> dict:
    """The customer's earlier tickets, from episodic memory (org- and customer-scoped)."""
    memory = await app.memory()
    return (await memory.recall(org or "default", user or "anonymous", query, k=3, tier="episodic")).to_json()


async def record_episode(org: str, user: str, run_id: str, summary: str) -> dict:
    """Remember this ticket's outcome for the customer's next one (redacted, with a TTL)."""
    memory = await app.memory()
    return (await memory.record_episode(org or "default", user or "anonymous", run_id, summary)).to_json()


class Reply(BaseModel):
    """The confirmation email the model drafts."""

    email: str
    subject: str
    body: str


class Triage(BaseModel):
    """What the model must extract from a ticket (validated; free text never drives a decision)."""

    order_id: str
    intent: Literal["refund", "cancel", "complaint", "question", "other"]
    amount_cents: int = Field(ge=0)
    urgency: Literal["low", "normal", "high"]


_ORDER_ID = re.compile(r"\b[A-Z]{1,4}-\d{3,10}\b")
_ADDRESS = re.compile(r"\{\{EMAIL_\d+\}\}|[^@\s]+@[^@\s]+\.[^@\s]+")
_AMOUNTS = (
    re.compile(r"[$€£]\s?(\d{1,7}(?:,\d{3})*(?:\.\d{1,2})?)"),
    re.compile(r"\b(\d{1,7}(?:,\d{3})*(?:\.\d{1,2})?)\s?(?:usd|dollars?|eur|euros?|gbp)\b", re.IGNORECASE),
)


def _ticket_text(ticket: Any) -> str:
    if isinstance(ticket, dict):
        return "\n".join(_ticket_text(v) for v in ticket.values())
    return ticket if isinstance(ticket, str) else ""


def stated_amounts(text: str) -> set[int]:
    """Every amount of money ``text`` writes ($49.99, 20 dollars, €5), in cents."""
    return {round(float(m.group(1).replace(",", "")) * 100) for pat in _AMOUNTS for m in pat.finditer(text)}


def checked_triage(ticket: dict) -> type[Triage]:
    """:class:`Triage` checked against the ticket it was read from: the order id must be one the
    ticket writes, the amount one it states (in cents), or 0 when it states none. A model that
    reads "$10" as 10 cents fails validation here, so the gateway sends it a correction prompt and,
    if it is still wrong, hands the call to the route's next model. Same JSON schema as Triage."""
    text = _ticket_text(ticket)
    order_ids = set(_ORDER_ID.findall(text))
    amounts = stated_amounts(text)

    class Triage_(Triage):
        __doc__ = Triage.__doc__  # the JSON schema's description: the same as Triage's
        model_config = ConfigDict(title="Triage")

        @field_validator("order_id")
        @classmethod
        def _written(cls, v: str) -> str:
            if order_ids and v not in order_ids:
                raise ValueError(f"{v!r} is not an order id the ticket writes; copy it exactly (like A-1234)")
            return v

        @field_validator("amount_cents")
        @classmethod
        def _stated(cls, v: int) -> int:
            if not amounts and v != 0:
                raise ValueError(f"{v} but the ticket states no amount: answer 0")
            if amounts and v not in amounts:
                raise ValueError(f"{v} is not the amount the ticket states in cents ($12.50 is 1250)")
            return v

    Triage_.__name__ = Triage_.__qualname__ = "Triage"
    return Triage_


def checked_reply(cents: int) -> type[Reply]:
    """:class:`Reply` that must be addressed as the ticket gives it (an address, or its
    ``{{EMAIL_n}}`` placeholder) and state the amount actually refunded."""
    amount = f"{cents / 100:.2f} USD"

    class Reply_(Reply):
        __doc__ = Reply.__doc__
        model_config = ConfigDict(title="Reply")

        @field_validator("email")
        @classmethod
        def _address(cls, v: str) -> str:
            if not _ADDRESS.fullmatch(v.strip()):
                raise ValueError(f"{v!r} is not the customer's email as the ticket gives it (e.g. {{{{EMAIL_1}}}})")
            return v

        @field_validator("body")
        @classmethod
        def _amount(cls, v: str) -> str:
            if amount not in v:
                raise ValueError(f"the body must state the amount refunded, exactly: {amount}")
            return v

    Reply_.__name__ = Reply_.__qualname__ = "Reply"
    return Reply_



@app.workflow(
    name="refund",
    version="1",
    tools=[lookup_order, customer_history, check_fraud, issue_refund, send_email],
    role="support",
    budget=sw.Budget(max_tokens=20_000, max_usd=0.50),
)
async def refund(ctx: sw.Context, ticket: dict) -> dict:
    """Handle one refund ticket end to end."""
    triage = await ctx.llm("triage", template="triage@1", vars={"ticket": ticket}, output=checked_triage(ticket))
    if triage.intent not in ("refund", "complaint"):
        return {"decision": "routed_to_human", "intent": triage.intent, "order_id": triage.order_id}
    order_id = triage.order_id
    previous = await ctx.step("recall_previous", recall_previous, ctx.org, ctx.user,
                              f"{triage.intent} order {order_id} {ticket.get('message', '')}")
    order, history = await ctx.parallel(  # two sandboxes at once; replay-safe
        ctx.tool(lookup_order, order_id=order_id),
        ctx.tool(customer_history, order_id=order_id),
    )
    cents = triage.amount_cents or int(order["total_cents"])
    if cents > order["total_cents"]:
        return {"decision": "rejected", "reason": "refund exceeds the order total", "order_id": order_id}
    fraud = await ctx.tool(check_fraud, order_id=order_id, cents=cents)
    ctx.partial({"decision": "pending", "order_id": order_id, "fraud_score": fraud["score"]})
    payment = await ctx.tool(issue_refund, order_id=order_id, cents=cents)
    reply = await ctx.llm("reply", template="reply@1", output=checked_reply(cents), vars={
        "ticket": ticket, "subject": f"Your refund for {order_id}", "body": f"We refunded {cents / 100:.2f} USD."})
    await ctx.tool(send_email, to=reply.email, subject=reply.subject, body=reply.body)
    out = {"decision": "refunded", "order_id": order_id, "cents": cents, "payment_id": payment["payment_id"],
           "fraud_score": fraud["score"], "earlier_tickets": len(history),
           "previous_runs": [i["run_id"] for i in previous["items"] if i.get("run_id")]}
    await ctx.step("remember_episode", record_episode, ctx.org, ctx.user, ctx.run_id,
                   summarise_run("refund", ticket, out))
    return out


def ledger_rows() -> list[tuple[Any, ...]]:
    """Every payment row, for the demo's summary."""
    with closing(_ledger()) as db:
        return db.execute("SELECT idempotency_key, order_id, cents, kind FROM payments ORDER BY rowid").fetchall()
