"""``stalwart doctor``: what this host supports, and how to fix what it lacks."""

from __future__ import annotations

import typer
from rich.table import Table

from stalwart.cli._common import console, print_json, settings


def doctor(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check the sandbox prerequisites (bubblewrap, seccomp, uid, interpreter, cgroups)."""
    from stalwart.sandbox import doctor as sandbox_doctor

    checks = sandbox_doctor(settings().sandbox)
    if json_out:
        print_json([{"name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks])
    else:
        t = Table(title="stalwart doctor", title_justify="left")
        for col in ("check", "ok", "detail", "fix"):
            t.add_column(col)
        for c in checks:
            t.add_row(c.name, "[green]yes[/green]" if c.ok else "[red]no[/red]", c.detail, c.fix)
        console.print(t)
