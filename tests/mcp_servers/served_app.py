"""A Stalwart app whose workflows the MCP tests call through ``stalwart mcp serve`` and ``POST /mcp``."""

from __future__ import annotations

import stalwart as sw

app = sw.App("served")


@app.workflow(name="greet", version="1")
async def greet(ctx: sw.Context, name: str, excited: bool = False) -> dict:
    """Greet someone by name."""
    return {"greeting": f"Hello, {name}{'!' if excited else '.'}", "org": ctx.org}


@app.workflow(name="slow", version="1")
async def slow(ctx: sw.Context, seconds: float) -> str:
    """Take a while."""
    import asyncio

    await ctx.step("wait", asyncio.sleep, seconds)
    return "done"


@app.workflow(name="double", version="1")
async def double(ctx: sw.Context, n: int) -> int:
    """Double a number."""
    return await ctx.step("double", lambda: n * 2)
