"""``run explain``'s agent tree, drawn from a journal alone (pure)."""

from __future__ import annotations

import json

from stalwart.store import JournalEntry
from stalwart.telemetry._agent_tree import agent_tree


def entry(seq: int, kind: str, name: str, turn: int | None = None, call: str | None = None,
          status: str = "completed", result: object = None, **meta: object) -> JournalEntry:
    tag: dict[str, object] = {"at": 3, "template": "support-agent@1"}
    if turn is not None:
        tag["turn"] = turn
    if call is not None:
        tag["call"] = call
    return JournalEntry("r1", seq, kind, name, status, json.dumps(result) if result is not None else None,
                        error={"code": "tool_error"} if status == "failed" else None,
                        meta={"agent": tag, **meta})


def test_a_finished_loop_shows_its_outcome_turns_and_every_kind_of_call() -> None:
    journal = [
        JournalEntry("r1", 0, "step", "before", "completed"),  # not an agent step: ignored
        entry(3, "llm", "default", 1, model="local", tokens_in=100, tokens_out=10,
              blocked_tool_calls=[{"tool": "wire_money", "code": "unknown_tool", "reason": "not allowed"}]),
        entry(4, "policy", "lookup_order", 1, "c1", result={"action": "allow"}),
        entry(7, "tool", "lookup_order", 1, "c1"),
        entry(8, "policy", "issue_refund", 1, "c2", result={"action": "deny"}),
        entry(12, "llm", "default", 2, tokens_in=200, tokens_out=20),
        entry(13, "policy", "send_email", 2, "c3", result={"action": "allow"}),
        entry(16, "tool", "send_email", 2, "c3", status="failed"),
        entry(17, "agent", "support-agent@1"),
    ]
    journal[-1].meta = {"agent": {"at": 3, "template": "support-agent@1", "stopped": "tool_errors", "turns": 2,
                                  "tool_calls": 4, "tool_errors": 3, "tokens": 330}}
    lines = agent_tree(list(reversed(journal)))  # any order in, seq order out
    assert lines[0] == "agent support-agent@1: tool_errors after 2 turns, 4 tool calls, 3 tool errors, 330 tokens"
    assert lines[1] == "├─ turn 1: model #3 local, 110 tokens -> 3 tool calls"
    assert list(lines[2:5]) == ["│  ├─ lookup_order #7: ok", "│  ├─ x issue_refund #8: denied by policy",
                          "│  └─ x wire_money: refused (unknown_tool: not allowed)"]
    assert lines[5] == "└─ turn 2: model #12, 220 tokens -> 1 tool call"
    assert lines[6] == "   └─ x send_email #16: failed (tool_error)"


def test_a_loop_still_running_says_so_and_a_journal_without_agents_draws_nothing() -> None:
    lines = agent_tree([entry(3, "llm", "default", 1)])
    assert lines[0] == "agent support-agent@1 (from #3): in progress, 1 turn so far"
    assert lines[1].endswith("-> answer")
    assert agent_tree([JournalEntry("r1", 0, "step", "x", "completed")]) == ()
