"""The turns of each ``ctx.agent`` loop of a run, as a tree (pure, from the journal).

An agent's steps carry ``meta["agent"]`` (``at``: the journal position of its first turn, which
names the loop; ``turn``; ``call`` for a tool call's steps); its closing ``agent`` step records
why it stopped. Calls the allowlist refused never reached a step: they are listed on the model
call that asked for them (``blocked_tool_calls``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["agent_tree"]


def _tokens(meta: dict[str, Any]) -> int:
    return int(meta.get("tokens_in") or 0) + int(meta.get("tokens_out") or 0)


def _call_line(tool: Any, policy: Any) -> str:
    if tool is None:
        verdict = json.loads(policy.result_json).get("action") if policy is not None and policy.result_json else None
        if verdict == "deny":
            return f"x {policy.name} #{policy.seq}: denied by policy"
        name = policy.name if policy is not None else "?"
        return f"{name}: {policy.status if policy is not None else 'not started'}"
    if tool.status == "completed":
        return f"{tool.name} #{tool.seq}: ok"
    err = tool.error or {}
    mark = "x " if tool.status == "failed" else ""
    return f"{mark}{tool.name} #{tool.seq}: {tool.status} ({err.get('code') or err.get('type') or 'error'})"


def agent_tree(journal: Sequence[Any]) -> tuple[str, ...]:
    """Lines drawing every agent loop of the journal: its outcome, then each turn and its calls."""
    loops: dict[int, dict[str, Any]] = {}
    for e in sorted(journal, key=lambda x: x.seq):
        tag = (e.meta or {}).get("agent")
        if not isinstance(tag, dict) or "at" not in tag:
            continue
        loop = loops.setdefault(int(tag["at"]), {"turns": {}, "summary": None})
        if e.kind == "agent":
            loop["summary"] = tag
            continue
        turn = loop["turns"].setdefault(int(tag.get("turn") or 0), {"llm": None, "calls": {}})
        if e.kind == "llm":
            turn["llm"] = e
        elif "call" in tag:
            turn["calls"].setdefault(str(tag["call"]), {})[e.kind] = e
    lines: list[str] = []
    for at, loop in loops.items():
        s = loop["summary"]
        template = (s or {}).get("template") or next(
            (t["llm"].meta["agent"].get("template") for t in loop["turns"].values() if t["llm"]), "?")
        if s is None:
            n = len(loop["turns"])
            lines.append(f"agent {template} (from #{at}): in progress, {n} turn{'s' if n != 1 else ''} so far")
        else:
            lines.append(f"agent {template}: {s['stopped']} after {s['turns']} turns, {s['tool_calls']} tool calls, "
                         f"{s['tool_errors']} tool errors, {int(s.get('tokens') or 0):,} tokens")
        turns = sorted(loop["turns"].items())
        for i, (n, turn) in enumerate(turns):
            last = i == len(turns) - 1
            llm = turn["llm"]
            meta = (llm.meta or {}) if llm is not None else {}
            blocked = meta.get("blocked_tool_calls") or []
            asked = len(turn["calls"]) + len(blocked)
            what = f"{asked} tool call{'s' if asked != 1 else ''}" if asked else "answer"
            if llm is not None and llm.status != "completed":
                what = llm.status
            head = f"turn {n}: model #{llm.seq if llm is not None else '?'} {meta.get('model') or ''}".rstrip()
            lines.append(f"{'└─' if last else '├─'} {head}, {_tokens(meta):,} tokens -> {what}")
            pad = "   " if last else "│  "
            children = [_call_line(c.get("tool"), c.get("policy")) for c in turn["calls"].values()]
            children += [f"x {b.get('tool')}: refused ({b.get('code')}: {b.get('reason')})" for b in blocked]
            for j, child in enumerate(children):
                lines.append(f"{pad}{'└─' if j == len(children) - 1 else '├─'} {child}")
    return tuple(lines)
