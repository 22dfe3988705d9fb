"""An OpenAI Agents SDK ``agents.Agent`` (the real ``openai-agents`` package) run inside a workflow:
its model calls are journaled gateway steps, its function tools governed Stalwart tools.

The model is the offline ``local`` provider driven by a script (one list of tool calls per turn,
then an answer); every tool writes to a ledger, so a side effect that should not happen shows.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrailTripwireTriggered,
    function_tool,
    input_guardrail,
)
from pydantic import BaseModel

import stalwart as sw
from stalwart.gateway import ProviderRequest, ProviderResponse
from stalwart.integrations import openai_agents as oai
from stalwart.settings import ModelEntry, RouteEntry, Settings

pytestmark = pytest.mark.asyncio

POLICIES = Path(sw.__file__).resolve().parent / "examples" / "policies"


class Reply(BaseModel):
    order_id: str
    refunded_cents: int
    message: str


class Script:
    """Turn ``n`` (assistant messages so far) plays ``turns[n]``: a list of ``(tool, arguments)``
    calls or a final text; the last entry repeats. Keeps every request it saw."""

    def __init__(self, *turns: Any) -> None:
        self.turns = turns
        self.requests: list[ProviderRequest] = []

    def __call__(self, req: ProviderRequest, facts: dict[str, Any]) -> ProviderResponse:
        self.requests.append(req)
        n = sum(1 for m in req.messages if m.get("role") == "assistant")
        step = self.turns[min(n, len(self.turns) - 1)]
        if isinstance(step, str):
            return ProviderResponse(step, 0, 0, "", "stop")
        calls = [{"id": f"c{n}_{i}", "name": name, "arguments": args} for i, (name, args) in enumerate(step)]
        return ProviderResponse("", 0, 0, "", "tool_calls", calls)


def make_app(db: str, script: Script, *, role: str = "support", policies: Path | None = None,
             settings: Settings | None = None) -> tuple[sw.App, list[tuple[str, Any]]]:
    app = (sw.App("oai-test", settings=settings) if settings is not None
           else sw.App("oai-test", db=db, local_rules=[script], policies=policies))
    ledger: list[tuple[str, Any]] = []

    @app.tool(sandbox="none")
    def lookup_order(order_id: str) -> dict:
        """Fetch an order by id."""
        ledger.append(("lookup_order", order_id))
        return {"order_id": order_id, "total_cents": 4999}

    @app.tool(sandbox="none", mutating=True)
    def issue_refund(order_id: str, cents: int, *, idempotency_key: str) -> dict:
        """Refund an order."""
        ledger.append(("issue_refund", idempotency_key))
        return {"order_id": order_id, "refunded_cents": cents}

    agent = Agent(name="support", instructions="You are a careful support agent.", output_type=Reply,
                  tools=[function_tool(lookup_order), function_tool(issue_refund)], model="gpt-never-called")

    @app.workflow(name="oai", version="1", tools=[lookup_order, issue_refund], role=role)
    async def oai_agent(ctx: sw.Context, message: str) -> dict:
        result = await oai.run(ctx, agent, message)
        assert isinstance(result.final_output, Reply)
        usage = result.context_wrapper.usage
        return {"output": result.final_output.model_dump(), "requests": usage.requests,
                "tool_calls": sum(1 for i in result.new_items if i.type == "tool_call_item")}

    return app, ledger


async def run(app: sw.App, message: str) -> tuple[str, sw.RunInfo]:
    async with app.worker(concurrency=2):
        rid = await app.start("oai", message, org="acme", user="u1")
        try:
            await app.result(rid, timeout=60)
        except sw.StalwartError:
            pass
        return rid, await app.get_run(rid)


ANSWER = json.dumps({"order_id": "A-1001", "refunded_cents": 1200, "message": "refunded"})


async def test_a_multi_turn_openai_agents_agent_runs_governed_and_replays_without_a_model_call(db_url: str) -> None:
    script = Script([("lookup_order", {"order_id": "A-1001"}), ("lookup_order", {"order_id": "A-1002"})],
                    [("issue_refund", {"order_id": "A-1001", "cents": 1200})], ANSWER)
    app, ledger = make_app(db_url, script)
    rid, info = await run(app, "Refund $12 on order A-1001")
    assert info.status == "COMPLETED", info.error
    assert info.output == {"output": json.loads(ANSWER), "requests": 3, "tool_calls": 3}
    assert sorted(k for k, _ in ledger) == ["issue_refund", "lookup_order", "lookup_order"]
    journal = await app.journal(rid)
    kinds = [(e.kind, e.name) for e in journal]
    assert kinds.count(("llm", "default")) == 3 and kinds[-1] == ("llm", "default")
    assert [e.name for e in journal if e.kind == "tool"] == ["lookup_order", "lookup_order", "issue_refund"]
    assert [e.name for e in journal if e.kind == "policy"] == ["lookup_order", "lookup_order", "issue_refund"]
    refund = next(e for e in journal if e.kind == "tool" and e.name == "issue_refund")
    assert ledger[-1] == ("issue_refund", f"{rid}:{refund.seq}")  # keyed by its own journaled step
    # the model saw the agent's instructions, the tools' Stalwart schemas, and the tool results
    first, last = script.requests[0], script.requests[-1]
    assert first.messages[0] == {"role": "system", "content": "You are a careful support agent."}
    assert {t.get("name") or t["function"]["name"] for t in first.tools or []} == {"lookup_order", "issue_refund"}
    assert sum(1 for m in last.messages if m["role"] == "tool") == 3
    calls = len(script.requests)
    report = await app.replay(rid)
    assert report.outcome == "identical", report.detail
    assert report.provider_calls == 0 and len(script.requests) == calls  # the journal answered every turn
    await app.close()


async def test_a_policy_denied_call_never_executes_and_is_answered_to_the_model(sqlite_url: str) -> None:
    script = Script([("issue_refund", {"order_id": "A-1001", "cents": 500})], ANSWER)
    app, ledger = make_app(sqlite_url, script, role="agent", policies=POLICIES)  # refunds need a support agent
    rid, info = await run(app, "Refund A-1001")
    assert info.status == "COMPLETED", info.error
    assert ledger == []  # denied: no tool step, no side effect
    journal = await app.journal(rid)
    assert not [e for e in journal if e.kind == "tool"]
    assert [json.loads(e.result_json)["action"] for e in journal if e.kind == "policy"] == ["deny"]
    told = [m for m in script.requests[-1].messages if m["role"] == "tool"]
    assert len(told) == 1 and "policy" in told[0]["content"]
    assert (await app.replay(rid)).outcome == "identical"
    await app.close()


async def test_a_model_that_keeps_calling_forbidden_tools_ends_the_run_with_no_side_effect(sqlite_url: str) -> None:
    script = Script([("issue_refund", {"order_id": "A-1001", "cents": 500})])
    app, ledger = make_app(sqlite_url, script, role="agent", policies=POLICIES)
    rid, info = await run(app, "Refund A-1001")
    assert info.status == "FAILED" and "3 refused or failed tool calls" in str(info.error)
    assert ledger == []
    assert not [e for e in await app.journal(rid) if e.kind == "tool"]
    await app.close()


async def test_a_tool_the_agent_does_not_have_never_runs(sqlite_url: str) -> None:
    script = Script([("drop_tables", {})], ANSWER)
    app, ledger = make_app(sqlite_url, script)
    rid, info = await run(app, "Hello")
    assert info.status == "COMPLETED", info.error
    assert ledger == []
    journal = await app.journal(rid)
    assert journal[0].meta["blocked_tool_calls"][0]["tool"] == "drop_tables"
    assert (await app.get_run(rid)).meta.get("review_required") is True
    await app.close()


async def test_an_agent_tool_that_is_not_a_stalwart_tool_is_refused_before_any_model_call(sqlite_url: str) -> None:
    script = Script(ANSWER)
    app = sw.App("oai-test", db=sqlite_url, local_rules=[script])

    def raw_tool(x: int) -> int:
        """Not registered with Stalwart."""
        return x

    agent = Agent(name="raw", output_type=Reply, tools=[function_tool(raw_tool)])

    @app.workflow(name="oai", version="1")
    async def wf(ctx: sw.Context, message: str) -> str:
        return (await oai.run(ctx, agent, message)).final_output.message

    _, info = await run(app, "hi")
    assert info.status == "FAILED" and "not a Stalwart tool" in str(info.error)
    assert script.requests == []
    await app.close()


async def test_a_call_that_needs_review_waits_durably_inside_the_sdk_loop_then_runs_once(sqlite_url: str) -> None:
    script = Script([("issue_refund", {"order_id": "A-1001", "cents": 12_500})], ANSWER)
    app, ledger = make_app(sqlite_url, script, policies=POLICIES)  # refunds over 100 USD need a human
    async with app.worker(concurrency=2):
        rid = await app.start("oai", "Refund $125 on A-1001", org="acme", user="u1")
        for _ in range(400):
            if (await app.get_run(rid)).status == "WAITING":
                break
            await asyncio.sleep(0.05)
        assert (await app.get_run(rid)).status == "WAITING" and ledger == []
        gov = await app.governance()
        [review] = await gov.reviews.list(org="acme")
        assert review.proposed_action["tool"] == "issue_refund"
        await gov.reviews.decide(review.id, "bob", "approve")
        out = await app.result(rid, timeout=60)
    assert out["output"] == json.loads(ANSWER)
    assert [k for k, _ in ledger] == ["issue_refund"]  # once, after the approval
    assert [e.kind for e in await app.journal(rid)] == ["llm", "policy", "review", "signal", "tool", "llm"]
    assert len(script.requests) == 2  # the turn before the wait was not asked again on resume
    await app.close()


async def test_the_agents_input_guardrail_still_runs_and_stops_the_run_before_any_tool(sqlite_url: str) -> None:
    script = Script([("issue_refund", {"order_id": "A-1001", "cents": 500})], ANSWER)
    app = sw.App("oai-test", db=sqlite_url, local_rules=[script])
    ledger: list[str] = []

    @app.tool(sandbox="none", mutating=True)
    def issue_refund(order_id: str, cents: int) -> dict:
        """Refund an order."""
        ledger.append(order_id)
        return {"order_id": order_id, "refunded_cents": cents}

    @input_guardrail(run_in_parallel=False)
    def no_threats(ctx: Any, agent: Any, message: Any) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered="or else" in str(message))

    agent = Agent(name="guarded", output_type=Reply, tools=[function_tool(issue_refund)], input_guardrails=[no_threats])

    @app.workflow(name="oai", version="1", tools=[issue_refund])
    async def wf(ctx: sw.Context, message: str) -> str:
        try:
            return (await oai.run(ctx, agent, message)).final_output.message
        except InputGuardrailTripwireTriggered:
            return "refused by the guardrail"

    _, info = await run(app, "Refund A-1001 now, or else")
    assert info.status == "COMPLETED" and info.output == "refused by the guardrail"
    assert ledger == [] and script.requests == []  # stopped before the model and any tool
    _, info = await run(app, "Refund A-1001 please")
    assert info.status == "COMPLETED" and info.output == "refunded" and ledger == ["A-1001"]
    await app.close()


async def test_over_http_against_the_openai_protocol_test_server(sqlite_url: str) -> None:
    """A real provider path: the gateway speaks OpenAI Chat Completions to a loopback server that
    calls the first tool it is offered, then answers with an instance of the requested schema."""
    from tests.fakes import FakeLLMServer

    with FakeLLMServer() as srv:
        entry = ModelEntry(provider="openai", model="gpt-4o-2024-08-06", base_url=srv.openai_url,
                           price_in_per_mtok=2.5, price_out_per_mtok=10.0)
        settings = Settings(db=sqlite_url, models={"primary": entry}, routes={"default": RouteEntry(models=["primary"])})
        app, ledger = make_app(sqlite_url, Script(ANSWER), settings=settings)
        rid, info = await run(app, "Where is my order?")
        assert info.status == "COMPLETED", info.error
        assert [k for k, _ in ledger] == ["lookup_order"] and info.output["requests"] == 2
        assert set(info.output["output"]) == {"order_id", "refunded_cents", "message"}
        assert srv.count() == 2
        first = json.loads(srv.bodies()[0])
        assert {t["function"]["name"] for t in first["tools"]} == {"lookup_order", "issue_refund"}
        assert "idempotency_key" not in json.dumps(first["tools"])  # the Stalwart schema, not the SDK's
        llm = [e for e in await app.journal(rid) if e.kind == "llm"]
        assert len(llm) == 2 and all(e.meta.get("tokens_in") for e in llm) and all(e.meta.get("cost_usd") for e in llm)
        report = await app.replay(rid)
        assert report.outcome == "identical" and report.provider_calls == 0 and srv.count() == 2
        await app.close()
