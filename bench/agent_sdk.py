"""Per-turn overhead of running an agent durably on Stalwart over the same agent's own loop.

    .venv/bin/python bench/agent_sdk.py [--runs 20] [--turns 4]

Three pairs, measured in one process, one after the other:

* **native**: a raw tool-calling loop on the ``local`` provider vs ``ctx.agent`` (the functions of
  ``bench/agent.py``);
* **Pydantic AI**: a ``pydantic_ai.Agent`` run by itself (``agent.run``) on a ``FunctionModel``
  that plays the script in memory, vs the same agent through ``stalwart.integrations.pydantic_ai.run``
  inside a workflow, the scripted ``local`` provider playing the model;
* **OpenAI Agents SDK**: an ``agents.Agent`` run by ``Runner.run`` on a scripted ``Model``
  (in memory, tracing off), vs the same agent through ``stalwart.integrations.openai_agents.run``.

The script is the same everywhere: one ``lookup_order`` call per turn, then an answer; the tool is
the same in-process function (registered ``sandbox="none"`` on the Stalwart side). The Stalwart
side runs on an in-process worker over a fresh SQLite store, so each turn is a journaled model step
plus, per call, a journaled policy step and a journaled tool step. A turn is timed from the start of
one model call to the start of the next (the raw side's clock at the model's entry; the journal's
timestamps on the Stalwart side), so the answer turn is not counted. CPU is process CPU time per
model turn, answer turns included. Results go to ``bench/results/agent-sdk-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent as native
from agents import Agent as OAIAgent
from agents import ModelResponse, RunConfig, Runner, Usage, function_tool
from agents.models.chatcmpl_converter import Converter
from agents.models.interface import Model as OAIModel
from openai.types.chat import ChatCompletionMessage
from pydantic_ai import Agent as PAIAgent
from pydantic_ai.messages import ModelMessage, TextPart, ToolCallPart
from pydantic_ai.messages import ModelResponse as PAIResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

import stalwart as sw
from stalwart.integrations import openai_agents as sw_oai
from stalwart.integrations import pydantic_ai as sw_pai

INSTRUCTIONS = "You are the customer-support agent of Acme Outdoor."
WARMUP = 3


def lookup_order(order_id: str) -> dict:
    """Fetch an order by id."""
    return {"order_id": order_id, "total_cents": 4999, "status": "delivered"}


# ---- raw SDK loops: the SDK's own loop, the script played in memory --------------------------------


async def raw_pydantic_ai(runs: int, turns: int, starts: list[list[float]]) -> None:
    def play(messages: list[ModelMessage], info: AgentInfo) -> PAIResponse:
        starts[-1].append(time.perf_counter())
        n = sum(1 for m in messages if isinstance(m, PAIResponse))
        if n >= turns - 1:
            return PAIResponse(parts=[TextPart("done")])
        return PAIResponse(parts=[ToolCallPart("lookup_order", {"order_id": f"A-{1000 + n}"}, tool_call_id=f"c{n}")])

    agent = PAIAgent(FunctionModel(play), instructions=INSTRUCTIONS, tools=[lookup_order])
    for r in range(runs):
        starts.append([])
        result = await agent.run(f"Where is my order A-{r}?")
        assert result.output == "done"


class ScriptedOAIModel(OAIModel):
    """One ``lookup_order`` call per turn, then an answer; records when each call starts."""

    def __init__(self, turns: int, starts: list[list[float]]) -> None:
        self.turns, self.starts = turns, starts

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                           output_schema: Any, handoffs: Any, tracing: Any, **kwargs: Any) -> ModelResponse:
        self.starts[-1].append(time.perf_counter())
        n = sum(1 for i in input if isinstance(i, dict) and i.get("type") == "function_call")
        if n >= self.turns - 1:
            message = {"role": "assistant", "content": "done"}
        else:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"c{n}", "type": "function",
                 "function": {"name": "lookup_order", "arguments": json.dumps({"order_id": f"A-{1000 + n}"})}}]}
        return ModelResponse(output=Converter.message_to_output_items(ChatCompletionMessage.model_validate(message)),
                             usage=Usage(requests=1), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def raw_openai_agents(runs: int, turns: int, starts: list[list[float]]) -> None:
    agent = OAIAgent(name="support", instructions=INSTRUCTIONS, tools=[function_tool(lookup_order)],
                     model=ScriptedOAIModel(turns, starts))
    for r in range(runs):
        starts.append([])
        result = await Runner.run(agent, f"Where is my order A-{r}?", max_turns=turns + 1,
                                  run_config=RunConfig(tracing_disabled=True))
        assert result.final_output == "done", result.final_output


# ---- the same agents through the Stalwart adapters -------------------------------------------------


async def stalwart_sdk(sdk: str, runs: int, turns: int, db: str) -> tuple[list[list[float]], float]:
    app = sw.App(f"bench-{sdk}", db=db, local_rules=[native.script_for(turns)])
    tool = app.tool(sandbox="none")(lookup_order)
    if sdk == "pydantic_ai":
        pai_agent = PAIAgent(instructions=INSTRUCTIONS, tools=[tool])

        @app.workflow(name="agent", version="1", tools=[tool])
        async def wf_pai(ctx: sw.Context, message: str) -> str:
            return str((await sw_pai.run(ctx, pai_agent, message)).output)
    else:
        oai_agent = OAIAgent(name="support", instructions=INSTRUCTIONS, tools=[function_tool(tool)],
                             model="never-called")

        @app.workflow(name="agent", version="1", tools=[tool])
        async def wf_oai(ctx: sw.Context, message: str) -> str:
            return str((await sw_oai.run(ctx, oai_agent, message, max_turns=turns + 1)).final_output)

    starts: list[list[float]] = []
    cpu = 0.0
    async with app.worker(concurrency=4):
        for r in range(runs + WARMUP):
            c0 = time.process_time()
            rid = await app.start("agent", f"Where is my order A-{r}?")
            assert await app.result(rid, timeout=120) == "done"
            if r < WARMUP:
                continue
            cpu += time.process_time() - c0
            starts.append([e.started_at for e in await app.journal(rid) if e.kind == "llm"])
    await app.close()
    return starts, cpu / (runs * turns)


def per_turn(starts: list[list[float]]) -> list[float]:
    return [b - a for s in starts for a, b in itertools.pairwise(s)]


async def timed_raw(fn: Any, runs: int, turns: int) -> tuple[list[float], float]:
    await fn(WARMUP, turns, [])
    starts: list[list[float]] = []
    c0 = time.process_time()
    await fn(runs, turns, starts)
    cpu = (time.process_time() - c0) / (runs * turns)
    assert all(len(s) == turns for s in starts), [len(s) for s in starts]
    return per_turn(starts), cpu


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--turns", type=int, default=4, help="model turns per run, the last one answering")
    args = ap.parse_args()
    runs, turns = args.runs, args.turns
    load0 = os.getloadavg()
    rows: dict[str, tuple[list[float], float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        await native.raw_loop(WARMUP, turns)
        c0 = time.process_time()
        rows["native: raw loop"] = (await native.raw_loop(runs, turns), (time.process_time() - c0) / (runs * turns))
        wall = await native.stalwart_agent(runs, turns, f"sqlite:///{tmp}/native.db")
        rows["native: ctx.agent"] = (wall, native.CPU["ctx.agent"])
        rows["pydantic_ai: agent.run"] = await timed_raw(raw_pydantic_ai, runs, turns)
        starts, cpu = await stalwart_sdk("pydantic_ai", runs, turns, f"sqlite:///{tmp}/pai.db")
        rows["pydantic_ai: integrations.pydantic_ai.run"] = (per_turn(starts), cpu)
        rows["openai_agents: Runner.run"] = await timed_raw(raw_openai_agents, runs, turns)
        starts, cpu = await stalwart_sdk("openai_agents", runs, turns, f"sqlite:///{tmp}/oai.db")
        rows["openai_agents: integrations.openai_agents.run"] = (per_turn(starts), cpu)
    load1 = os.getloadavg()
    print(f"{runs} runs x {turns - 1} tool turns each; load average {load0[0]:.1f} -> {load1[0]:.1f}")
    print(f"{'loop':48} {'p50 ms':>8} {'p95 ms':>8} {'CPU/turn ms':>12} {'n':>5}")
    for name, (xs, cpu) in rows.items():
        print(f"{name:48} {1000 * statistics.median(xs):8.2f} {1000 * native.p(xs, 95):8.2f} {1000 * cpu:12.2f} "
              f"{len(xs):5d}")
    names = list(rows)
    ratios = {}
    for raw, durable in zip(names[::2], names[1::2], strict=True):
        (rw, rc), (dw, dc) = rows[raw], rows[durable]
        sdk = raw.split(":")[0]
        ratios[sdk] = {"p50_ratio": statistics.median(dw) / statistics.median(rw), "cpu_ratio": dc / rc,
                       "p50_overhead_s": statistics.median(dw) - statistics.median(rw)}
        print(f"{sdk:14} durable/raw: p50 x{ratios[sdk]['p50_ratio']:.1f} (+{1000 * ratios[sdk]['p50_overhead_s']:.2f} ms),"
              f" CPU x{ratios[sdk]['cpu_ratio']:.1f}")
    out = ROOT / "bench" / "results" / f"agent-sdk-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "turns": turns, "loadavg": [load0, load1], "ratios": ratios,
                               "rows": {k: {"per_turn_s": xs, "cpu_per_turn_s": c} for k, (xs, c) in rows.items()}},
                              indent=1))
    print(f"samples: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
