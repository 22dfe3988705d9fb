"""``GET /v1/runs/{id}/events``: a run's durable event stream as server-sent events.

Each event goes out as ``id: <offset>`` and ``data: {"offset", "kind", "data", "at"}`` (the default
``message`` type, so ``EventSource.onmessage`` sees them all). A client that reconnects sends the
last id it saw in ``Last-Event-ID`` (or ``?after=``) and gets exactly what followed. When the run
has ended and every event was sent, one ``event: end`` carrying the run's final status closes the
stream. A comment line every ``heartbeat_s`` keeps idle connections from being cut by proxies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from stalwart.api._errors import ApiError

__all__ = ["parse_last_event_id", "sse_events"]


def parse_last_event_id(header: str | None, after: int) -> int:
    """The offset to resume after: ``Last-Event-ID`` (what a reconnecting client sends) wins over ``?after=``."""
    if header is None or not header.strip():
        return after
    value = header.strip()
    if not value.isdigit() or len(value) > 18:
        raise ApiError(422, "invalid_last_event_id", "Last-Event-ID must be an event offset (a non-negative integer)")
    return int(value)


def _frame(fields: list[tuple[str, str]]) -> bytes:
    return ("".join(f"{k}: {v}\n" for k, v in fields) + "\n").encode()


async def sse_events(app: Any, run_id: str, after: int, *, heartbeat_s: float = 15.0) -> AsyncIterator[bytes]:
    """The SSE body for ``run_id`` after offset ``after`` (the run was already checked visible)."""
    events = app.events(run_id, after=after).__aiter__()
    nxt: asyncio.Task[Any] | None = None
    try:
        yield b"retry: 1000\n\n"
        while True:
            if nxt is None:
                nxt = asyncio.ensure_future(events.__anext__())
            done, _ = await asyncio.wait({nxt}, timeout=heartbeat_s)
            if not done:
                yield b": keep-alive\n\n"
                continue
            try:
                ev = nxt.result()
            except StopAsyncIteration:
                break
            finally:
                nxt = None
            doc = json.dumps(ev.to_dict(), separators=(",", ":"), default=str)
            yield _frame([("id", str(ev.offset)), ("data", doc)])
        info = await app.get_run(run_id)
        yield _frame([("event", "end"), ("data", json.dumps({"run_id": run_id, "status": info.status.value}))])
    finally:
        if nxt is not None:  # the client left while the next event was awaited
            nxt.cancel()
            await asyncio.wait({nxt})
        await events.aclose()
