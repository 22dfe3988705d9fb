"""``stalwart schedule list|pause|resume``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from stalwart.cli._common import console, load_app, print_json, run

schedule_cli = typer.Typer(help="Cron schedules (each tick starts exactly one run across all workers).",
                           no_args_is_help=True)


@schedule_cli.command("list")
def list_schedules(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The app's schedules, whether they are paused, and their last tick."""
    app = load_app()

    async def go() -> list[dict[str, Any]]:
        try:
            store = await app.connect()
            out = []
            for s in app.schedules.values():
                state = await store.get_flag(f"schedule:{s.name}") or {}
                paused = await store.get_flag(f"schedule:{s.name}:paused") is not None
                out.append({"name": s.name, "cron": s.cron, "workflow": s.workflow, "catch_up": s.catch_up,
                            "paused": paused, "last_tick": state.get("last_tick")})
            return out
        finally:
            await app.close()

    rows = run(go)
    if json_out:
        print_json(rows)
        return
    t = Table(title=f"{len(rows)} schedules", title_justify="left")
    for col in ("name", "cron", "workflow", "catch-up", "state", "last tick"):
        t.add_column(col)
    for r in rows:
        last = "" if r["last_tick"] is None else datetime.fromtimestamp(r["last_tick"], tz=UTC).isoformat()
        t.add_row(r["name"], r["cron"], r["workflow"], r["catch_up"], "paused" if r["paused"] else "active", last)
    console.print(t)


def _set(name: str, paused: bool) -> None:
    app = load_app()

    async def go() -> None:
        try:
            await app.pause_schedule(name, paused)
        finally:
            await app.close()

    run(go)
    console.print(f"schedule {name} {'paused' if paused else 'resumed'}")


@schedule_cli.command("pause")
def pause(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """Pause a schedule for every worker."""
    _set(name, True)


@schedule_cli.command("resume")
def resume(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """Resume a paused schedule."""
    _set(name, False)
