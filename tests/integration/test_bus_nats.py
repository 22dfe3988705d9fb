"""The outbox published to the real NATS JetStream: at least once, deduplicated by event id,
position kept in the store, a run's history rebuilt from the stream alone.

nats-server must listen on 127.0.0.1:4222; if it does not, the fixture starts it (Debian package
``nats-server``) and fails loudly when it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from stalwart.store import JournalEntry, NewRun, OutboxEvent, open_store
from stalwart.store._bus import OutboxPublisher, rebuild_run, tail_events

NATS_URL = "nats://127.0.0.1:4222"


def _listening() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def nats_server() -> str:
    if not _listening():
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.path.exists(exe):
            pytest.fail("nats-server is not installed: apt-get install nats-server (the event bus tests need it)")
        os.makedirs("/var/lib/nats-server", exist_ok=True)
        cmd = ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", exe, "--",
               "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log"]
        if not shutil.which("start-stop-daemon"):
            cmd = [exe, *cmd[cmd.index("--") + 1 :]]
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        else:
            subprocess.run(cmd, check=False)
        for _ in range(50):
            if _listening():
                break
            time.sleep(0.2)
        else:
            pytest.fail("!!! could not start nats-server -js on 127.0.0.1:4222; see /var/log/nats-server.log !!!")
    return NATS_URL


@pytest.fixture
async def stream_name(nats_server):  # type: ignore[no-untyped-def]
    import nats

    name = f"TEST_{uuid.uuid4().hex[:10].upper()}"
    yield name
    nc = await nats.connect(nats_server)
    with contextlib.suppress(Exception):  # the test may not have created it
        await nc.jetstream().delete_stream(name)
    await nc.drain()


async def _run_with_steps(store, n: int) -> str:  # type: ignore[no-untyped-def]
    rid = uuid.uuid4().hex
    now = time.time()
    await store.create_run(NewRun(id=rid, workflow="wf", version="1", input_json="{}", trace_id="t", created_at=now))
    (claim,) = [c for c in await store.claim_runs("w1", ["wf@1"], now, 30, 10) if c.run.id == rid]
    for i in range(n):
        await store.commit_step(
            rid, claim.run.epoch,
            JournalEntry(run_id=rid, seq=i, kind="step", name=f"s{i}", status="completed"), now, 30,
            events=[OutboxEvent(event_id=f"{rid}:{i}", type="step.completed", run_id=rid,
                                payload={"seq": i}, created_at=now + i)],
        )
    return rid


async def test_publish_dedupe_and_rebuild(db_url, stream_name) -> None:  # type: ignore[no-untyped-def]
    store = await open_store(db_url, migrate=True)
    rid = await _run_with_steps(store, 5)
    other = await _run_with_steps(store, 2)
    pub = OutboxPublisher(store, NATS_URL, stream=stream_name, subject_prefix=stream_name.lower())
    assert await pub.publish_pending() == 1 + 5 + 1 + 2  # run.created + steps, both runs
    position = await pub.position()
    assert position > 0
    assert await pub.publish_pending() == 0  # nothing new

    # A crash after publishing but before saving the position: everything is sent again and
    # JetStream drops the copies by Nats-Msg-Id.
    await store.kv_delete("bus.outbox", stream_name)
    again = OutboxPublisher(store, NATS_URL, stream=stream_name, subject_prefix=stream_name.lower())
    assert await again.publish_pending() == 0
    assert again.stats.duplicates == 9 and await again.position() == position
    await pub.close()
    await again.close()

    history = await rebuild_run(rid, NATS_URL, stream_name, subject_prefix=stream_name.lower())
    outbox = [e for e in await store.outbox_after(0, 1000) if e.run_id == rid]
    assert [h["event_id"] for h in history] == [e.event_id for e in outbox]
    assert [h["type"] for h in history] == ["run.created"] + ["step.completed"] * 5
    assert len(await rebuild_run(other, NATS_URL, stream_name, subject_prefix=stream_name.lower())) == 3

    import nats

    nc = await nats.connect(NATS_URL)
    info = await nc.jetstream().stream_info(stream_name)
    assert info.state.messages == 9  # no duplicates on the stream
    await nc.drain()
    await store.close()


async def test_publisher_loop_follows_new_events(sqlite_url, stream_name) -> None:  # type: ignore[no-untyped-def]
    store = await open_store(sqlite_url, migrate=True)
    pub = OutboxPublisher(store, NATS_URL, stream=stream_name, subject_prefix=stream_name.lower())
    stop = asyncio.Event()
    task = asyncio.create_task(pub.run(stop, poll_s=0.05))
    rid = await _run_with_steps(store, 3)
    for _ in range(200):
        if pub.stats.published >= 4:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert pub.stats.published == 4
    got = [e async for e in tail_events(nats_url=NATS_URL, stream=stream_name, subject_prefix=stream_name.lower(),
                                        run_id=rid, follow=False)]
    assert [e["event_id"] for e in got] == [e.event_id for e in await store.outbox_after(0) if e.run_id == rid]
    embedded = [e async for e in tail_events(store, last=2, follow=False)]
    assert [e["type"] for e in embedded] == ["step.completed", "step.completed"]
    await store.close()


async def test_unreachable_bus_is_named(sqlite_url) -> None:  # type: ignore[no-untyped-def]
    from stalwart.errors import StoreUnavailable

    store = await open_store(sqlite_url, migrate=True)
    pub = OutboxPublisher(store, "nats://127.0.0.1:1", stream="X")
    with pytest.raises(StoreUnavailable, match="nats-server -js"):
        await pub.publish_pending()
    await store.close()


async def test_a_real_run_can_be_rebuilt_from_the_stream(sqlite_url, stream_name) -> None:  # type: ignore[no-untyped-def]
    import stalwart as sw

    app = sw.App("bus-test", db=sqlite_url)

    def add(a: int, b: int) -> int:
        return a + b

    @app.workflow(name="adder", version="1")
    async def adder(ctx: sw.Context, x: dict) -> dict:
        s = await ctx.step("add", add, x["a"], x["b"])
        t = await ctx.step("double", add, s, s)
        return {"sum": s, "double": t}

    async with app.worker(concurrency=2):
        run_id = await app.start("adder", {"a": 2, "b": 3}, org="acme")
        assert await app.result(run_id, timeout=30) == {"sum": 5, "double": 10}
    pub = OutboxPublisher(app.store, NATS_URL, stream=stream_name, subject_prefix=stream_name.lower())
    await pub.publish_pending()
    await pub.close()
    history = await rebuild_run(run_id, NATS_URL, stream_name, subject_prefix=stream_name.lower())
    types = [h["type"] for h in history]
    assert types[0] == "run.created" and types[-1] == "run.completed"
    assert [h["payload"]["name"] for h in history if h["type"] == "step.completed"] == ["add", "double"]
    await app.close()
