"""``stalwart alerts``: the alert conditions Stalwart evaluates itself in embedded mode."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.table import Table

from stalwart.cli._common import console, load_app, print_json, run


def alerts(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Alerts currently firing, as every live Stalwart process last evaluated them."""
    from stalwart.telemetry import load_alerts

    app = load_app(default=None)

    async def go() -> list[Any]:
        try:
            store = await app.connect()
            return list(await load_alerts(store, now=time.time()))
        finally:
            await app.close()

    firing = run(go)
    if json_out:
        print_json([a.to_dict() if hasattr(a, "to_dict") else a for a in firing])
        return
    if not firing:
        console.print("[green]no alerts firing[/green]")
        return
    t = Table(title=f"{len(firing)} alerts firing", title_justify="left")
    for col in ("alert", "severity", "summary"):
        t.add_column(col)
    for a in firing:
        d = a.to_dict() if hasattr(a, "to_dict") else dict(a)
        t.add_row(str(d.get("name")), str(d.get("severity", "")), str(d.get("summary", d.get("description", ""))))
    console.print(t)
