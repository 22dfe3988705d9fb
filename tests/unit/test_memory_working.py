"""Working memory pruning and the lexical embedder (pure, no services)."""

from __future__ import annotations

import math

import pytest

from stalwart.memory import LexicalEmbedder, MemoryPolicy, Turn, WorkingMemory, prune_turns, summarise_run


def _convo(n: int) -> list[Turn]:
    out = [Turn("system", "you are a support agent", "system")]
    for i in range(n):
        out.append(Turn("user" if i % 2 == 0 else "assistant", f"turn {i}"))
        if i == 1:
            out.append(Turn("tool", "order A-1 total 4999", "tool", "lookup_order"))
        if i == 2:
            out.append(Turn("system", "customer prefers email", "fact"))
    return out


def test_keeps_last_n_turns_every_tool_result_and_facts_in_order() -> None:
    kept = prune_turns(_convo(10), MemoryPolicy(last_turns=3))
    assert [t.content for t in kept] == [
        "you are a support agent",
        "order A-1 total 4999",
        "customer prefers email",
        "turn 7",
        "turn 8",
        "turn 9",
    ]


def test_policy_switches_drop_tool_results_and_facts() -> None:
    kept = prune_turns(_convo(10), MemoryPolicy(last_turns=2, keep_tool_results=False, keep_facts=False))
    assert [t.content for t in kept] == ["you are a support agent", "turn 8", "turn 9"]


def test_zero_turns_keeps_only_system_tools_facts() -> None:
    kept = prune_turns(_convo(4), MemoryPolicy(last_turns=0))
    assert all(t.kind != "turn" for t in kept) and len(kept) == 3


def test_long_tool_results_are_clipped_with_a_marker() -> None:
    wm = WorkingMemory(MemoryPolicy(max_tool_result_chars=20))
    wm.add_tool_result("big", "x" * 100)
    (msg,) = wm.messages()
    assert msg["content"].startswith("[tool result: big]\n" + "x" * 20)
    assert "[80 characters left out]" in msg["content"]


def test_messages_label_facts_and_tool_results() -> None:
    wm = WorkingMemory(MemoryPolicy(last_turns=1))
    wm.add_system("sys")
    wm.add_fact("likes tea")
    wm.add_turn("user", "old")
    wm.add_turn("user", "new")
    assert wm.messages() == [
        {"role": "system", "content": "sys"},
        {"role": "system", "content": "[memory] likes tea"},
        {"role": "user", "content": "new"},
    ]


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        MemoryPolicy(last_turns=-1)
    with pytest.raises(ValueError):
        MemoryPolicy(max_tool_result_chars=3)


def test_lexical_embedder_is_labelled_unit_and_deterministic() -> None:
    emb = LexicalEmbedder()
    assert emb.semantic is False and "lexical" in emb.name and "not semantic" in emb.name
    a, b, c = emb.embed(["broken blender refund", "refund for a broken blender", "weather in paris"])
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)
    assert emb.embed(["broken blender refund"])[0] == a
    dot = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))
    assert dot(a, b) > dot(a, c)


def test_summarise_run_is_deterministic_and_bounded() -> None:
    s = summarise_run("refund", {"order_id": "A-1", "text": "blender broke"}, {"decision": "refunded", "cents": 4999})
    assert s == "refund run completed. Input: order_id=A-1, text=blender broke. Outcome: decision=refunded, cents=4999."
    long = summarise_run("refund", {"text": "y" * 5000}, None, limit=100)
    assert len(long) == 100 and long.endswith("…")
