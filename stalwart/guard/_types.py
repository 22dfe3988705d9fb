"""Value objects the guard hands back: what it found and what it decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Action", "Entity", "Redaction", "Source", "ToolCallDecision", "Verdict"]

Action = Literal["allow", "flag", "block"]
Source = Literal["user", "tool", "model"]


@dataclass(frozen=True, slots=True)
class Entity:
    """One PII value found in a text. ``start``/``end`` index the original text.

    ``value`` is the raw value; it is kept out of ``repr`` so that logging an entity never leaks it.
    """

    type: str
    start: int
    end: int
    score: float
    placeholder: str
    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Redaction:
    """A text with every PII value replaced by a ``{{TYPE_N}}`` placeholder."""

    text: str
    entities: list[Entity]

    @property
    def mapping(self) -> dict[str, str]:
        """Placeholder -> raw value, for the vault. Never put this into a prompt, log or span."""
        return {e.placeholder: e.value for e in self.entities}

    @property
    def counts(self) -> dict[str, int]:
        """How many values of each entity type were redacted (for metrics)."""
        out: dict[str, int] = {}
        for e in self.entities:
            out[e.type] = out.get(e.type, 0) + 1
        return out

    def __repr__(self) -> str:
        return f"Redaction(text={self.text!r}, entities={len(self.entities)})"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's decision on one text.

    ``score`` is in [0, 1]; ``reasons`` name the rules and layers that fired (never the text itself).
    """

    action: Action
    score: float
    reasons: tuple[str, ...] = ()
    source: Source = "tool"

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def flagged(self) -> bool:
        return self.action == "flag"


@dataclass(frozen=True, slots=True)
class ToolCallDecision:
    """Whether a proposed tool call may run. ``reason`` is a short, loggable explanation."""

    allowed: bool
    tool: str
    reason: str = ""
    code: str = "ok"
    """``ok``, ``unknown_tool``, ``invalid_args`` or ``denied``."""

    @property
    def blocked(self) -> bool:
        return not self.allowed
