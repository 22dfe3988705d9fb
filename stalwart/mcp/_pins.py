"""Pinned tool definitions (pure): what is hashed, and what a listed definition's state is.

A definition is the triple an MCP client shows a model: the tool's name, its description and its
input schema. The pin is the SHA-256 of their canonical JSON (sorted keys, no whitespace), so a
change in any of the three, even a reordering-free edit of one word, is a different pin.
Annotations (``readOnlyHint``, ``destructiveHint``…) are not pinned: they are hints for risk,
never trusted for permission.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["APPROVED", "CHANGED", "NEW", "REMOVED", "ToolDefinition", "definition_sha256", "pin_state"]

APPROVED = "approved"
"""Listed, and identical to its pin: callable."""
CHANGED = "quarantined:changed"
"""Listed with a definition that differs from its pin (a rug pull): not callable."""
NEW = "quarantined:new"
"""Listed with no pin at all: not callable until approved."""
REMOVED = "removed"
"""Pinned but no longer listed by the server."""


@dataclass(frozen=True)
class ToolDefinition:
    """One tool as a server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return definition_sha256(self.name, self.description, self.input_schema)

    def to_json(self) -> str:
        """The pinned part, canonically (stored with the pin, shown by ``stalwart mcp list``)."""
        return _canonical(self.name, self.description, self.input_schema)

    @classmethod
    def from_json(cls, text: str) -> ToolDefinition:
        data = json.loads(text)
        return cls(str(data["name"]), str(data["description"]), dict(data["input_schema"]))


def _canonical(name: str, description: str, input_schema: dict[str, Any]) -> str:
    return json.dumps({"name": name, "description": description, "input_schema": input_schema},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_sha256(name: str, description: str, input_schema: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a tool's name, description and input schema."""
    return hashlib.sha256(_canonical(name, description, input_schema).encode()).hexdigest()


def pin_state(listed: ToolDefinition | None, pinned_sha256: str | None) -> str:
    """The state of one tool: :data:`APPROVED`, :data:`CHANGED`, :data:`NEW` or :data:`REMOVED`."""
    if listed is None:
        return REMOVED
    if pinned_sha256 is None:
        return NEW
    return APPROVED if listed.sha256 == pinned_sha256 else CHANGED
