"""A small MCP server written with the official SDK: a policy-document index (the example's tool source).

Run by ``stalwart.examples.research`` as a stdio server inside the sandbox; this directory is all
the sandbox sees of the host's files.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("docs")

DOCS = {
    "refunds": "Refunds over 100 EUR need a second approver.",
    "shipping": "Orders ship within two working days.",
    "returns": "Items can be returned within 30 days.",
}


@server.tool()
def search(query: str, limit: int = 3) -> list[str]:
    """Search the policy documents; returns the texts that mention the query."""
    q = query.lower()
    return [text for key, text in DOCS.items() if q in key or q in text.lower()][:limit]


if __name__ == "__main__":
    server.run()
