"""The app the fleet tests run in separate ``stalwart worker`` processes: one trivial workflow."""

from __future__ import annotations

import stalwart as sw

app = sw.App("fleet")


@app.workflow(name="noop", version="1")
async def noop(ctx: sw.Context, x: int) -> int:
    return x
