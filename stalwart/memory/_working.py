"""Working memory: what a run keeps in its context window, pruned by a per-workflow policy.

Pure: no I/O. A run's working memory is rebuilt from recorded step results on replay, so it
needs no storage of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["MemoryPolicy", "Turn", "WorkingMemory", "prune_turns"]

TurnKind = Literal["system", "turn", "tool", "fact"]


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    """How a workflow's working memory is pruned (declared per workflow).

    The policy keeps system messages, the last ``last_turns`` conversation turns, every tool
    result (``keep_tool_results``) and the key facts (``keep_facts``). A tool result longer than
    ``max_tool_result_chars`` is cut, with a marker saying how much was left out (the whole value
    stays in the journal or the artifact store).
    """

    last_turns: int = 8
    keep_tool_results: bool = True
    keep_facts: bool = True
    max_tool_result_chars: int | None = 4000

    def __post_init__(self) -> None:
        if self.last_turns < 0:
            raise ValueError("MemoryPolicy.last_turns must be >= 0")
        if self.max_tool_result_chars is not None and self.max_tool_result_chars < 16:
            raise ValueError("MemoryPolicy.max_tool_result_chars must be at least 16")


@dataclass(frozen=True, slots=True)
class Turn:
    """One entry of working memory. ``role`` is the chat role it is rendered with."""

    role: str
    content: str
    kind: TurnKind = "turn"
    name: str | None = None


def _clip(turn: Turn, limit: int | None) -> Turn:
    if limit is None or turn.kind != "tool" or len(turn.content) <= limit:
        return turn
    cut = len(turn.content) - limit
    return Turn(turn.role, f"{turn.content[:limit]}… [{cut} characters left out]", turn.kind, turn.name)


def prune_turns(turns: Iterable[Turn], policy: MemoryPolicy) -> list[Turn]:
    """The turns ``policy`` keeps, in their original order."""
    items = list(turns)
    convo = [i for i, t in enumerate(items) if t.kind == "turn"]
    recent = set(convo[len(convo) - policy.last_turns :]) if policy.last_turns else set()
    kept: list[Turn] = []
    for i, t in enumerate(items):
        if (
            t.kind == "system"
            or i in recent
            or (t.kind == "tool" and policy.keep_tool_results)
            or (t.kind == "fact" and policy.keep_facts)
        ):
            kept.append(_clip(t, policy.max_tool_result_chars))
    return kept


@dataclass(slots=True)
class WorkingMemory:
    """A run's working memory under ``policy``."""

    policy: MemoryPolicy = field(default_factory=MemoryPolicy)
    turns: list[Turn] = field(default_factory=list)

    def add_turn(self, role: str, content: str) -> None:
        self.turns.append(Turn(role, content, "turn"))

    def add_tool_result(self, name: str, content: str) -> None:
        self.turns.append(Turn("tool", content, "tool", name))

    def add_fact(self, text: str) -> None:
        """A key fact (e.g. recalled from semantic or episodic memory): kept while the policy says so."""
        self.turns.append(Turn("system", text, "fact"))

    def add_system(self, content: str) -> None:
        self.turns.append(Turn("system", content, "system"))

    def pruned(self) -> list[Turn]:
        return prune_turns(self.turns, self.policy)

    def messages(self) -> list[dict[str, str]]:
        """The pruned memory as chat messages (tool results and facts labelled as such)."""
        out: list[dict[str, str]] = []
        for t in self.pruned():
            if t.kind == "tool":
                out.append({"role": "user", "content": f"[tool result: {t.name}]\n{t.content}"})
            elif t.kind == "fact":
                out.append({"role": "system", "content": f"[memory] {t.content}"})
            else:
                out.append({"role": t.role, "content": t.content})
        return out
