"""``POST /mcp``: the app's workflows as MCP tools over streamable HTTP (stateless, JSON answers).

The caller authenticates like any API caller (an API key or bearer token with the ``operator`` or
``admin`` role); the runs it starts belong to the key's org and subject, whatever the MCP request
says. The MCP SDK's session manager handles the protocol; it lives as long as the server (started
in the app's lifespan by :func:`mcp_lifespan`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from stalwart.api._auth import Principal, requires

__all__ = ["mcp_lifespan", "router"]

router = APIRouter()

_CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("stalwart_mcp_caller", default=None)


def _identity(ctx: Any) -> tuple[str, str]:
    p = _CALLER.get()
    request = getattr(ctx, "request", None)
    if p is None and request is not None:
        p = getattr(getattr(request, "state", None), "principal", None)
    if p is None:  # never reached through the route, which authenticates first: fail closed
        raise PermissionError("MCP request without an authenticated caller")
    return p.org, p.subject


@contextlib.asynccontextmanager
async def mcp_lifespan(api: Any, app: Any) -> AsyncIterator[None]:
    """Run the MCP session manager for the server's lifetime."""
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from stalwart.mcp import workflow_server

    manager = StreamableHTTPSessionManager(workflow_server(app, identity=_identity), stateless=True,
                                           json_response=True)
    api.state.mcp_manager = manager
    async with manager.run():
        yield


class _Delegate(Response):
    """Hands the untouched ASGI request to the MCP session manager."""

    def __init__(self, manager: Any, principal: Principal) -> None:
        super().__init__()
        self.manager = manager
        self.principal = principal

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        token = _CALLER.set(self.principal)
        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            _CALLER.reset(token)


@router.post(
    "/mcp",
    tags=["mcp"],
    summary="The workflows as MCP tools (streamable HTTP)",
    responses={
        200: {"description": "A JSON-RPC answer (MCP streamable HTTP, JSON response mode)"},
        202: {"description": "A notification or a response was accepted (no answer)"},
        400: {"description": "Not a JSON-RPC message the MCP transport accepts (a JSON-RPC error)"},
        406: {"description": "The Accept header does not allow application/json and text/event-stream"},
        413: {"description": "The request body is too large"},
        415: {"description": "The Content-Type is not application/json"},
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "description": "A JSON-RPC 2.0 request or notification of the MCP protocol",
        "properties": {"jsonrpc": {"type": "string", "enum": ["2.0"]}, "id": {"type": ["string", "integer"]},
                       "method": {"type": "string"}, "params": {"type": "object"}},
        "required": ["jsonrpc", "method"]}}}}},
)
async def mcp_endpoint(request: Request, p: Principal = Depends(requires("operator", "admin"))) -> Response:
    """MCP over streamable HTTP: ``tools/list`` shows each workflow with its input schema; ``tools/call``
    starts a run in the caller's org (idempotency key from the request id) and returns its output."""
    return _Delegate(request.app.state.mcp_manager, p)
