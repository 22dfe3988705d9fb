"""The run event stream's writer, without a database: batching, keys and offsets, resumption."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from stalwart.engine._stream import RunStream, StreamLimits
from stalwart.store import RunEvent

pytestmark = pytest.mark.asyncio

ANSWER = "The quick brown fox jumps over the lazy dog. " * 12


class Log:
    """What the store does with a run's events: skip known keys, number the rest 1, 2, 3…"""

    def __init__(self) -> None:
        self.rows: list[RunEvent] = []
        self.writes = 0
        self.written = asyncio.Event()

    async def write(self, events: list[RunEvent]) -> None:
        self.writes += 1
        have = {e.key for e in self.rows}
        for ev in events:
            if ev.key not in have:
                have.add(ev.key)
                self.rows.append(RunEvent(ev.key, ev.kind, ev.data, ev.created_at, offset=len(self.rows) + 1))
        self.written.set()

    async def read(self, prefix: str) -> list[RunEvent]:
        return [e for e in self.rows if e.key.startswith(prefix)]

    def text(self) -> str:
        return "".join(e.data["text"] for e in self.rows if e.kind == "llm.delta")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _stream(log: Log, clock: Clock | None = None, **limits: float) -> RunStream:
    lim = StreamLimits(**{"max_chars": 64, "max_delay_s": 30.0, **limits})  # type: ignore[arg-type]
    return RunStream(log.write, log.read, now=lambda: 1.0, limits=lim, monotonic=clock or Clock())


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


async def test_tokens_are_written_in_batches_with_gapless_offsets() -> None:
    log = Log()
    rs = _stream(log)
    t = await rs.text(3, 1, "story")
    tokens = _pieces(ANSWER, 3)
    for piece in tokens:
        await t.feed(piece)
    await t.finish(ANSWER)
    rs.close()
    assert log.text() == ANSWER
    assert [e.offset for e in log.rows] == list(range(1, len(log.rows) + 1))
    deltas = [e for e in log.rows if e.kind == "llm.delta"]
    assert all(64 <= e.data["n"] < 64 + 3 for e in deltas[:-1])  # a batch per 64 characters, not per token
    assert log.writes == len(deltas) <= -(-len(ANSWER) // 64) < len(tokens) / 10
    assert [e.key for e in deltas][:2] == ["t3.1.0", f"t3.1.{deltas[0].data['n']}"]
    assert log.rows[-1].kind == "llm.end" and log.rows[-1].data["chars"] == len(ANSWER)


async def test_a_batch_older_than_the_delay_is_flushed_by_the_next_piece() -> None:
    log, clock = Log(), Clock()
    rs = _stream(log, clock, max_chars=10_000, max_delay_s=30.0)
    t = await rs.text(0, 1, "x")
    await t.feed("hello ")
    assert log.rows == []
    clock.t = 31.0
    await t.feed("world")
    assert log.text() == "hello world"
    rs.close()


async def test_a_stalled_stream_is_flushed_by_the_timer() -> None:
    log = Log()
    rs = _stream(log, max_chars=10_000, max_delay_s=0.01)
    t = await rs.text(0, 1, "x")
    await t.feed("waiting for the next token")
    await asyncio.wait_for(log.written.wait(), 10)
    assert log.text() == "waiting for the next token"
    rs.close()


async def test_a_resumed_call_writes_only_what_follows_its_durable_prefix() -> None:
    """The first execution dies after three batches; the second cuts its batches elsewhere."""
    log = Log()
    first = _stream(log)
    t1 = await first.text(5, 1, "story")
    for piece in _pieces(ANSWER[:200], 7):
        await t1.feed(piece)
    first.close()  # kill -9: what was pending is gone, what was written stays
    assert 0 < len(log.text()) < 200
    second = _stream(log, max_chars=50)
    t2 = await second.text(5, 1, "story")
    assert t2.sent == len(log.text())
    for piece in _pieces(ANSWER, 5):
        await t2.feed(piece)
    await t2.finish(ANSWER)
    second.close()
    assert log.text() == ANSWER  # no character twice, none missing
    assert [e.offset for e in log.rows] == list(range(1, len(log.rows) + 1))
    positions = [(e.data["pos"], e.data["n"]) for e in log.rows if e.kind == "llm.delta"]
    assert all(p + n == nxt for (p, n), (nxt, _) in itertools.pairwise(positions))


async def test_a_replayed_finish_writes_nothing_new() -> None:
    log = Log()
    rs = _stream(log)
    t = await rs.text(1, 1, "x")
    await t.finish("a whole answer from a provider that does not stream")
    before = list(log.rows)
    again = await rs.text(1, 1, "x")
    await again.finish("a whole answer from a provider that does not stream")
    assert log.rows == before and [e.kind for e in before] == ["llm.delta", "llm.end"]


async def test_a_new_attempt_streams_under_its_own_keys() -> None:
    log = Log()
    rs = _stream(log)
    t = await rs.text(2, 1, "x")
    await t.feed("partial answer that failed")
    t.abort()
    await rs.flush()
    t2 = await rs.text(2, 2, "x")
    await t2.finish("the retry's answer")
    assert [(e.key, e.kind) for e in log.rows] == [
        ("t2.1.0", "llm.delta"), ("t2.2.0", "llm.delta"), ("t2.2.end", "llm.end")]


async def test_redacted_batches_are_cut_at_a_word_boundary() -> None:
    log = Log()
    rs = _stream(log, max_chars=8)

    async def redact(text: str) -> str:
        return text.replace("alice@example.com", "{{EMAIL_1}}")

    t = await rs.text(0, 1, "x", redact=redact)
    for piece in _pieces("write to alice@example.com today", 4):
        await t.feed(piece)
    await t.finish(None)
    assert log.text() == "write to {{EMAIL_1}} today"
    assert all("alice" not in e.data["text"] for e in log.rows if e.kind == "llm.delta")


async def test_emitted_events_wait_for_the_next_flush_and_keep_their_order() -> None:
    log = Log()
    rs = _stream(log)
    rs.add("e0", "progress", {"i": 0})
    rs.add("e1", "progress", {"i": 1})
    assert rs.pending == 2 and log.rows == []
    await rs.flush()
    await rs.flush()  # nothing pending: no write
    assert log.writes == 1 and [(e.offset, e.key) for e in log.rows] == [(1, "e0"), (2, "e1")]


async def test_a_call_that_ends_during_a_flush_loses_nothing_and_ends_last() -> None:
    """The timer's flush is writing when the call ends: the end waits for the text before it."""
    log = Log()
    release = asyncio.Event()
    slow = {"first": True}

    async def write(events: list[RunEvent]) -> None:
        if slow.pop("first", False):
            await release.wait()
        await log.write(events)

    rs = RunStream(write, log.read, now=lambda: 1.0, limits=StreamLimits(max_chars=10_000, max_delay_s=30.0))
    t = await rs.text(0, 1, "x")
    await t.feed("first part, ")
    background = asyncio.create_task(rs.flush())
    await asyncio.sleep(0)  # the flush has taken its batch and waits for the store
    await t.feed("second part")
    ending = asyncio.create_task(t.finish("first part, second part"))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(background, ending)
    assert log.text() == "first part, second part"
    assert [e.kind for e in log.rows] == ["llm.delta", "llm.delta", "llm.end"]
    assert [e.offset for e in log.rows] == [1, 2, 3]
