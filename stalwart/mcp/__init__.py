"""stalwart.mcp — the Model Context Protocol, governed.

Client side: :class:`McpSession` holds one session to one server (:class:`ServerSpec`: a stdio
command run inside the bubblewrap sandbox, or a streamable-HTTP URL reached under the egress rules
of sandboxed tools, loopback and private addresses only with ``allow_private``), restarted with
backoff when it dies. Tool definitions are pinned by :func:`definition_sha256` (name, description, input schema);
:func:`pin_state` says whether a listed definition is approved or quarantined. The engine's
``app.mcp(...)`` builds on these; nothing here trusts a server's definitions or results.

Server side: :func:`workflow_server` exposes an app's workflows as MCP tools (``stalwart mcp serve``
over stdio, ``POST /mcp`` over streamable HTTP).

Nothing here imports the SDK until a session starts or a server is built.
"""

from __future__ import annotations

from typing import Any

from stalwart.mcp._pins import APPROVED, CHANGED, NEW, REMOVED, ToolDefinition, definition_sha256, pin_state
from stalwart.mcp._session import CallOutcome, McpSession, ServerSpec

__all__ = [
    "APPROVED",
    "CHANGED",
    "NEW",
    "REMOVED",
    "CallOutcome",
    "McpSession",
    "ServerSpec",
    "ToolDefinition",
    "definition_sha256",
    "pin_state",
    "serve_stdio",
    "workflow_server",
]


TYPE_CHECKING = False
if TYPE_CHECKING:
    from stalwart.mcp._serve import serve_stdio, workflow_server


def __getattr__(name: str) -> Any:
    if name in ("workflow_server", "serve_stdio"):
        from stalwart.mcp import _serve

        return getattr(_serve, name)
    raise AttributeError(f"module 'stalwart.mcp' has no attribute {name!r}")
