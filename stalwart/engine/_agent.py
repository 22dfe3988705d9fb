"""``ctx.agent``: the model chooses the tools, in a durable, bounded loop.

Each turn is one journaled model call (``ctx.llm``) offered the agent's tools; each tool call the
model asks for takes the governed path of ``ctx.tool`` (allowlist, arguments, policy, risk,
review, credential, sandbox, guard) as its own journaled steps. A resumed run replays both from
the journal, so it picks up at the turn where it stopped and pays for no model call twice.

Calls the model asks for in one turn run concurrently; their sequence numbers are taken, in the
order the model listed them, before any of them starts, so a replay matches the journal whatever
order they finished in. A call that is refused (not one of the agent's tools, arguments that do
not match, a policy denial) is never made, and one that fails for good (after the tool's own
retries) does not end the run: either is answered to the model as a tool error, and counted.

The loop ends with an :class:`AgentResult` whose ``stopped`` says why: ``answer`` (the model
answered without calling a tool), or the first bound reached, ``max_turns``, ``budget``,
``wall_time``, ``loop`` (the same call, same arguments, asked for more than ``max_repeat``
times: that turn's calls are not made) or ``tool_errors``. Bounds are checked between turns, so
the calls asked for at the last allowed turn are still made (a turn is a model call and its tool
calls). Bounds end the loop with the partial result rather than raising: the
workflow decides what a stopped agent means. Every bound is decided from journaled values (token
counts, costs, step timestamps), so a replay stops exactly where the recorded run stopped.

With ``stream=True`` each turn's model text streams to the run's durable event stream, and the
loop appends an ``agent.turn`` event after each turn's calls and an ``agent.end`` event when it
stops; like every event they take journal positions, so a replay writes none of them twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stalwart.engine._definitions import ToolDef
from stalwart.engine._serde import decode, encode
from stalwart.errors import (
    BudgetExceeded,
    InjectionBlocked,
    InvalidInput,
    PolicyDenied,
    StalwartError,
    ToolError,
    UnauthorizedToolCall,
)

if TYPE_CHECKING:
    from stalwart.engine._context import Context

__all__ = ["STOP_REASONS", "AgentResult", "AgentToolCall", "run_agent"]

STOP_REASONS = ("answer", "max_turns", "budget", "wall_time", "loop", "tool_errors")
"""Why an agent loop ended: the model answered, or the first bound it reached."""

_TOOL_ERRORS = (ToolError, PolicyDenied, UnauthorizedToolCall, InvalidInput, InjectionBlocked)
"""Failures of one call that the model is told about. Anything else (a rejected review, a budget,
a missing sandbox) is not the model's to handle and ends the run as it would for ``ctx.tool``."""


@dataclass(frozen=True)
class AgentToolCall:
    """One tool call the model asked for. ``ok`` is False for a refused or failed call, whose
    ``error`` is what the model was told; ``seq`` is the journal position of its tool step
    (``None`` when it was refused before reaching one)."""

    turn: int
    id: str
    name: str
    arguments: dict[str, Any]
    ok: bool
    result: Any = None
    error: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class AgentResult:
    """What an agent loop produced.

    ``output`` is the model's answer (an instance of ``output`` when one was asked for, else its
    text) when ``stopped == "answer"``, and ``None`` when a bound stopped the loop first; the
    partial result is then in ``tool_calls`` and ``messages``. ``turns`` counts model calls.
    """

    output: Any
    turns: int
    tool_calls: list[AgentToolCall]
    stopped: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The conversation after the template's own messages: the model's tool calls and the answers."""
    tokens: int = 0
    cost_usd: float = 0.0
    tool_errors: int = 0

    @property
    def answered(self) -> bool:
        return self.stopped == "answer"


def _agent_tools(ctx: Context, tools: list[Any]) -> dict[str, ToolDef]:
    ex = ctx._ex
    out: dict[str, ToolDef] = {}
    for t in tools:
        tdef: ToolDef | None = ex.app.tool_for(t)
        if tdef is None or ex.wdef.tools.get(tdef.name) is not tdef:
            raise UnauthorizedToolCall(f"{t!r} is not a tool of workflow {ex.wdef.key}: an agent may only be "
                                       "given tools its workflow lists", retryable=False)
        out[tdef.name] = tdef
    return out


def _check_bounds(max_turns: int, max_repeat: int, max_tool_errors: int, max_tokens: int | None,
                  max_usd: float | None, max_wall_s: float | None) -> None:
    for name, value in (("max_turns", max_turns), ("max_repeat", max_repeat), ("max_tool_errors", max_tool_errors)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"ctx.agent: {name} must be an integer of 1 or more, not {value!r}")
    for name, bound in (("max_tokens", max_tokens), ("max_usd", max_usd), ("max_wall_s", max_wall_s)):
        if bound is not None and not (isinstance(bound, int | float) and bound > 0):
            raise ValueError(f"ctx.agent: {name} must be a positive number or None, not {bound!r}")


def _signature(call: dict[str, Any]) -> str:
    return f"{call.get('name')}:{json.dumps(call.get('arguments') or {}, sort_keys=True, default=str)}"


def _ids(turn: int, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls with an id each, unique within the turn (scripted and small models often repeat one)."""
    seen: set[str] = set()
    out = []
    for i, c in enumerate(calls):
        cid = str(c.get("id") or "")
        if not cid or cid in seen:
            cid = f"call_{turn}_{i}"
        seen.add(cid)
        out.append({**c, "id": cid, "arguments": dict(c.get("arguments") or c.get("args") or {})})
    return out


def _assistant(text: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "assistant", "content": text or None, "tool_calls": [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], sort_keys=True)}}
        for c in calls]}


def _tool_message(call_id: str, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content if isinstance(content, str)
            else encode(content)}


async def run_agent(
    ctx: Context,
    *,
    template: str,
    input: Any,
    tools: list[Any],
    output: Any,
    max_turns: int,
    route: str,
    vars: dict[str, Any] | None,
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
    max_usd: float | None,
    max_wall_s: float | None,
    max_repeat: int,
    max_tool_errors: int,
    stream: bool = False,
) -> AgentResult:
    """The loop behind :meth:`Context.agent` (see the module docstring)."""
    if not isinstance(template, str) or "@" not in template:
        raise ValueError(f"ctx.agent needs a versioned prompt template such as 'support-agent@1', not {template!r}")
    if not tools:
        raise ValueError("ctx.agent needs at least one tool (a plain model call is ctx.llm)")
    _check_bounds(max_turns, max_repeat, max_tool_errors, max_tokens, max_usd, max_wall_s)
    ex = ctx._ex
    allowed = _agent_tools(ctx, tools)
    tool_list = list(allowed.values())
    prompt_vars = {**(vars or {}), "input": input}
    messages: list[dict[str, Any]] = []
    calls_made: list[AgentToolCall] = []
    repeats: dict[str, int] = {}
    tokens, usd, errors, turns = 0, 0.0, 0, 0
    first_seq: int | None = None
    started_at: float | None = None
    last_at: float | None = None
    answer: Any = None
    stopped = ""

    def seen(seqs: list[int]) -> None:  # wall time from journaled timestamps: identical on replay
        nonlocal started_at, last_at
        for s in seqs:
            e = ex.journal.get(s)
            if e is None:
                continue
            if started_at is None and e.started_at is not None:
                started_at = e.started_at
            if e.finished_at is not None:
                last_at = e.finished_at if last_at is None else max(last_at, e.finished_at)

    while True:
        if turns >= max_turns:
            stopped = "max_turns"
            break
        if (max_tokens is not None and tokens >= max_tokens) or (max_usd is not None and usd >= max_usd):
            stopped = "budget"
            break
        if max_wall_s is not None and started_at is not None and last_at is not None \
                and last_at - started_at >= max_wall_s:
            stopped = "wall_time"
            break
        turn = turns + 1
        seq = ex.next_seq()
        first_seq = seq if first_seq is None else first_seq
        tag = {"agent": {"at": first_seq, "template": template, "turn": turn}}
        try:
            from stalwart.engine._llm import llm_step

            data = await llm_step(ex, route, template=template, vars=prompt_vars, messages=list(messages),
                                  output=output, model=model, max_tokens=None, temperature=temperature,
                                  cacheable=False, tools=tool_list, seq=seq, allowed=allowed, note=tag,
                                  stream=stream)
        except BudgetExceeded:  # the workflow's own budget has no room for another turn
            stopped = "budget"
            break
        turns = turn
        seen([seq])
        tokens += int(data.get("tokens_in") or 0) + int(data.get("tokens_out") or 0)
        usd += float(data.get("cost_usd") or 0.0)
        kept = _ids(turn, data.get("tool_calls") or [])
        blocked = _ids(turn, data.get("blocked_tool_calls") or [])
        taken = {c["id"] for c in kept}
        blocked = [b if b["id"] not in taken else {**b, "id": f"{b['id']}_blocked"} for b in blocked]
        if not kept and not blocked:
            answer = data.get("text") or ""
            if output is not None:
                answer = output.model_validate(data.get("value"))
            stopped = "answer"
            break
        messages.append(_assistant(str(data.get("text") or ""), kept + blocked))
        for sig in map(_signature, kept):
            repeats[sig] = repeats.get(sig, 0) + 1
        looping = [sig for sig in map(_signature, kept) if repeats[sig] > max_repeat]
        if looping:  # the same call again: it is not made, and the loop ends
            stopped = "loop"
            break
        for b in blocked:
            why = f"{b.get('code')}: {b.get('reason')}"
            messages.append(_tool_message(b["id"], {"error": why}))
            calls_made.append(AgentToolCall(turn, b["id"], str(b.get("name")), b["arguments"], False, error=why))
            errors += 1
        seqs = [ex.reserve(4) for _ in kept]  # in the model's order, before any call starts
        outcomes = await ctx.parallel(*(
            _one_call(ctx, allowed[c["name"]], c, s, {"agent": {**tag["agent"], "call": c["id"]}})
            for c, s in zip(kept, seqs, strict=True)))
        for c, s, (ok, value, why) in zip(kept, seqs, outcomes, strict=True):
            seen(s)
            messages.append(_tool_message(c["id"], value if ok else {"error": why}))
            calls_made.append(AgentToolCall(turn, c["id"], c["name"], c["arguments"], ok,
                                            result=value if ok else None, error=why, seq=s[3]))
            errors += 0 if ok else 1
        if stream:
            await ctx._append_event("agent.turn", {"turn": turn, "calls": [
                {"name": c.name, "ok": c.ok, "error": c.error} for c in calls_made if c.turn == turn]})
        if errors >= max_tool_errors:
            stopped = "tool_errors"
            break

    summary = {"stopped": stopped, "turns": turns, "tool_calls": len(calls_made), "tool_errors": errors,
               "tokens": tokens, "cost_usd": round(usd, 10), "template": template, "at": first_seq}

    async def record(seq: int, attempt: int) -> tuple[dict[str, Any], dict[str, Any]]:
        return summary, {"agent": summary}

    await ex.durable("agent", template, record)
    if stream:
        await ctx._append_event("agent.end", {"stopped": stopped, "turns": turns, "tool_calls": len(calls_made)})
    return AgentResult(answer if stopped == "answer" else None, turns, calls_made, stopped, messages,
                       tokens, round(usd, 10), errors)


async def _one_call(
    ctx: Context, tdef: ToolDef, call: dict[str, Any], seqs: list[int], note: dict[str, Any]
) -> tuple[bool, Any, str | None]:
    try:
        value = await ctx._governed_tool(tdef, call["arguments"], seqs, note)
    except _TOOL_ERRORS as err:
        return False, None, f"{err.code}: {err.message}"
    except StalwartError:
        raise
    return True, decode(encode(value)), None
