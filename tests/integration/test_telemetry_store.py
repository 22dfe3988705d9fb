"""Spans persisted in the real SQLite store (and PostgreSQL when available), and persisted alerts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from stalwart.store import open_store
from stalwart.telemetry import (
    Metrics,
    Telemetry,
    TelemetrySettings,
    load_alerts,
    load_spans,
    trace_from_journal,
    trace_text,
)
from tests.unit.test_telemetry_spans import llm_entry, make_run, tool_entry


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[object]:
    """The real SQLite store and, when the server is up, the real PostgreSQL one."""
    s = await open_store(db_url, migrate=True)
    yield s
    await s.close()


async def test_spans_persist_and_a_resume_adds_to_the_same_trace(store: object) -> None:
    run = make_run()
    first = Telemetry(
        config=TelemetrySettings(flush_interval_s=0.05, store_spans=True), store=store, metrics=Metrics(), alerts=False
    )
    first.run_started(run)
    first.step_committed(run, llm_entry())
    for _ in range(100):  # the background task writes without an explicit flush
        await asyncio.sleep(0.02)
        if await load_spans(store, run.id):
            break
    assert [s.name for s in await load_spans(store, run.id)] == ["chat gpt-4o-2024-08-06"]
    await first.close()

    second = Telemetry(
        config=TelemetrySettings(store_spans=True), store=store, metrics=Metrics(), alerts=False
    )  # another worker
    second.run_started(make_run(epoch=2))
    second.step_committed(run, llm_entry())  # re-emitted: same span id, no duplicate
    second.step_committed(run, tool_entry())
    second.run_finished(run, "COMPLETED", duration_s=10, cost_usd=0.006, tokens=1500)
    spans = await second.trace(run.id)
    await second.close()
    assert sorted(s.name for s in spans) == ["chat gpt-4o-2024-08-06", "execute_tool lookup_order", "workflow.run"]
    assert len({s.trace_id for s in spans}) == 1
    rebuilt = trace_from_journal(
        make_run(status="COMPLETED", finished_at=1010.0), [llm_entry(), tool_entry()]
    )
    assert {s.span_id for s in spans} == {s.span_id for s in rebuilt}
    tree = trace_text(spans).splitlines()
    assert tree[0].startswith("workflow.run") and tree[1].startswith("  chat gpt-4o-2024-08-06")


async def test_store_spans_can_be_switched_off(store: object) -> None:
    tel = Telemetry(config=TelemetrySettings(store_spans=False), store=store, metrics=Metrics(), alerts=False)
    tel.step_committed(make_run(), llm_entry())
    await tel.close()
    assert await load_spans(store, "run-1") == []


async def test_alerts_are_persisted_for_the_cli(store: object) -> None:
    m = Metrics()
    tel = Telemetry(config=TelemetrySettings(store_spans=True), store=store, metrics=m, clock=lambda: 5000.0)
    tel.set_kill_switch(True)
    assert tel.alerts is not None
    await tel.alerts.tick(5000.0)
    [alert] = await load_alerts(store, now=5001.0)
    assert alert.name == "AgentKillSwitchActive" and alert.state == "firing"
    assert await load_alerts(store, now=10_000.0) == []  # expired with its process
    await tel.close()


async def test_a_broken_store_is_counted_not_raised() -> None:
    class Broken:
        async def kv_put(self, *a: object, **k: object) -> None:
            raise OSError("disk full")

    m = Metrics()
    tel = Telemetry(config=TelemetrySettings(store_spans=True), store=Broken(), metrics=m, alerts=False)
    tel.step_committed(make_run(), llm_entry())
    await tel.close()
    assert tel.sink is not None and tel.sink.failures == 1
    assert m.export_failures.labels("store")._value.get() == 1
