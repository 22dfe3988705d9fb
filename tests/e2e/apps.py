"""Workflows the API tests drive: an echo, a slow one, and a refund that waits for a human review.

``app`` (``tests.e2e.apps:app``) is what a subprocess server loads; tests build their own with
:func:`build_app` against a throwaway database.
"""

from __future__ import annotations

import asyncio
from typing import Any

import stalwart as sw


def build_app(db: str | None = None) -> sw.App:
    app = sw.App("api-tests", db=db)

    @app.workflow(name="echo")
    async def echo(ctx: sw.Context, payload: dict) -> dict:
        return {"echo": payload}

    async def nap(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @app.workflow(name="slow")
    async def slow(ctx: sw.Context, payload: dict) -> dict:
        done = []
        for i in range(int(payload.get("steps", 3))):
            done.append(await ctx.step(f"nap{i}", nap, float(payload.get("seconds", 0.5))))
        return {"slept": sum(done)}

    def assess(ticket: dict) -> dict:
        cents = int(ticket["cents"])
        factors = [
            {
                "name": "amount over the 100.00 USD auto-approve limit",
                "weight": 50,
                "contribution": 50.0 if cents > 10_000 else 0.0,
            }
        ]
        if ticket.get("new_customer"):
            factors.append(
                {"name": "customer account younger than 30 days", "weight": 30, "contribution": 30.0}
            )
        score = min(100.0, 30.0 + sum(f["contribution"] for f in factors))
        return {
            "score": score,
            "action": "review" if score > 70 else "allow",
            "thresholds": [70, 90],
            "factors": factors,
            "inputs": {"cents": cents},
        }

    async def request_review(run_id: str, org: str, user: str, ticket: dict, risk: dict) -> dict:
        review = (
            await (await app.governance())
            .reviews
            .create(
                run_id,
                1,
                user,
                {"tool": "issue_refund", "args": {"order_id": ticket["order_id"], "cents": ticket["cents"]}},
                risk=risk,
                policy={"decision": "review", "reasons": ["refunds.cedar: amount over limit"]},
                org=org,
            )
        )
        return review.to_json()

    @app.workflow(name="refund")
    async def refund(ctx: sw.Context, ticket: dict) -> dict:
        risk = await ctx.step("assess", assess, ticket)
        review = await ctx.step("request_review", request_review, ctx.run_id, ctx.org, ctx.user, ticket, risk)
        decision: Any = (
            review
            if review["status"] == "auto_approved"
            else await ctx.wait_signal(f"review:{review['id']}", timeout=86_400)
        )
        if not decision or not decision.get("approved", decision.get("status") == "auto_approved"):
            return {"decision": "rejected", "review_id": review["id"]}
        args = decision.get("args") or review["proposed_action"]["args"]
        return {
            "decision": "refunded",
            "order_id": args["order_id"],
            "cents": args["cents"],
            "review_id": review["id"],
            "approved_by": decision.get("reviewer"),
        }

    return app


app = build_app()
