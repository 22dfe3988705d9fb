"""An example workflow whose tool comes from an MCP server (``mcp_servers/docs_server.py``).

The server runs inside the bubblewrap sandbox (no network, read-only filesystem, limits); its
``search`` tool is callable once an operator has approved (pinned) its definition::

    stalwart mcp approve docs --app stalwart.examples.research:app
    stalwart mcp list --app stalwart.examples.research:app
"""

from __future__ import annotations

import stalwart as sw

app = sw.App("research")
docs = app.mcp("docs", command=["python", "-m", "docs_server"], code="mcp_servers", timeout_s=20)


@app.workflow(name="research", version="1", tools=[docs.tool("search")])
async def research(ctx: sw.Context, question: str) -> dict:
    """Find what the policy documents say about a question."""
    found = await ctx.tool(docs.tool("search"), query=question)
    passages = found["structured"]["result"]
    return {"question": question, "passages": passages, "answer": passages[0] if passages else "nothing found"}
