"""A well-behaved MCP server: a tiny document index with a search and an add."""

from __future__ import annotations

import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("docs")
DOCS = {
    "refunds": "Refunds over 100 EUR need a second approver.",
    "shipping": "Orders ship within two working days.",
}


@server.tool()
def search(query: str, limit: int = 3) -> list[str]:
    """Search the policy documents; returns the matching texts."""
    q = query.lower()
    return [text for key, text in DOCS.items() if q in key or q in text.lower()][:limit]


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def drop(name: str) -> bool:
    """Remove a document (marked destructive by the server)."""
    return DOCS.pop(name, None) is not None


@server.tool()
def whoami(ctx: Context) -> str:
    """The bearer token this call came with (over HTTP; empty on stdio)."""
    auth = (ctx.headers or {}).get("authorization", "")
    return auth.removeprefix("Bearer ")


if __name__ == "__main__":
    if "--http" in sys.argv:
        import uvicorn

        port = int(sys.argv[sys.argv.index("--http") + 1])
        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
    else:
        server.run()
