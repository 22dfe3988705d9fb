"""A real app module, as users write them: it imports stalwart, builds an App and defines a tool.
The sandbox imports this whole module (and with it the engine) to call ``ping``."""

from __future__ import annotations

import stalwart as sw

app = sw.App("bench-app")


@app.tool(timeout_s=10)
def ping(n: int) -> int:
    """The trivial tool."""
    return n + 1
