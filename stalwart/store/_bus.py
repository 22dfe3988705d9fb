"""The event bus: the outbox, published to NATS JetStream.

Every step already writes its outbox event in its own transaction, so the outbox table *is* the
log in the embedded default and nothing else is needed. With a bus, :class:`OutboxPublisher`
copies it to a JetStream stream:

* **at least once**: the publisher's position (the last outbox id acknowledged by JetStream) is
  saved in the store (``kv`` namespace ``bus.outbox``) only after the acks, so a crash republishes;
* **deduplicated by event id**: each message carries ``Nats-Msg-Id: <event_id>`` and the stream's
  duplicate window drops the copy; consumers can also dedupe on ``event_id``;
* **replayable per run**: subjects are ``{prefix}.run.{run_id}.{event type}`` (and
  ``{prefix}.sys.{type}`` for events without a run), so :func:`rebuild_run` reads one run's
  history back from the stream alone.

On PostgreSQL an outbox id is drawn before its transaction commits, so a lower id can become
visible after a higher one. The publisher therefore re-reads a window of ``lookback`` ids behind
its position on every pass and skips what it already sent; the duplicate window covers restarts.
SQLite serialises writers, so ids become visible in order there.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from stalwart.errors import ConfigError, StoreUnavailable
from stalwart.store._records import OutboxEvent

__all__ = [
    "DEFAULT_NATS_URL",
    "OutboxPublisher",
    "event_to_wire",
    "format_event",
    "rebuild_run",
    "tail_events",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
POSITION_NAMESPACE = "bus.outbox"
_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_START_HINT = (
    "start it with `nats-server -js` (Debian: apt-get install nats-server; "
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js "
    "-sd /var/lib/nats-server)"
)


def _token(value: str) -> str:
    return _TOKEN.sub("_", value) or "_"


def subject_for(prefix: str, event: OutboxEvent) -> str:
    """``{prefix}.run.{run_id}.{type}`` or ``{prefix}.sys.{type}`` (type dots kept as tokens)."""
    etype = ".".join(_token(t) for t in event.type.split("."))
    if event.run_id:
        return f"{prefix}.run.{_token(event.run_id)}.{etype}"
    return f"{prefix}.sys.{etype}"


def event_to_wire(event: OutboxEvent) -> bytes:
    """The JSON body of a published event."""
    return json.dumps(
        {
            "id": event.id,
            "event_id": event.event_id,
            "type": event.type,
            "run_id": event.run_id,
            "created_at": event.created_at,
            "payload": event.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def format_event(event: dict[str, Any]) -> str:
    """One line for ``stalwart events tail``."""
    import datetime as _dt

    ts = _dt.datetime.fromtimestamp(float(event.get("created_at") or 0), tz=_dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    payload = json.dumps(event.get("payload") or {}, separators=(",", ":"), sort_keys=True)
    run = (event.get("run_id") or "-")[:12]
    return f"{event.get('id', ''):>8} {ts} {run:<12} {event.get('type', ''):<18} {payload[:160]}"


async def _connect(url: str, name: str) -> Any:
    try:
        import nats
    except ImportError as exc:  # pragma: no cover - nats-py is a runtime dependency
        raise ConfigError(f"the event bus needs nats-py ({exc}): pip install nats-py") from None
    try:
        return await nats.connect(url, name=name, connect_timeout=2, max_reconnect_attempts=2, allow_reconnect=False)
    except Exception as exc:  # noqa: BLE001 - nats-py raises several unrelated types here
        raise StoreUnavailable(f"cannot reach NATS at {url} ({type(exc).__name__}: {exc}); {_START_HINT}") from None


@dataclass(slots=True)
class PublishStats:
    published: int = 0
    duplicates: int = 0
    position: int = 0


class OutboxPublisher:
    """Copies the store's outbox to the JetStream stream ``stream``, in outbox order.

    Use :meth:`publish_pending` for one pass or :meth:`run` until ``stop`` is set. The position
    is durable, so any number of publishers may run (duplicates are dropped by the stream) and a
    restarted one carries on where the last acknowledged batch ended.
    """

    def __init__(
        self,
        store: Any,
        nats_url: str = DEFAULT_NATS_URL,
        stream: str = "STALWART",
        *,
        subject_prefix: str = "stalwart",
        batch: int = 500,
        lookback: int | None = None,
        duplicate_window_s: float = 3600.0,
        max_age_s: float | None = None,
    ) -> None:
        self.store = store
        self.nats_url = nats_url
        self.stream = stream
        self.prefix = subject_prefix
        self.batch = batch
        self.lookback = (256 if store.kind == "postgres" else 0) if lookback is None else lookback
        self.duplicate_window_s = duplicate_window_s
        self.max_age_s = max_age_s
        self.stats = PublishStats()
        self._nc: Any = None
        self._js: Any = None
        self._recent: deque[str] = deque(maxlen=max(self.lookback * 4, 1))
        self._recent_set: set[str] = set()

    async def connect(self) -> None:
        """Connect and make sure the stream exists (created, or its subjects checked)."""
        if self._js is not None:
            return
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        self._nc = await _connect(self.nats_url, "stalwart-outbox-publisher")
        self._js = self._nc.jetstream()
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.>"],
            duplicate_window=self.duplicate_window_s,
            max_age=self.max_age_s,
        )
        try:
            await self._js.stream_info(self.stream)
            await self._js.update_stream(config)
        except NotFoundError:
            await self._js.add_stream(config)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
        self._nc = self._js = None

    async def position(self) -> int:
        """The last outbox id acknowledged by the stream (durable, in the store)."""
        raw = await self.store.kv_get(POSITION_NAMESPACE, self.stream)
        return int(json.loads(raw)["after"]) if raw else 0

    async def _save(self, after: int) -> None:
        await self.store.kv_put(POSITION_NAMESPACE, self.stream, json.dumps({"after": after}).encode())

    def _remember(self, event_id: str) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(event_id)
        self._recent_set.add(event_id)

    async def _publish(self, event: OutboxEvent) -> bool:
        ack = await self._js.publish(
            subject_for(self.prefix, event),
            event_to_wire(event),
            stream=self.stream,
            headers={"Nats-Msg-Id": event.event_id, "Stalwart-Outbox-Id": str(event.id)},
        )
        return bool(ack.duplicate)

    async def publish_pending(self) -> int:
        """Publish everything after the durable position; returns the number of new messages."""
        await self.connect()
        start = await self.position()
        after = max(0, start - self.lookback)
        sent = 0
        while True:
            events = await self.store.outbox_after(after, self.batch)
            if not events:
                break
            fresh = [e for e in events if e.event_id not in self._recent_set and (e.id or 0) > 0]
            window = 64
            for i in range(0, len(fresh), window):
                chunk = fresh[i : i + window]
                dups = await asyncio.gather(*(self._publish(e) for e in chunk))
                for e, dup in zip(chunk, dups, strict=True):
                    self._remember(e.event_id)
                    if dup:
                        self.stats.duplicates += 1
                    else:
                        self.stats.published += 1
                        sent += 1
            after = int(events[-1].id or after)
            if after > start:
                start = after
                await self._save(after)
            if len(events) < self.batch:
                break
        self.stats.position = start
        return sent

    async def run(self, stop: asyncio.Event, *, poll_s: float = 0.2) -> None:
        """Publish until ``stop`` is set; a bus outage is retried with backoff, never lost."""
        delay = poll_s
        while not stop.is_set():
            try:
                n = await self.publish_pending()
                delay = poll_s
            except StoreUnavailable:
                await self.close()
                n, delay = 0, min(delay * 2, 10.0)
            if n == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        await self.close()


async def rebuild_run(
    run_id: str, nats_url: str = DEFAULT_NATS_URL, stream: str = "STALWART", *, subject_prefix: str = "stalwart"
) -> list[dict[str, Any]]:
    """A run's events, read back from the stream alone, deduplicated and in outbox order."""
    nc = await _connect(nats_url, "stalwart-rebuild")
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(f"{subject_prefix}.run.{_token(run_id)}.>", stream=stream)
        seen: dict[str, dict[str, Any]] = {}
        while True:
            try:
                msgs = await sub.fetch(256, timeout=1.0)
            except TimeoutError:
                break
            for m in msgs:
                ev = json.loads(m.data)
                seen.setdefault(ev["event_id"], ev)
                await m.ack()
            if msgs and msgs[-1].metadata.num_pending == 0:
                break
        await sub.unsubscribe()
        return sorted(seen.values(), key=lambda e: (e.get("id") or 0))
    finally:
        await nc.drain()


async def tail_events(
    store: Any = None,
    *,
    nats_url: str | None = None,
    stream: str = "STALWART",
    subject_prefix: str = "stalwart",
    run_id: str | None = None,
    last: int = 20,
    follow: bool = True,
    poll_s: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
) -> AsyncIterator[dict[str, Any]]:
    """Events as dicts: the last ``last`` ones, then (``follow``) new ones as they come.

    With ``nats_url`` they are read from the JetStream stream, else from the store's outbox (the
    embedded log). ``run_id`` narrows to one run.
    """
    if nats_url:
        async for ev in _tail_nats(nats_url, stream, subject_prefix, run_id, last, follow, stop):
            yield ev
        return
    if store is None:
        raise ConfigError("events tail needs a store (--db) or a NATS URL (--nats)")
    after = 0
    rows = await _recent_outbox(store, last)
    for e in rows:
        after = int(e.id or after)
        if run_id is None or e.run_id == run_id:
            yield json.loads(event_to_wire(e))
    while follow and not stop():
        events = await store.outbox_after(after, 500)
        for e in events:
            after = int(e.id or after)
            if run_id is None or e.run_id == run_id:
                yield json.loads(event_to_wire(e))
        if not events:
            await asyncio.sleep(poll_s)


async def _recent_outbox(store: Any, last: int) -> list[OutboxEvent]:
    from stalwart.store._sql import SqlRunner

    rows = await SqlRunner(store).fetch("SELECT COALESCE(MAX(id), 0) FROM outbox")
    top = int(rows[0][0])
    return (await store.outbox_after(max(0, top - last), last)) if last > 0 else []


async def _tail_nats(
    url: str, stream: str, prefix: str, run_id: str | None, last: int, follow: bool, stop: Callable[[], bool]
) -> AsyncIterator[dict[str, Any]]:
    from nats.js.api import ConsumerConfig, DeliverPolicy

    nc = await _connect(url, "stalwart-events-tail")
    try:
        js = nc.jetstream()
        subject = f"{prefix}.run.{_token(run_id)}.>" if run_id else f"{prefix}.>"
        info = await js.stream_info(stream)
        start_seq = max(1, int(info.state.last_seq) - last + 1)
        sub = await js.pull_subscribe(
            subject, stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
        )
        while not stop():
            try:
                msgs = await sub.fetch(100, timeout=1.0)
            except TimeoutError:
                if not follow:
                    break
                continue
            for m in msgs:
                await m.ack()
                yield json.loads(m.data)
            if not follow and msgs and msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await nc.drain()
