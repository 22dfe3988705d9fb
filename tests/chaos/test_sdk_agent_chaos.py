"""kill -9 during multi-turn agents written with Pydantic AI and the OpenAI Agents SDK: another
worker takes over at the turn where the run stopped, each tool call's side effect happens exactly
once, and a replay makes no model call."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

import stalwart as sw
from tests.chaos.test_chaos import _serving, _tails, spawn_worker

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

RUNS = 4


def _spawn(db: str, log: Path) -> subprocess.Popen[bytes]:
    return spawn_worker(db, db, 2.0, log, app="tests.chaos.sdk_agent_chaos_app:app")


@pytest.mark.parametrize("workflow", ["pai-ledger", "oai-ledger"])
def test_kill_dash_nine_mid_sdk_agent_run_doubles_no_side_effect(workflow: str, pg_url: str, tmp_path: Path) -> None:
    from tests.chaos.sdk_agent_chaos_app import app, setup_ledger

    setup_ledger(pg_url)
    app.settings = app.settings.model_copy(update={"db": pg_url})

    async def submit() -> list[str]:
        ids = [await app.start(workflow, n, idempotency_key=f"{workflow}-{n}") for n in range(RUNS)]
        await app.close()
        return ids

    ids = asyncio.run(submit())
    kills = 0
    log = tmp_path / "worker-0.log"
    worker = _spawn(pg_url, log)
    deadline = time.monotonic() + 180
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                time.sleep(0.05)
                done = conn.execute("SELECT count(*) FROM runs WHERE status='COMPLETED'").fetchone()[0]
                if done == RUNS:
                    break
                rows = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
                # kill only a worker that serves, once it has made side effects and runs are mid-way
                if kills < 2 and _serving(log) and rows >= 2 + 5 * kills and done < RUNS:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait()
                    kills += 1
                    log = tmp_path / f"worker-{kills}.log"
                    worker = _spawn(pg_url, log)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    async def check() -> None:
        app2 = sw.App("check", db=pg_url)
        try:
            for rid in ids:
                info = await app2.get_run(rid)
                assert info.status == "COMPLETED", (info.status, info.error, _tails(tmp_path))
                assert info.output == {"output": "credited", "requests": 4}
                report = await app.replay(rid)  # the journal answers every turn and call: no model call
                assert report.outcome == "identical" and report.provider_calls == 0, report.detail
        finally:
            await app2.close()
            await app.close()

    asyncio.run(check())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute("SELECT key, run, amount FROM ledger").fetchall()
        invocations = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    assert kills >= 1, "the test must actually kill a worker mid-run"
    assert len(rows) == 4 * RUNS  # one row per tool call: nothing lost, nothing doubled
    for rid in ids:
        assert sorted(a for _, r, a in rows if r == rid) == [1, 2, 3, 4]
    print(f"\n{workflow} chaos: {kills} kills, {invocations} tool invocations for {len(rows)} ledger rows")
