"""``stalwart events tail``: the event stream (the outbox table, or NATS JetStream)."""

from __future__ import annotations

import json

import typer

from stalwart.cli._common import run, settings

events_cli = typer.Typer(help="The event stream: the outbox, or NATS JetStream with --nats.", no_args_is_help=True)


@events_cli.command("tail")
def tail(
    run_id: str | None = typer.Option(None, "--run", help="Only this run's events."),
    nats: str | None = typer.Option(None, "--nats", envvar="STALWART_NATS_URL", help="Read JetStream, not the outbox."),
    stream: str = typer.Option("STALWART", help="JetStream stream name."),
    last: int = typer.Option(20, min=0, help="Start with this many past events."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Keep printing new events."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print run events (state changes, steps) as they happen."""
    from stalwart.store import format_event, open_store, tail_events

    async def go() -> None:
        store = None if nats else await open_store(settings().db, migrate=True)
        try:
            async for ev in tail_events(store, nats_url=nats, stream=stream, run_id=run_id, last=last, follow=follow):
                print(json.dumps(ev, default=str) if as_json else format_event(ev), flush=True)
        finally:
            if store is not None:
                await store.close()

    run(go)
