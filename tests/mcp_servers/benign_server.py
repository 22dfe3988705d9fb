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


def require_auth(inner, log_path: str):  # type: ignore[no-untyped-def]
    """Wrap the HTTP app: a request without a bearer token is answered 401; each token is logged
    (``METHOD TOKEN`` a line) for the test to verify with the broker."""

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"www-authenticate", b"Bearer"), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            with open(log_path, "a") as f:  # noqa: ASYNC230 - a test server appending one short line
                f.write(f"{scope['method']} {auth.removeprefix('Bearer ')}\n")
        await inner(scope, receive, send)

    return app


if __name__ == "__main__":
    if "--http" in sys.argv:
        import uvicorn

        port = int(sys.argv[sys.argv.index("--http") + 1])
        http_app = server.streamable_http_app()
        if "--require-auth" in sys.argv:
            http_app = require_auth(http_app, sys.argv[sys.argv.index("--require-auth") + 1])
        uvicorn.run(http_app, host="127.0.0.1", port=port, log_level="warning")
    else:
        server.run()
