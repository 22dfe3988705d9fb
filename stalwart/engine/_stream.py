"""A run's durable event stream, as a workflow writes it: batched, and safe to replay.

Two things write to it: ``ctx.emit(kind, data)`` (an event of the workflow's own) and
``ctx.llm(..., stream=True)`` (the answer's text as the model produces it). Readers follow it by
offset (``app.events``, ``GET /v1/runs/{id}/events``, ``stalwart run follow``).

**Keys, not batches, make a re-execution invisible.** Every event is keyed by its place in the
workflow, and the store (:meth:`~stalwart.store.Store.append_events`) skips a key it already has
and assigns offsets only to what it writes, so a reader never sees an event twice nor a gap:

* ``e{seq}``: a ``ctx.emit``. Each emit takes the next journal position, like a step, but writes
  no journal row (the event row is its record). A workflow re-run from the top after a crash emits
  the same keys again; the ones already written are skipped (and those older than the last
  journaled step are not even sent: that step's commit flushed them).
* ``t{seq}.{attempt}.{pos}``: a batch of a streamed model call's text, ``pos`` being the batch's
  first character in that attempt's answer; ``t{seq}.{attempt}.end`` closes it (``llm.end``).
  Batches are cut by size and time, so an execution that resumes a step after a kill -9 cuts
  them elsewhere than the one that died: keying by batch number would repeat or lose text.
  Instead the resumed call first asks the store how many characters of its answer are durable
  (the highest ``pos + n``) and writes only what comes after. This relies on the provider
  answering the same again (the scripted ``local`` model, greedy decoding); one that answers
  differently continues the durable prefix with its new answer, and the step's journaled result
  stays the authority. A retry of the step inside one execution (a new ``attempt``) streams under
  new keys: readers that see ``attempt`` change drop the failed attempt's text.

**Batches, flushed at the right moments.** Pending events are written in one transaction
before every journal commit and run state change and before a step body starts (an event is
durable before the step that follows it), and a streamed text is flushed whenever its pending
part reaches ``max_chars`` or has waited ``max_delay_s`` (a timer, so a stalled model does not
hold text back). Storage grows with batches, not tokens.

Committing the events with the step's own checkpoint (one transaction) was the other design: it
would make a streamed answer visible only once the call ended, which defeats a stream.

With PII redaction on, a streamed batch is redacted before it is written, cut at a whitespace so
that an entity is not split between two batches (the final batch takes everything).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stalwart.store import RunEvent

__all__ = ["RESERVED_KINDS", "RunStream", "StreamLimits", "TextStream"]

_log = logging.getLogger("stalwart.engine")
_SPACE = re.compile(r"\s")

RESERVED_KINDS = ("llm.", "run.", "agent.")
"""Kind prefixes the runtime writes itself; ``ctx.emit`` refuses them."""

Write = Callable[[list[RunEvent]], Awaitable[None]]
Read = Callable[[str], Awaitable[list[RunEvent]]]
Redact = Callable[[str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """When a streamed text is flushed to the store (whichever comes first)."""

    max_chars: int = 1024
    """Pending characters that make a batch."""
    max_delay_s: float = 0.25
    """How long the first pending character may wait."""
    max_events: int = 64
    """Pending ``ctx.emit`` events that are written without waiting for the next step."""


class TextStream:
    """One streamed model call (one attempt of one step): feed it the pieces as they come."""

    def __init__(self, owner: RunStream, seq: int, attempt: int, task: str, durable: int,
                 redact: Redact | None) -> None:
        self._owner = owner
        self.seq, self.attempt, self.task = seq, attempt, task
        self.raw = ""
        """Everything this attempt produced so far."""
        self.sent = durable
        """Characters of :attr:`raw` already in the store (a resumed step starts past the durable prefix)."""
        self._redact = redact
        self.closing = False

    @property
    def prefix(self) -> str:
        return f"t{self.seq}.{self.attempt}."

    async def feed(self, piece: str) -> None:
        """The model produced ``piece``."""
        if not piece:
            return
        self.raw += piece
        if len(self.raw) > self.sent:
            await self._owner._pending_text(len(self.raw) - self.sent)

    async def finish(self, text: str | None) -> None:
        """The call ended with answer ``text``: write what is pending and the ``llm.end`` event.

        A call that streamed nothing (a cache hit, a provider that does not stream) writes its
        whole answer as one batch."""
        if not self.raw and text:
            self.raw = text
        self.closing = True
        self._owner.add(f"{self.prefix}end", "llm.end",
                        {"step": self.seq, "attempt": self.attempt, "task": self.task, "chars": len(self.raw)},
                        after_texts=True)
        await self._owner.flush()

    def abort(self, *, drop_pending: bool = False) -> None:
        """The call failed: what it streamed is written with the next flush, and no ``llm.end``.

        ``drop_pending``: the answer was blocked by the guard, so text not yet written is dropped."""
        if drop_pending:
            self.raw = self.raw[:self.sent]
        self.closing = True

    async def take(self, *, final: bool) -> tuple[RunEvent, int] | None:
        """The next batch (and where it ends in :attr:`raw`), or ``None``; nothing is marked sent.

        ``final``: take everything (the call has ended), not only up to the last whitespace."""
        end = len(self.raw)
        if self._redact is not None and not final:
            space = max((m.start() for m in _SPACE.finditer(self.raw, self.sent)), default=-1)
            if space <= self.sent:
                return None
            end = space + 1
        if end <= self.sent:
            return None
        text = self.raw[self.sent:end]
        if self._redact is not None:
            text = await self._redact(text)
        data = {"step": self.seq, "attempt": self.attempt, "task": self.task, "pos": self.sent,
                "n": end - self.sent, "text": text}
        return RunEvent(f"{self.prefix}{self.sent}", "llm.delta", data, self._owner.now()), end


class RunStream:
    """The pending part of one run's stream while a worker executes it."""

    def __init__(self, write: Write, read: Read, *, now: Callable[[], float], limits: StreamLimits | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._read = read
        self.now = now
        self.limits = limits or StreamLimits()
        self._mono = monotonic
        self._events: list[RunEvent] = []
        self._tail: list[RunEvent] = []
        self._texts: list[TextStream] = []
        self._since: float | None = None
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        """Writes made (for tests and metrics): it grows with batches, not with tokens."""

    @property
    def pending(self) -> int:
        return len(self._events) + len(self._tail)

    def add(self, key: str, kind: str, data: Any, *, after_texts: bool = False) -> None:
        """Queue an event for the next flush (``after_texts``: behind the streamed text pending now)."""
        (self._tail if after_texts else self._events).append(RunEvent(key, kind, data, self.now()))

    async def text(self, seq: int, attempt: int, task: str, *, redact: Redact | None = None) -> TextStream:
        """Open the stream of one model call; a resumed call starts after its durable prefix."""
        prefix = f"t{seq}.{attempt}."
        durable = 0
        for ev in await self._read(prefix):
            if ev.kind == "llm.delta" and isinstance(ev.data, dict):
                durable = max(durable, int(ev.data.get("pos", 0)) + int(ev.data.get("n", 0)))
        t = TextStream(self, seq, attempt, task, durable, redact)
        self._texts.append(t)
        return t

    async def _pending_text(self, chars: int) -> None:
        if self._since is None:
            self._since = self._mono()
            self._arm()
        if chars >= self.limits.max_chars or self._mono() - self._since >= self.limits.max_delay_s:
            await self.flush()

    def _arm(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(self.limits.max_delay_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._quiet_flush())

    async def _quiet_flush(self) -> None:
        try:
            await self.flush()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the next flush in the run's own path raises it
            _log.debug("background flush of a run stream failed: %r", exc)

    async def flush(self) -> None:
        """Write every pending event and text batch, in one transaction.

        What is pending is taken when the flush starts: an event added, or a stream finished,
        while this flush awaits the store waits for the next one, so an ``llm.end`` can never
        overtake the last text of its call."""
        async with self._lock:
            events, self._events = self._events, []
            tail, self._tail = self._tail, []
            taken: list[tuple[TextStream, int]] = []
            batch = list(events)
            try:
                for t in list(self._texts):
                    got = await t.take(final=t.closing)
                    if got is not None:
                        batch.append(got[0])
                        taken.append((t, got[1]))
                batch += tail
                if batch:
                    await self._write(batch)
                    self.batches += 1
            except BaseException:
                self._events, self._tail = events + self._events, tail + self._tail
                raise
            for t, end in taken:
                t.sent = end
            self._texts = [t for t in self._texts if not (t.closing and t.sent >= len(t.raw))]
            self._since = None
            if any(len(t.raw) > t.sent for t in self._texts):  # text held back, or fed during this flush
                self._since = self._mono()
                self._arm()

    def close(self) -> None:
        """The execution ends: stop the timer (what is still pending was never durable)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
