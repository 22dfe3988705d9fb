"""``stalwart server``: the API, the console and ``/metrics`` under uvicorn, with an embedded worker.

The lead registers it with ``cli.command("server")(server)``; ``python -m stalwart.api._cli`` runs
it standalone. SIGTERM/SIGINT: uvicorn stops accepting, finishes in-flight requests, then the
embedded worker drains (in-flight runs finish their current step and release their leases).
"""

from __future__ import annotations

import signal

import typer

__all__ = ["server"]


def server(
    host: str | None = typer.Option(
        None, "--host", help="Interface to bind (default: server.host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", "-p", min=1, max=65535, help="TCP port (default: server.port, 8080)."
    ),
    no_worker: bool = typer.Option(False, "--no-worker", help="Serve the API only; run no embedded worker."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", min=1, help="Runs the embedded worker executes at once."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    graceful_s: float = typer.Option(30.0, help="Seconds to let in-flight requests finish on shutdown."),
) -> None:
    """Serve the HTTP API, the web console (/console) and /metrics.

    On first start an admin API key is created: the value of $STALWART_ADMIN_KEY (or the variable
    named by server.admin_key_env) if set, else a new key printed once.
    """
    import uvicorn

    from stalwart.api import ApiSettings, create_app

    try:
        from stalwart.cli._common import load_app, settings
    except ImportError:  # pragma: no cover - the CLI package is the lead's
        raise typer.Exit(2) from None
    app = load_app()
    s = settings()
    api = create_app(app, ApiSettings(), embedded_worker=not no_worker, worker_concurrency=concurrency)
    config = uvicorn.Config(
        api,
        host=host or s.server.host,
        port=port or s.server.port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=int(graceful_s),
        proxy_headers=False,
        server_header=False,
        access_log=False,
    )
    # uvicorn drains, then re-raises the signal it caught; exit 0 then: a drained shutdown is a clean one.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.Server(config).run()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    """``python -m stalwart.api._cli [--app M:A] [--db URL] [server options]``."""
    import os
    import sys

    argv = sys.argv[1:]
    for flag, env in (("--app", "STALWART_APP"), ("--db", "STALWART_DB")):
        if flag in argv:
            i = argv.index(flag)
            os.environ[env] = argv[i + 1]
            del argv[i : i + 2]
    sys.argv = [sys.argv[0], *argv]
    typer.run(server)


if __name__ == "__main__":
    main()
