"""``stalwart worker`` and ``stalwart migrate``."""

from __future__ import annotations

import asyncio
import signal

import typer

from stalwart.cli._common import console, err_console, load_app, run, settings
from stalwart.store import open_store


def worker(
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1, help="Runs executed at once."),
    lease_s: float | None = typer.Option(None, help="Lease length in seconds (default from settings)."),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus metrics on this port."),
    metrics_addr: str = typer.Option("127.0.0.1", help="Interface for --metrics-port."),
    log_level: str = typer.Option("INFO", help="Log level (logs are JSON lines on stderr)."),
    nats: str | None = typer.Option(None, "--nats", envvar="STALWART_NATS_URL",
                                    help="Also publish the outbox to NATS JetStream at this URL."),
) -> None:
    """Run a stateless worker until SIGTERM/SIGINT, then drain gracefully."""
    app = load_app()

    from stalwart.telemetry import configure_logging, serve_metrics

    configure_logging(log_level, json=True)

    async def go() -> None:
        await app.connect()
        if metrics_port is not None:
            serve_metrics(metrics_port, addr=metrics_addr)
        w = app.worker(concurrency=concurrency, lease_s=lease_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await w.start()
        from stalwart.engine import start_fleet

        fleet = await start_fleet(app, holder=w.worker_id)  # one elected process runs the fleet duties
        publisher = None
        if nats:
            from stalwart.store import OutboxPublisher

            publisher = asyncio.create_task(OutboxPublisher(app.store, nats).run(stop))
        err_console.print(f"worker {w.worker_id} serving {', '.join(app.workflow_keys())} "
                          f"(concurrency {w.concurrency}) on {app.store.safe_url}")  # type: ignore[attr-defined]
        await stop.wait()
        err_console.print("draining: in-flight runs finish their current step and release their leases")
        await w.stop()
        if fleet is not None:
            await fleet.stop()
        if publisher is not None:
            await asyncio.wait_for(publisher, 10)
        await app.close()

    run(go)


def migrate() -> None:
    """Apply pending database migrations (workers and the demo also do this themselves)."""
    s = settings()

    async def go() -> list[str]:
        store = await open_store(s.db)
        try:
            return await store.migrate()
        finally:
            await store.close()

    applied = run(go)
    console.print(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "database is up to date")
