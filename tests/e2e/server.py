"""A real uvicorn server on a loopback port, in a thread, for API, SDK and browser tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Self

import uvicorn

from stalwart.api import ApiSettings, create_app

__all__ = ["ADMIN_KEY", "ServerThread"]

ADMIN_KEY = "sw_testadmin0001_" + "A" * 40


class ServerThread:
    """``with ServerThread(app) as s: s.url`` serves ``create_app(app)`` until the block ends."""

    def __init__(self, app: Any, settings: ApiSettings | None = None, *, worker: bool = True) -> None:
        self.app = app
        self.settings = settings or ApiSettings(print_bootstrap_key=False)
        self.worker = worker
        self.api = create_app(app, self.settings, embedded_worker=worker, worker_concurrency=8)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.api, log_level="warning", lifespan="on", timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self._sock]))
        self.loop.run_until_complete(self.app.close())

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (where the app's store lives) and return its value."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> Self:
        self._thread.start()
        for _ in range(600):
            if self.server.started:
                return self
            if not self._thread.is_alive():
                raise RuntimeError("the API server failed to start")
            threading.Event().wait(0.02)
        raise RuntimeError("the API server did not start within 12 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self._sock.close()
