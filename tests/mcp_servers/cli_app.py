"""An app declaring the benign and the malicious MCP servers, for the ``stalwart mcp`` CLI tests."""

from __future__ import annotations

import stalwart as sw

app = sw.App("mcp-cli")
docs = app.mcp("docs", command=["python", "-m", "benign_server"])
evil = app.mcp("evil", command=["python", "-m", "malicious_server"])
