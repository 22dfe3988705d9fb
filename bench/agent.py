"""Per-turn overhead of ``ctx.agent`` over a raw tool-calling loop on the same provider.

    .venv/bin/python bench/agent.py [--runs 30] [--turns 4]

Both sides drive the same scripted ``local`` provider (one tool call per turn, then an answer)
and the same in-process tool. The raw loop calls the provider and the tool function directly and
keeps the messages in a list: nothing durable, nothing governed. ``ctx.agent`` runs inside a
workflow on an in-process worker over a fresh SQLite store, so each turn is a journaled model
step (guard scans, template rendering, routing, budget) plus, per call, a journaled policy step
and a journaled tool step, each with its audit entry. A turn is timed from the start of its model
call to the start of the next one (the journal's timestamps; the raw loop's clock), so the final
answer turn is not counted. Results go to ``bench/results/agent-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stalwart as sw
from stalwart.gateway import LocalProvider, ProviderRequest, ProviderResponse


def script_for(turns: int) -> Any:
    def script(req: ProviderRequest, facts: dict[str, Any]) -> ProviderResponse:
        n = sum(1 for m in req.messages if m.get("role") == "assistant")
        if n >= turns - 1:
            return ProviderResponse("done", 0, 0, "", "stop")
        call = {"id": f"c{n}", "name": "lookup_order", "arguments": {"order_id": f"A-{1000 + n}"}}
        return ProviderResponse("", 0, 0, "", "tool_calls", [call])

    return script


def lookup_order(order_id: str) -> dict:
    """Fetch an order by id."""
    return {"order_id": order_id, "total_cents": 4999, "status": "delivered"}


SPEC = {"name": "lookup_order", "description": "Fetch an order by id.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}


async def raw_loop(runs: int, turns: int) -> list[float]:
    provider = LocalProvider([script_for(turns)])
    per_turn: list[float] = []
    for r in range(runs):
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are the customer-support agent of Acme Outdoor."},
            {"role": "user", "content": f"Where is my order A-{r}?"}]
        starts = []
        while True:
            starts.append(time.perf_counter())
            resp = await provider.complete(ProviderRequest(model_id="local", messages=list(messages),
                                                           max_tokens=512, tools=[SPEC]))
            if not resp.tool_calls:
                break
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}} for c in resp.tool_calls]})
            for c in resp.tool_calls:
                messages.append({"role": "tool", "tool_call_id": c["id"],
                                 "content": json.dumps(lookup_order(**c["arguments"]))})
        per_turn += [b - a for a, b in itertools.pairwise(starts)]
    return per_turn


CPU: dict[str, float] = {}
"""Process CPU time per model turn (answer turns included): less sensitive to a loaded machine."""
PARTS: dict[str, list[float]] = {"model step": [], "policy + tool steps": []}
"""Where a ``ctx.agent`` turn's time goes, from the journal (the rest is commits and scheduling)."""


async def stalwart_agent(runs: int, turns: int, db: str) -> list[float]:
    app = sw.App("bench-agent", db=db, local_rules=[script_for(turns)])
    tool = app.tool(sandbox="none")(lookup_order)

    @app.workflow(name="agent", version="1", tools=[tool])
    async def agent(ctx: sw.Context, message: str) -> int:
        res = await ctx.agent(template="support-agent@1", input=message, tools=[tool], max_turns=turns + 1)
        assert res.stopped == "answer", res.stopped
        return res.turns

    per_turn: list[float] = []
    cpu = 0.0
    async with app.worker(concurrency=4):
        for r in range(runs + 3):  # 3 warm-up runs (guard and gateway load on first use)
            c0 = time.process_time()
            rid = await app.start("agent", f"Where is my order A-{r}?")
            await app.result(rid, timeout=120)
            if r < 3:
                continue
            cpu += time.process_time() - c0
            journal = await app.journal(rid)
            starts = [e.started_at for e in journal if e.kind == "llm"]
            PARTS["model step"] += [e.finished_at - e.started_at for e in journal if e.kind == "llm"][:-1]
            policy = [e.started_at for e in journal if e.kind == "policy"]
            done = [e.finished_at for e in journal if e.kind == "tool"]
            PARTS["policy + tool steps"] += [b - a for a, b in zip(policy, done, strict=True)]
            per_turn += [b - a for a, b in itertools.pairwise(starts)]
    await app.close()
    CPU["ctx.agent"] = cpu / (runs * turns)
    return per_turn


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--turns", type=int, default=4, help="model turns per run, the last one answering")
    args = ap.parse_args()
    await raw_loop(3, args.turns)  # warm-up
    c0 = time.process_time()
    raw = await raw_loop(args.runs, args.turns)
    CPU["raw loop"] = (time.process_time() - c0) / (args.runs * args.turns)
    with tempfile.TemporaryDirectory() as tmp:
        agent = await stalwart_agent(args.runs, args.turns, f"sqlite:///{tmp}/bench.db")
    rows = {"raw loop (provider + tool, in memory)": raw, "ctx.agent (SQLite, journaled, governed)": agent}
    print(f"{args.runs} runs x {args.turns - 1} tool turns each; per-turn wall time (ms)")
    print(f"{'loop':42} {'p50':>8} {'p95':>8} {'n':>5}")
    for name, xs in rows.items():
        print(f"{name:42} {1000 * statistics.median(xs):8.2f} {1000 * p(xs, 95):8.2f} {len(xs):5d}")
    for name, xs in PARTS.items():
        print(f"  of which {name:33} {1000 * statistics.median(xs):8.2f} {1000 * p(xs, 95):8.2f} {len(xs):5d}")
    overhead = statistics.median(agent) - statistics.median(raw)
    print("CPU per model turn (ms): " + ", ".join(f"{k} {1000 * v:.2f}" for k, v in CPU.items()))
    print(f"overhead of ctx.agent per turn, p50: {1000 * overhead:.2f} ms")
    out = ROOT / "bench" / "results" / f"agent-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": args.runs, "turns": args.turns, "raw_s": raw, "agent_s": agent, "parts_s": PARTS, "cpu_per_turn_s": CPU,
                               "overhead_p50_s": overhead}, indent=1))
    print(f"samples: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
