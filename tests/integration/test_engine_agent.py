"""``ctx.agent``: the model chooses the tools in a durable loop; every call governed, every bound clear.

The model is the offline ``local`` provider driven by a script (one list of tool calls per turn,
then an answer); every tool writes to a ledger, so a side effect that should not happen shows.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import stalwart as sw
from stalwart.gateway import ProviderRequest, ProviderResponse

pytestmark = pytest.mark.asyncio

POLICIES = Path(sw.__file__).resolve().parent / "examples" / "policies"


class Reply(BaseModel):
    order_id: str
    refunded_cents: int
    message: str


class Script:
    """A scripted model: turn ``n`` (the number of assistant messages so far) plays ``turns[n]``,
    a list of ``(tool, arguments)`` calls or a final text; the last entry repeats. Counts calls."""

    def __init__(self, *turns: Any) -> None:
        self.turns = turns
        self.calls = 0

    def __call__(self, req: ProviderRequest, facts: dict[str, Any]) -> ProviderResponse:
        self.calls += 1
        n = sum(1 for m in req.messages if m.get("role") == "assistant")
        step = self.turns[min(n, len(self.turns) - 1)]
        if isinstance(step, str):
            return ProviderResponse(step, 0, 0, "", "stop")
        if callable(step):
            step = step(n)
        calls = [{"id": f"c{n}_{i}", "name": name, "arguments": args} for i, (name, args) in enumerate(step)]
        return ProviderResponse("", 0, 0, "", "tool_calls", calls)


def make_app(db: str, script: Script, *, role: str = "support", policies: Path | None = None,
             clock: Any = None) -> tuple[sw.App, list[tuple[str, Any]]]:
    app = sw.App("agent-test", db=db, local_rules=[script], policies=policies, clock=clock)
    ledger: list[tuple[str, Any]] = []
    gates: dict[str, asyncio.Event] = {}

    @app.tool(sandbox="none")
    async def lookup_order(order_id: str) -> dict:
        """Fetch an order by id."""
        ledger.append(("lookup_order", order_id))
        if order_id == "A-1001" and "A-1002" in gates:  # the parallel test: wait for the sibling call
            await asyncio.wait_for(gates["A-1002"].wait(), 10)
        if order_id == "A-1002":
            gates.setdefault("A-1002", asyncio.Event()).set()
        if clock is not None:
            clock.t += 5.0
        return {"order_id": order_id, "total_cents": 4999}

    @app.tool(sandbox="none", mutating=True)
    def issue_refund(order_id: str, cents: int, *, idempotency_key: str) -> dict:
        """Refund an order."""
        ledger.append(("issue_refund", idempotency_key))
        return {"order_id": order_id, "refunded_cents": cents}

    app._test_gates = gates  # type: ignore[attr-defined]

    def agent_tools(names: str) -> list[Any]:
        return [{"lookup_order": lookup_order, "issue_refund": issue_refund}[n] for n in names.split(",")]

    @app.workflow(name="agent", version="1", tools=[lookup_order, issue_refund], role=role)
    async def agent(ctx: sw.Context, message: str, tools: str = "lookup_order,issue_refund",
                    bounds: dict | None = None, structured: bool = True) -> dict:
        res = await ctx.agent(template="support-agent@1", input=message, tools=agent_tools(tools),
                              output=Reply if structured else None, **(bounds or {}))
        assert isinstance(res, sw.AgentResult)
        return {"output": res.output.model_dump() if isinstance(res.output, BaseModel) else res.output,
                "turns": res.turns, "stopped": res.stopped, "errors": res.tool_errors, "tokens": res.tokens,
                "calls": [{"name": c.name, "ok": c.ok, "error": c.error, "seq": c.seq, "turn": c.turn}
                          for c in res.tool_calls]}

    return app, ledger


async def run(app: sw.App, message: str, **kw: Any) -> tuple[str, dict]:
    async with app.worker(concurrency=4):
        rid = await app.start("agent", {"message": message, **kw}, org="acme", user="u1")
        return rid, await app.result(rid, timeout=60)


ANSWER = json.dumps({"order_id": "A-1001", "refunded_cents": 1200, "message": "refunded"})


async def test_a_multi_turn_agent_completes_and_its_replay_calls_no_model(db_url: str) -> None:
    script = Script([("lookup_order", {"order_id": "A-1001"})],
                    [("issue_refund", {"order_id": "A-1001", "cents": 1200})], ANSWER)
    app, ledger = make_app(db_url, script)
    rid, out = await run(app, "Refund $12 on order A-1001")
    assert out["stopped"] == "answer" and out["turns"] == 3 and out["errors"] == 0
    assert out["output"] == {"order_id": "A-1001", "refunded_cents": 1200, "message": "refunded"}
    assert [c["name"] for c in out["calls"]] == ["lookup_order", "issue_refund"] and out["tokens"] > 0
    assert [k for k, _ in ledger] == ["lookup_order", "issue_refund"]
    assert ledger[1][1] == f"{rid}:{out['calls'][1]['seq']}"  # the key of the refund's own tool step
    journal = await app.journal(rid)
    assert [(e.kind, e.name) for e in journal] == [
        ("llm", "default"), ("policy", "lookup_order"), ("tool", "lookup_order"), ("llm", "default"),
        ("policy", "issue_refund"), ("tool", "issue_refund"), ("llm", "default"), ("agent", "support-agent@1")]
    assert [e.meta["agent"]["turn"] for e in journal if e.kind == "llm"] == [1, 2, 3]
    assert script.calls == 3
    report = await app.replay(rid)
    assert report.outcome == "identical", report.detail
    assert script.calls == 3 and len(ledger) == 2  # replay: no model call, no tool call
    from stalwart.telemetry import explain

    text = explain(await app.get_run(rid), journal).to_text()
    assert "agent support-agent@1: answer after 3 turns" in text
    assert "turn 2" in text and "issue_refund" in text
    await app.close()


async def test_calls_of_one_turn_run_in_parallel_with_replay_stable_numbers(db_url: str) -> None:
    script = Script([("lookup_order", {"order_id": "A-1001"}), ("lookup_order", {"order_id": "A-1002"})],
                    ANSWER)
    app, ledger = make_app(db_url, script)
    app._test_gates["A-1002"] = asyncio.Event()  # type: ignore[attr-defined]
    rid, out = await run(app, "Compare orders A-1001 and A-1002")
    # A-1001 waits until A-1002 has run: had they run one after the other, the first would time out
    assert out["stopped"] == "answer" and [c["ok"] for c in out["calls"]] == [True, True], out
    assert [v for _, v in ledger] == ["A-1001", "A-1002"]
    first, second = (c["seq"] for c in out["calls"])
    assert first < second  # numbered in the model's order, not in the order they finished
    journal = {e.seq: e for e in await app.journal(rid)}
    assert journal[first].finished_at >= journal[second].finished_at
    report = await app.replay(rid)
    assert report.outcome == "identical", report.detail
    await app.close()


async def test_a_model_that_keeps_calling_a_forbidden_tool_is_stopped_with_no_side_effect(sqlite_url: str) -> None:
    script = Script([("issue_refund", {"order_id": "A-1001", "cents": 99_999})])
    app, ledger = make_app(sqlite_url, script)
    rid, out = await run(app, "Refund everything on A-1001", tools="lookup_order")
    assert out["stopped"] == "tool_errors" and out["output"] is None
    assert out["turns"] == 3 and out["errors"] == 3  # max_tool_errors defaults to 3
    assert all(not c["ok"] and "unknown_tool" in c["error"] and c["seq"] is None for c in out["calls"])
    assert ledger == []  # never executed: no policy step, no tool step
    journal = await app.journal(rid)
    assert {e.kind for e in journal} == {"llm", "agent"}
    assert journal[0].meta["blocked_tool_calls"][0]["tool"] == "issue_refund"
    assert (await app.get_run(rid)).meta.get("review_required") is True  # flagged for a human
    await app.close()


async def test_bad_arguments_and_policy_denials_are_tool_errors_never_side_effects(sqlite_url: str) -> None:
    script = Script([("lookup_order", {"id": 7})], [("issue_refund", {"order_id": "A-1001", "cents": 500})])
    app, ledger = make_app(sqlite_url, script, role="agent", policies=POLICIES)  # refunds need a support agent
    rid, out = await run(app, "Refund A-1001", bounds={"max_tool_errors": 3})
    assert out["stopped"] == "tool_errors" and out["turns"] == 3
    bad_args, *denied = out["calls"]
    assert "invalid_args" in bad_args["error"]
    assert denied and all("policy" in c["error"] and not c["ok"] for c in denied)
    assert ledger == []
    journal = await app.journal(rid)
    assert not [e for e in journal if e.kind == "tool"]
    assert {json.loads(e.result_json)["action"] for e in journal if e.kind == "policy"} == {"deny"}
    assert (await app.replay(rid)).outcome == "identical"
    await app.close()


async def test_the_same_call_over_and_over_is_a_loop(sqlite_url: str) -> None:
    script = Script([("lookup_order", {"order_id": "A-1001"})])
    app, ledger = make_app(sqlite_url, script)
    _, out = await run(app, "Where is A-1001?", bounds={"max_repeat": 2})
    assert out["stopped"] == "loop" and out["turns"] == 3 and out["output"] is None
    assert len(ledger) == 2  # the third identical request was not made
    await app.close()


async def test_max_turns_and_budget_end_the_loop_with_the_partial_result(sqlite_url: str) -> None:
    script = Script(lambda n: [("lookup_order", {"order_id": f"A-{2000 + n}"})])
    app, ledger = make_app(sqlite_url, script)
    _, out = await run(app, "Keep looking", bounds={"max_turns": 3})
    assert out["stopped"] == "max_turns" and out["turns"] == 3 and len(out["calls"]) == 3
    assert [v for _, v in ledger] == ["A-2000", "A-2001", "A-2002"]
    _, out = await run(app, "Keep looking", bounds={"max_tokens": 1}, structured=False)
    assert out["stopped"] == "budget" and out["turns"] == 1 and out["output"] is None
    await app.close()


async def test_wall_time_is_decided_from_journaled_times(sqlite_url: str) -> None:
    import time

    class Clock:
        def __init__(self) -> None:
            self.t = time.time()

        def time(self) -> float:
            return self.t

        def monotonic(self) -> float:
            return time.monotonic()

    script = Script(lambda n: [("lookup_order", {"order_id": f"A-{3000 + n}"})])
    app, _ = make_app(sqlite_url, script, clock=Clock())  # each lookup takes 5 s of its clock
    rid, out = await run(app, "Keep looking", bounds={"max_wall_s": 8})
    assert out["stopped"] == "wall_time" and out["turns"] == 2
    assert (await app.replay(rid)).outcome == "identical"
    await app.close()


async def test_an_agent_takes_only_its_workflows_tools_and_sane_bounds(sqlite_url: str) -> None:
    app = sw.App("agent-bad", db=sqlite_url)

    @app.tool(sandbox="none")
    def stray(x: str) -> str:
        return x

    @app.workflow(name="bad", version="1")
    async def bad(ctx: sw.Context, which: str) -> Any:
        if which == "tool":
            return await ctx.agent(template="support-agent@1", input="hi", tools=[stray])
        return await ctx.agent(template="support-agent@1", input="hi", tools=[stray], max_turns=0)

    async with app.worker(concurrency=2):
        for which, needle in (("tool", "is not a tool of workflow"), ("bounds", "max_turns must be")):
            rid = await app.start("bad", which)
            with pytest.raises(sw.WorkflowFailed, match=needle):
                await app.result(rid, timeout=30)
    await app.close()


async def test_a_call_that_needs_review_waits_durably_then_runs_once(sqlite_url: str) -> None:
    script = Script([("issue_refund", {"order_id": "A-1001", "cents": 12_500})], ANSWER)
    app, ledger = make_app(sqlite_url, script, policies=POLICIES)  # refunds over 100 USD need a human
    async with app.worker(concurrency=2):
        rid = await app.start("agent", {"message": "Refund $125 on A-1001"}, org="acme", user="u1")
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
    assert out["stopped"] == "answer" and [c["ok"] for c in out["calls"]] == [True]
    assert [k for k, _ in ledger] == ["issue_refund"]  # once, after the approval
    kinds = [e.kind for e in await app.journal(rid)]
    assert kinds == ["llm", "policy", "review", "signal", "tool", "llm", "agent"]
    assert script.calls == 2  # the turn before the wait was not asked again on resume
    await app.close()


async def test_a_streamed_agent_writes_its_turns_and_end_to_the_run_stream(tmp_path: Path) -> None:
    script = Script([("lookup_order", {"order_id": "A-1001"})], [("no_such_tool", {})], ANSWER)
    app, ledger = make_app(f"sqlite:///{tmp_path}/s.db", script)
    rid, out = await run(app, "Refund $12 on order A-1001", bounds={"stream": True})
    assert out["stopped"] == "answer" and out["turns"] == 3
    events = [(e.kind, e.data) async for e in app.events(rid)]
    kinds = [k for k, _ in events]
    assert kinds.count("agent.turn") == 2 and kinds[-1] == "agent.end", kinds
    turns = [d for k, d in events if k == "agent.turn"]
    assert turns[0] == {"turn": 1, "calls": [{"name": "lookup_order", "ok": True, "error": None}]}
    assert turns[1]["calls"][0]["name"] == "no_such_tool" and turns[1]["calls"][0]["ok"] is False
    assert dict(events)["agent.end"] == {"stopped": "answer", "turns": 3, "tool_calls": 2}
    offsets = [e.offset async for e in app.events(rid)]
    assert offsets == list(range(1, len(offsets) + 1))
    await app.close()


async def test_workflows_cannot_emit_the_agent_s_own_event_kinds(tmp_path: Path) -> None:
    app = sw.App("emit-reserved", db=f"sqlite:///{tmp_path}/r.db")

    @app.workflow(name="w", version="1")
    async def w(ctx: sw.Context) -> str:
        await ctx.emit("agent.end", {"stopped": "answer"})
        return "no"

    async with app.worker():
        rid = await app.start("w", {})
        with pytest.raises(sw.WorkflowFailed, match="runtime's own"):
            await app.result(rid, timeout=30)
    await app.close()
