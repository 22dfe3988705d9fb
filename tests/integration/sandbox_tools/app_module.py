"""A tool defined the way users define them: in an app module that imports stalwart and builds an App."""

from __future__ import annotations

import stalwart as sw

app = sw.App("sandbox-tools")


@app.tool
def ping(n: int) -> int:
    """The trivial tool."""
    return n + 1
