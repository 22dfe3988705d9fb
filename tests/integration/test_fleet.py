"""Fleet duties, exactly once: one elected process at a time escalates reviews, purges what
retention expired and counts the fleet gauges.

In-process on SQLite and PostgreSQL with an injected clock (the election and the duties), then two
real ``stalwart worker`` processes on one PostgreSQL database (gauges, kill -9 of the leader)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

import stalwart as sw
from stalwart.engine import FLEET_LEASE, Fleet
from stalwart.settings import FleetSettings
from stalwart.store import ArtifactStore, FileBlobs, NewRun, open_store

ROOT = Path(__file__).resolve().parents[2]
KEY = base64.b64encode(bytes(range(32))).decode()
HOUR = 3600.0
WORKER_LEASE_S = 6.0  # long enough that a loaded CI box never lets a live leader's lease lapse


class Clock:
    """A clock the test moves by hand (wall and monotonic together)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


class Hook(BaseHTTPRequestHandler):
    """A Slack-compatible webhook that records what it receives."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: ClassVar[list[dict[str, Any]]] = []
    handler = type("H", (Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()


def _escalations(received: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in received if m["text"].startswith("Review escalated")]


async def _overdue_review(app: sw.App, clock: Clock) -> str:
    """A critical review opened two hours ago (its SLA is 15 minutes)."""
    now = clock.t
    clock.t = now - 2 * HOUR
    gov = await app.governance()
    review = await gov.reviews.create(
        "run-1", 0, "alice", {"tool": "issue_refund", "args": {}}, severity="critical", org="acme"
    )
    clock.t = now
    return str(review.id)


def _metric(name: str, **labels: str) -> float | None:
    from stalwart.telemetry import METRICS

    return METRICS.registry.get_sample_value(name, labels)


async def _until(fleet: Fleet, cond: Any) -> None:
    """Tick ``fleet`` until ``cond()`` holds (the kill switch read is cached for 250 ms on PostgreSQL)."""
    for _ in range(100):
        await fleet.tick()
        if cond():
            return
        await asyncio.sleep(0.05)
    pytest.fail("the fleet never refreshed the gauge")


@pytest.mark.asyncio
async def test_one_leader_escalates_once_purges_and_hands_over(
    db_url: str, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = webhook
    monkeypatch.setenv("STALWART_MASTER_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    clock = Clock(1_000_000.0)
    cfg = FleetSettings(lease_s=30, gauges_interval_s=5, escalation_interval_s=5, retention_interval_s=60)
    apps = [sw.App(f"fleet-{i}", db=db_url, clock=clock) for i in range(2)]
    for a in apps:
        a.settings = a.settings.model_copy(update={"webhook_url": url})
    try:
        await apps[0].connect()
        await apps[1].connect()
        review_id = await _overdue_review(apps[0], clock)
        received.clear()  # the "review needed" notice
        a, b = Fleet(apps[0], holder="a", settings=cfg), Fleet(apps[1], holder="b", settings=cfg)

        assert await a.tick() is True and await b.tick() is False
        assert a.lease is not None and a.lease.epoch == 1 and b.lease is None
        assert a.done["escalation"] == 1 and b.done["escalation"] == 0
        assert _metric("agent_human_review_queue_depth") == 1  # counted by the leader
        assert _metric("agent_queue_depth", state="pending") == 0

        # the kill switch gauge follows the switch in every process, with no step committed anywhere
        gov_b = await apps[1].governance()
        await gov_b.kill_switch.engage("drill", "ops-1")
        await _until(b, lambda: _metric("agent_kill_switch_active") == 1)
        await gov_b.kill_switch.release("ops-1")
        await gov_b.kill_switch.release("ops-2")
        await _until(b, lambda: _metric("agent_kill_switch_active") == 0)
        for _ in range(3):  # both keep ticking; the review is escalated exactly once
            clock.t += 6
            await a.tick()
            await b.tick()
        gov = await apps[0].governance()
        review = await gov.reviews.get(review_id)
        assert review.tier == 1 and review.status == "pending"
        await gov.reviews.flush()
        await (await apps[1].governance()).reviews.flush()
        assert len(_escalations(received)) == 1
        events = await gov.audit.events(run_ids=["run-1"])
        assert [e.event_type for e in events].count("review.escalated") == 1

        # retention: an artifact that expired is swept by the leader once the retention interval passed
        artifacts = await apps[0].artifacts()
        ref = await artifacts.put("acme", b"old tool result", run_id="run-1", ttl_s=10)
        for _ in range(2):  # the term began at +0 and it is +18: retention falls due at +60
            clock.t += 21
            assert await b.tick() is False  # a non-leader purges nothing
            assert await artifacts.blobs.get(ref.name) is not None
            assert await a.tick() is True
        assert a.done["retention"] == 1 and b.done["retention"] == 0
        assert await artifacts.blobs.get(ref.name) is None

        # a leader that stops renewing is replaced once its lease expired, in a new term
        clock.t += 29  # a's last renewal was at +60: its lease runs to +90
        assert await b.tick() is False
        clock.t += 1
        assert await b.tick() is True and b.lease is not None and b.lease.epoch == 2
        assert await a.tick() is False and a.lease is None  # the old leader steps down
        # a graceful stop releases the lease: the successor need not wait for it to expire
        await b.stop()
        assert await a.tick() is True and a.lease is not None and a.lease.epoch == 3
        await a.stop()
    finally:
        for x in apps:
            await x.close()


# -- two real worker processes on one PostgreSQL database ---------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(pg_url: str, cwd: Path, port: int, hook: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STALWART_MASTER_KEY": KEY,
        "STALWART_WEBHOOK_URL": hook,
        "STALWART_FLEET__LEASE_S": str(WORKER_LEASE_S),
        "STALWART_FLEET__GAUGES_INTERVAL_S": "0.5",
        "STALWART_FLEET__ESCALATION_INTERVAL_S": "0.5",
        "STALWART_FLEET__RETENTION_INTERVAL_S": "0.5",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stalwart.cli",
            "--db",
            pg_url,
            "--app",
            "tests.integration.fleet_app:app",
            "worker",
            "--concurrency",
            "2",
            "--metrics-port",
            str(port),
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def _lease(pg_url: str) -> tuple[str, int, float, float] | None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT holder, epoch, acquired_at, expires_at FROM leader_leases WHERE name=%s", (FLEET_LEASE,)
        ).fetchone()
    return None if row is None or not row[0] else (row[0], int(row[1]), float(row[2]), float(row[3]))


def _gauges(port: int) -> dict[str, float]:
    """The fleet gauge samples on a worker's ``/metrics`` (``{}`` while it does not answer yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(("agent_queue_depth", "agent_human_review_queue_depth", "agent_dlq_depth")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _wait(what: str, cond: Any, log: Path, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    pytest.fail(f"{what} never happened; worker logs:\n" + log.read_text()[-4000:])


@pytest.mark.postgres
def test_two_workers_one_leader_kill_dash_nine_and_takeover(
    pg_url: str, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    hook, received = webhook
    work = tmp_path / "work"  # the workers' folder; the artifact blobs are where their default puts them
    work.mkdir()
    log = tmp_path / "workers.log"
    blobs = FileBlobs(work / ".stalwart" / "artifacts")

    async def seed() -> tuple[str, str]:
        clock = Clock(time.time())
        app = sw.App("seed", db=pg_url, clock=clock)
        try:
            await app.connect()
            review_id = await _overdue_review(app, clock)
            # a run of a workflow no worker serves: it stays claimable, so the queue depth is 1
            await app.store.create_run(NewRun("queued-1", "elsewhere", "1", "{}", "t" * 32, clock.t))
            arts = ArtifactStore(app.store, blobs, master_key=base64.b64decode(KEY))
            ref = await arts.put("acme", b"expired", run_id="run-1", ttl_s=-1)
            return review_id, ref.name
        finally:
            await app.close()

    review_id, blob = asyncio.run(seed())
    ports = [_free_port(), _free_port()]
    workers = [_spawn(pg_url, work, p, hook, log) for p in ports]
    try:
        by_pid = {w.pid: (w, p) for w, p in zip(workers, ports, strict=True)}

        def leader_serving() -> tuple[str, int, float, float] | None:
            lease = _lease(pg_url)
            if lease is None or lease[3] <= time.time():
                return None
            pid = int(lease[0].split(":")[1])
            g = _gauges(by_pid[pid][1]) if pid in by_pid else {}
            ok = (
                g.get('agent_queue_depth{state="pending"}') == 1
                and g.get("agent_human_review_queue_depth") == 1
            )
            return lease if ok else None

        # two interpreters importing Stalwart and loading the guard's models: slow on a loaded box
        first = _wait("a leader exporting the fleet gauges", leader_serving, log, timeout=300.0)
        leader_pid = int(first[0].split(":")[1])
        leader, _ = by_pid[leader_pid]
        other, other_port = next(v for k, v in by_pid.items() if k != leader_pid)

        # the leader escalated the review (once) and swept the expired artifact
        def escalated() -> bool:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                tier = conn.execute("SELECT tier FROM reviews WHERE id=%s", (review_id,)).fetchone()
                arts = conn.execute("SELECT count(*) FROM artifacts").fetchone()
            return bool(tier and tier[0] == 1 and arts and arts[0] == 0)

        _wait("the escalation and the artifact sweep", escalated, log)
        assert asyncio.run(blobs.get(blob)) is None
        # the other process is alive but exports no fleet counts: max() and sum() both see the leader's
        g = _wait("the other worker's /metrics", lambda: _gauges(other_port), log)
        assert g.get("agent_human_review_queue_depth") == 0 and g.get("agent_dlq_depth") == 0
        assert not any(k.startswith("agent_queue_depth{") for k in g), g

        leader.send_signal(signal.SIGKILL)
        leader.wait()
        dead = _lease(pg_url)
        assert dead is not None and int(dead[0].split(":")[1]) == leader_pid

        def taken_over() -> tuple[str, int, float, float] | None:
            lease = leader_serving()
            return lease if lease is not None and int(lease[0].split(":")[1]) == other.pid else None

        second = _wait("the takeover", taken_over, log)
        assert second[1] == dead[1] + 1  # a new term
        assert second[2] <= dead[3] + WORKER_LEASE_S, "the survivor took over more than a lease after expiry"

        # the new leader purges too, and nothing was escalated twice
        async def expire_another() -> str:
            store = await open_store(pg_url)
            try:
                arts = ArtifactStore(store, blobs, master_key=base64.b64decode(KEY))
                return (await arts.put("acme", b"expired too", ttl_s=-1)).name
            finally:
                await store.close()

        blob2 = asyncio.run(expire_another())
        _wait("the new leader's sweep", lambda: asyncio.run(blobs.get(blob2)) is None, log)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            n = conn.execute(
                "SELECT count(*) FROM audit_log WHERE body LIKE %s", ('%"review.escalated"%',)
            ).fetchone()
        assert n is not None and n[0] == 1
        assert len(_escalations(received)) == 1, received
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()
