"""The ``Provider`` protocol every adapter implements, and tool/message shape helpers."""

from __future__ import annotations

from typing import Any, Protocol

from stalwart.gateway._types import ProviderRequest, ProviderResponse

__all__ = ["Provider", "canonical_tool"]


class Provider(Protocol):
    """One configured endpoint. Every error it raises is already a ``ProviderError``."""

    name: str
    """``openai`` | ``anthropic`` | ``local`` | ``embedded``."""
    supports_json_schema: bool
    """Whether the endpoint enforces a JSON Schema itself (else the schema goes into the prompt)."""

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        """Answer ``req``; when ``req.on_delta`` is set, hand it each piece of text as produced."""
        ...

    async def aclose(self) -> None: ...


def canonical_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """``{name, description, parameters}`` from an OpenAI-, Anthropic- or already-canonical tool."""
    if tool.get("type") == "function" and "function" in tool:
        tool = tool["function"]
    params = tool.get("parameters") or tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"name": tool["name"], "description": tool.get("description", ""), "parameters": params}
