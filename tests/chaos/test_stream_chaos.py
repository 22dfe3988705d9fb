"""kill -9 mid-stream: a worker process dies while a model's answer streams into the run's durable
event stream; another worker takes the run over and streams the answer again. A reader following
the stream live, across the kill, sees every character once: no duplicate, no gap in the offsets."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import stalwart as sw
from tests.chaos.test_chaos import _serving, spawn_worker
from tests.fakes import FakeLLMServer

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

ANSWER = " ".join(f"Sentence {i} of a long answer that streams while the worker that asked for it dies."
                  for i in range(12))


def _follow(db: str, run_id: str, out: list[Any], errors: list[BaseException]) -> None:
    async def go() -> None:
        reader = sw.App("reader", db=db)
        try:
            async for ev in reader.events(run_id):
                out.append(ev)
        finally:
            await reader.close()

    try:
        asyncio.run(go())
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_kill_dash_nine_mid_stream_the_reader_sees_no_duplicate_and_no_gap(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeLLMServer(timeout_s=3.0) as srv:
        srv.reply(ANSWER)
        srv.inject("gate")  # the first call streams half its answer, then hangs until the gate opens
        monkeypatch.setenv("CHAOS_LLM_URL", srv.openai_url)
        from tests.chaos.chaos_app import app

        app.settings = app.settings.model_copy(update={"db": pg_url})

        async def submit() -> str:
            rid = await app.start("streamer", "refunds")
            await app.close()
            return rid

        rid = asyncio.run(submit())
        seen: list[Any] = []
        errors: list[BaseException] = []
        reader = threading.Thread(target=_follow, args=(pg_url, rid, seen, errors), daemon=True)
        reader.start()
        first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"
        first = spawn_worker(pg_url, pg_url, 3.0, first_log)
        second = None
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                for _ in range(1200):  # until the first worker has streamed some of the answer
                    n = conn.execute("SELECT count(*) FROM run_events WHERE run_id=%s AND kind='llm.delta'",
                                     (rid,)).fetchone()[0]
                    if n >= 2 and _serving(first_log):
                        break
                    time.sleep(0.05)
                else:
                    pytest.fail("the first worker never streamed:\n" + first_log.read_text()[-3000:])
                first.send_signal(signal.SIGKILL)
                first.wait()
                written = conn.execute("SELECT data FROM run_events WHERE run_id=%s AND kind='llm.delta'"
                                       " ORDER BY ofs", (rid,)).fetchall()
                srv.gate.set()
                second = spawn_worker(pg_url, pg_url, 3.0, second_log)
                for _ in range(1200):
                    status = conn.execute("SELECT status FROM runs WHERE id=%s", (rid,)).fetchone()[0]
                    if status == "COMPLETED":
                        break
                    time.sleep(0.05)
                else:
                    pytest.fail(f"the run ended {status}:\n" + second_log.read_text()[-3000:])
        finally:
            for w in (first, second):
                if w is not None and w.poll() is None:
                    w.send_signal(signal.SIGKILL)
                    w.wait()
        reader.join(60)
        assert not reader.is_alive(), "the reader did not stop when the run ended"
        assert not errors, errors

    import json

    before = "".join(json.loads(d[0])["text"] for d in written)
    assert 0 < len(before) < len(ANSWER) and ANSWER.startswith(before)  # killed mid-stream, half of it durable
    # Asked again by the worker that took over (twice if a starved heartbeat let its lease lapse mid-call).
    assert srv.count() >= 2
    assert [e.offset for e in seen] == list(range(1, len(seen) + 1))  # no gap
    assert len({e.key for e in seen}) == len(seen)  # no event twice
    assert "".join(e.data["text"] for e in seen if e.kind == "llm.delta") == ANSWER  # no character twice or lost
    assert [e.kind for e in seen].count("start") == 1 and [e.kind for e in seen].count("llm.end") == 1
    assert seen[-1].kind == "end" and seen[-1].data == {"chars": len(ANSWER)}
    print(f"\nstream chaos: {len(before)} of {len(ANSWER)} characters durable at the kill; "
          f"{len(seen)} events read live, offsets 1..{seen[-1].offset}")
