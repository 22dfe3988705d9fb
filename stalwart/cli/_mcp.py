"""``stalwart mcp list|approve SERVER [TOOL]|serve``: the app's MCP servers, their pinned tool
definitions, and the app's workflows served as MCP tools over stdio."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from stalwart.cli._common import console, load_app, print_json, run
from stalwart.cli._policy import operator
from stalwart.errors import InvalidInput

__all__ = ["mcp_cli"]

mcp_cli = typer.Typer(help="MCP servers: pinned tool definitions, and the workflows as MCP tools.",
                      no_args_is_help=True)


def _server(app: Any, name: str) -> Any:
    server = app.mcp_servers.get(name)
    if server is None:
        known = ", ".join(sorted(app.mcp_servers)) or "none"
        raise InvalidInput(f"the app declares no MCP server {name!r} (declared: {known})")
    return server


@mcp_cli.command("list")
def mcp_list(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each declared server's tools: state (approved, quarantined:changed, quarantined:new, removed) and pins."""
    app = load_app()

    async def go() -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = []
            for name in sorted(app.mcp_servers):
                server = app.mcp_servers[name]
                try:
                    rows += await server.status()
                except Exception as exc:  # noqa: BLE001 - an unreachable server is a row, not a crash
                    rows.append({"server": name, "tool": "", "state": f"unreachable: {exc}", "pinned": None,
                                 "listed": None, "approved_by": None})
            return rows
        finally:
            await app.close()

    rows = run(go)
    if json_out:
        print_json(rows)
        return
    t = Table(title="MCP servers", title_justify="left")
    for col in ("server", "tool", "state", "pinned sha256", "approved by"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["server"], r["tool"], r["state"], (r["pinned"] or "")[:16], r["approved_by"] or "")
    console.print(t)


@mcp_cli.command("approve")
def mcp_approve(
    server: str = typer.Argument(..., help="The server's name (as declared with app.mcp)."),
    tool: str | None = typer.Argument(None, help="One tool (default: every tool the server lists)."),
    who: str | None = typer.Option(None, "--operator", envvar="STALWART_OPERATOR", help="Who you are (audited)."),
) -> None:
    """Pin the server's current tool definitions; descriptions the guard blocks are refused. Exit 1 if any is."""
    me = operator(who)
    app = load_app()

    async def go() -> list[dict[str, Any]]:
        try:
            return await _server(app, server).approve(tool, by=me)  # type: ignore[no-any-return]
        finally:
            await app.close()

    rows = run(go)
    for r in rows:
        colour = "green" if r["state"] == "approved" else "red"
        why = f" (guard: {', '.join(r['reasons'][:3])})" if r["state"] != "approved" else ""
        console.print(f"[{colour}]{r['state']}[/{colour}] {server}::{r['tool']} {r['sha256'][:16]}{why}",
                      highlight=False)
    if any(r["state"] != "approved" for r in rows):
        raise typer.Exit(1)


@mcp_cli.command("serve")
def mcp_serve(
    org: str = typer.Option("default", "--org", help="The org the runs belong to."),
    user: str = typer.Option("mcp", "--user", help="The user the runs are started for."),
    progress_every: float = typer.Option(5.0, "--progress-every", min=0.05,
                                         help="Seconds between progress notifications while a run goes on."),
) -> None:
    """Serve the app's workflows as MCP tools over stdin/stdout (runs execute in this process)."""
    from stalwart.mcp import serve_stdio

    app = load_app()

    async def go() -> None:
        try:
            async with app.worker():
                await serve_stdio(app, org=org, user=user, progress_every_s=progress_every)
        finally:
            await app.close()

    run(go)
