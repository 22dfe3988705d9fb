"""Real MCP servers written with the official SDK, for the MCP tests (run as ``python -m NAME``
with this directory as their code directory, inside the sandbox)."""
