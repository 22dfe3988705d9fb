"""One contract suite for every Store implementation: SQLite and the real PostgreSQL."""

from __future__ import annotations

import pytest

from stalwart.errors import LeaseLost, RunNotFound
from stalwart.store import DeadLetter, JournalEntry, NewRun, OutboxEvent, RunEvent, open_store

pytestmark = pytest.mark.asyncio


def _run(i: str, key: str | None = None, org: str = "acme", wf: str = "wf") -> NewRun:
    return NewRun(id=i, workflow=wf, version="1", input_json='{"x":1}', trace_id="t" * 32, created_at=100.0,
                  org=org, idempotency_key=key)


@pytest.fixture
async def store(db_url):  # type: ignore[no-untyped-def]
    s = await open_store(db_url, migrate=True)
    yield s
    await s.close()


async def test_migrations_are_idempotent(store) -> None:  # type: ignore[no-untyped-def]
    assert await store.migrate() == []
    assert await store.pending_migrations() == []


async def test_idempotent_create_is_scoped_by_org(store) -> None:  # type: ignore[no-untyped-def]
    assert await store.create_run(_run("r1", "k")) == ("r1", True)
    assert await store.create_run(_run("r2", "k")) == ("r1", False)
    assert await store.create_run(_run("r3", "k", org="globex")) == ("r3", True)
    assert await store.create_run(_run("r4")) == ("r4", True)
    rec = await store.get_run("r1")
    assert rec is not None and rec.status == "PENDING" and rec.input_json == '{"x":1}'


async def test_claim_bumps_epoch_and_loads_journal_once(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1"))
    assert await store.claim_runs("w1", ["other@1"], 101.0, 10, 5) == []
    [claim] = await store.claim_runs("w1", ["wf@1"], 101.0, 10, 5)
    assert claim.run.status == "RUNNING" and claim.run.epoch == 1 and claim.journal == []
    assert await store.claim_runs("w2", ["wf@1"], 102.0, 10, 5) == []  # lease still held
    e = JournalEntry("r1", 0, "step", "a", "completed", "1", started_at=101.0, finished_at=101.5)
    assert await store.commit_step("r1", 1, e, 101.5, 10) == (False, False)
    # lease expires: another worker takes over, sees the journal, and fences the first one out
    [takeover] = await store.claim_runs("w2", ["wf@1"], 200.0, 10, 5)
    assert takeover.run.epoch == 2 and [j.name for j in takeover.journal] == ["a"]
    with pytest.raises(LeaseLost):
        await store.commit_step("r1", 1, JournalEntry("r1", 1, "step", "b", "completed", "2"), 201.0, 10)
    with pytest.raises(LeaseLost):
        await store.set_run_state("r1", 1, "COMPLETED", 201.0, output_json="1")
    assert [j.name for j in await store.journal("r1")] == ["a"]


async def test_commit_reports_cancel_and_kill_switch(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1"))
    [c] = await store.claim_runs("w", ["wf@1"], 101.0, 10, 1)
    await store.request_cancel("r1", 101.2)
    await store.set_flag("kill_switch", {"reason": "test"}, 101.3)
    cancel, kill = await store.commit_step("r1", c.run.epoch, JournalEntry("r1", 0, "step", "a", "completed", "1"),
                                           101.5, 10)
    assert cancel and kill


async def test_waiting_runs_wake_on_time_and_on_signal(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1"))
    [c] = await store.claim_runs("w", ["wf@1"], 101.0, 10, 1)
    await store.set_run_state("r1", c.run.epoch, "WAITING", 101.0, wake_at=500.0, release=True)
    assert await store.claim_runs("w", ["wf@1"], 102.0, 10, 1) == []
    [c2] = await store.claim_runs("w", ["wf@1"], 500.0, 10, 1)
    await store.set_run_state("r1", c2.run.epoch, "WAITING", 500.0, wake_at=None, release=True, signal_name="go")
    assert await store.claim_runs("w", ["wf@1"], 10_000.0, 10, 1) == []  # no timer: waits for its signal
    await store.send_signal("r1", "go", '{"ok":true}', 600.0)
    [c3] = await store.claim_runs("w", ["wf@1"], 600.0, 10, 1)
    sig = await store.next_signal("r1", "go")
    assert sig is not None and sig.payload_json == '{"ok":true}'
    await store.commit_step("r1", c3.run.epoch, JournalEntry("r1", 0, "signal", "signal:go", "completed", "1"),
                            601.0, 10, consume_signal=sig.id)
    assert await store.next_signal("r1", "go") is None


async def test_signal_sent_before_suspending_is_not_lost(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1"))
    [c] = await store.claim_runs("w", ["wf@1"], 101.0, 10, 1)
    await store.send_signal("r1", "go", "1", 101.5)  # arrives while the run is still RUNNING
    await store.set_run_state("r1", c.run.epoch, "WAITING", 102.0, wake_at=None, release=True, signal_name="go")
    assert len(await store.claim_runs("w", ["wf@1"], 102.0, 10, 1)) == 1


async def test_cancel_of_untouched_pending_run_is_immediate(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1"))
    rec = await store.request_cancel("r1", 101.0)
    assert rec.status == "CANCELLED" and rec.cancel_requested
    with pytest.raises(RunNotFound):
        await store.request_cancel("missing", 101.0)


async def test_dead_letter_and_retry(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1"))
    [c] = await store.claim_runs("w", ["wf@1"], 101.0, 10, 1)
    await store.commit_step("r1", c.run.epoch, JournalEntry("r1", 0, "tool", "t", "completed", "1"), 101.0, 10)
    dl = DeadLetter("r1", "wf", "1", "tool_error: boom", {"message": "boom"}, 102.0, 0)
    await store.set_run_state("r1", c.run.epoch, "DEAD_LETTER", 102.0, error={"message": "boom"}, dead_letter=dl)
    [item] = await store.list_dead_letters()
    assert item.run_id == "r1" and item.error == {"message": "boom"}
    rec = await store.retry_dead_letter("r1", 103.0, new_generation=True)
    assert rec.status == "PENDING" and rec.generation == 1 and rec.seq_base == 1
    assert await store.list_dead_letters() == []
    with pytest.raises(RunNotFound):
        await store.retry_dead_letter("r1", 104.0)


async def test_outbox_is_written_with_the_step(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1"))
    [c] = await store.claim_runs("w", ["wf@1"], 101.0, 10, 1)
    ev = OutboxEvent("r1:0:completed:1", "step.completed", "r1", {"seq": 0}, 101.0)
    await store.commit_step("r1", c.run.epoch, JournalEntry("r1", 0, "step", "a", "completed", "1"), 101.0, 10,
                            events=[ev, ev])
    events = await store.outbox_after(0)
    assert [e.type for e in events] == ["run.created", "step.completed"]  # deduplicated by event id


async def test_shared_state(store) -> None:  # type: ignore[no-untyped-def]
    assert await store.get_flag("f") is None
    await store.set_flag("f", {"a": 1}, 1.0)
    assert await store.get_flag("f") == {"a": 1}
    await store.set_flag("f", None, 2.0)
    assert await store.get_flag("f") is None
    await store.kv_put("ns", "a:1", b"one")
    await store.kv_put("ns", "a:2", b"two", expires_at=50.0)
    await store.kv_put("ns", "b:1", b"three")
    assert await store.kv_get("ns", "a:1") == b"one"
    assert await store.kv_get("ns", "a:2", now=10.0) == b"two"
    assert await store.kv_get("ns", "a:2", now=60.0) is None
    assert await store.kv_keys("ns", "a:") == ["a:1", "a:2"]
    assert await store.kv_delete_prefix("ns", "a:") == 2
    assert await store.kv_delete("ns", "b:1") is True
    assert await store.kv_delete("ns", "b:1") is False
    assert await store.counter_add("c", "k", 1.5, 1.0) == 1.5
    assert await store.counter_add("c", "k", 2.0, 2.0) == 3.5
    assert await store.counter_get("c", "k") == 3.5
    assert await store.counter_get("c", "missing") == 0.0


async def test_list_runs_filters(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1", wf="a"))
    await store.create_run(_run("r2", wf="b", org="globex"))
    assert {r.id for r in await store.list_runs()} == {"r1", "r2"}
    assert [r.id for r in await store.list_runs(workflow="b")] == ["r2"]
    assert [r.id for r in await store.list_runs(org="acme")] == ["r1"]
    assert [r.id for r in await store.list_runs(status="PENDING", limit=1)] in (["r1"], ["r2"])


async def test_leader_lease_one_holder_renewal_takeover_and_release(store) -> None:  # type: ignore[no-untyped-def]
    a = await store.acquire_leader("fleet", "a", 100.0, 10.0)
    assert a.held_by("a", 100.0) and a.epoch == 1 and a.expires_at == 110.0
    b = await store.acquire_leader("fleet", "b", 105.0, 10.0)
    assert not b.held_by("b", 105.0) and b.holder == "a" and b.epoch == 1  # refused, unchanged
    a2 = await store.acquire_leader("fleet", "a", 108.0, 10.0)
    assert a2.held_by("a", 108.0) and a2.epoch == 1 and a2.expires_at == 118.0  # renewed, same term
    b2 = await store.acquire_leader("fleet", "b", 118.0, 10.0)  # a stopped renewing: b takes over
    assert b2.held_by("b", 118.0) and b2.epoch == 2
    assert not (await store.acquire_leader("fleet", "a", 119.0, 10.0)).held_by("a", 119.0)
    assert not await store.release_leader("fleet", "a", 1, 119.0)  # a deposed holder cannot release
    assert await store.release_leader("fleet", "b", 2, 119.0)
    a3 = await store.acquire_leader("fleet", "a", 119.5, 10.0)  # released: free at once, a new term
    assert a3.held_by("a", 119.5) and a3.epoch == 3
    other = await store.acquire_leader("other-duties", "b", 119.5, 10.0)  # groups are independent
    assert other.held_by("b", 119.5) and other.epoch == 1


async def test_leader_lease_race_has_exactly_one_winner(store) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from stalwart.store import open_store as _open

    others = [await _open(store.safe_url if store.kind == "sqlite" else store.url) for _ in range(3)]
    try:
        got = await asyncio.gather(
            *(s.acquire_leader("fleet", f"h{i}", 100.0, 30.0) for i, s in enumerate([store, *others]))
        )
    finally:
        for s in others:
            await s.close()
    winners = {g.holder for g in got if g.held_by(g.holder, 100.0)}
    assert len(winners) == 1 and all(g.holder in winners and g.epoch == 1 for g in got)


async def test_fleet_counts_by_queue_state(store) -> None:  # type: ignore[no-untyped-def]
    empty = await store.fleet_counts(100.0)
    assert (empty.pending, empty.waiting, empty.running, empty.dead_letter, empty.reviews) == (0, 0, 0, 0, 0)
    for i in range(4):
        await store.create_run(_run(f"r{i}"))
    [_c0, c1, c2] = await store.claim_runs("w", ["wf@1"], 101.0, 10, 3)
    await store.set_run_state(c1.run.id, c1.run.epoch, "WAITING", 101.0, wake_at=500.0, release=True)
    await store.set_run_state(c2.run.id, c2.run.epoch, "DEAD_LETTER", 101.0,
                              dead_letter=DeadLetter(c2.run.id, "wf", "1", "boom", {}, 101.0, 0), release=True)
    n = await store.fleet_counts(102.0)
    assert (n.pending, n.waiting, n.running, n.dead_letter, n.reviews) == (1, 1, 1, 1, 0)
    later = await store.fleet_counts(600.0)  # the wait is due and c0's lease expired: both claimable
    assert (later.pending, later.waiting, later.running) == (3, 0, 0)


async def test_run_orgs_lists_each_org_once(store) -> None:  # type: ignore[no-untyped-def]
    assert await store.run_orgs() == []
    for i, org in enumerate(("globex", "acme", "acme", "")):
        await store.create_run(_run(f"r{i}", org=org))
    assert await store.run_orgs() == ["", "acme", "globex"]


async def test_run_events_get_gapless_offsets_skip_known_keys_and_are_fenced(store) -> None:  # type: ignore[no-untyped-def]
    await store.create_run(_run("r1"))
    [c] = await store.claim_runs("w1", ["wf@1"], 101.0, 10, 1)
    ev = [RunEvent(f"t0.1.{i}", "llm.delta", {"text": str(i)}, 101.0) for i in range(3)]
    assert await store.append_events("r1", c.run.epoch, ev[:2]) == [1, 2]
    # a re-executed step writes its first events again: they are skipped, the new one continues the offsets
    assert await store.append_events("r1", c.run.epoch, ev) == [3]
    assert await store.append_events("r1", c.run.epoch, [RunEvent("e1", "note", [1, "x"], 102.0)]) == [4]
    got = await store.read_events("r1")
    assert [(e.offset, e.key, e.data) for e in got] == [
        (1, "t0.1.0", {"text": "0"}), (2, "t0.1.1", {"text": "1"}), (3, "t0.1.2", {"text": "2"}), (4, "e1", [1, "x"])]
    assert [e.offset for e in await store.read_events("r1", after=2, limit=1)] == [3]
    assert [e.key for e in await store.read_events("r1", key_prefix="t0.1.")] == ["t0.1.0", "t0.1.1", "t0.1.2"]
    assert await store.read_events("other") == []
    [takeover] = await store.claim_runs("w2", ["wf@1"], 200.0, 10, 1)
    with pytest.raises(LeaseLost):  # the worker that lost the run cannot write to its stream
        await store.append_events("r1", c.run.epoch, [RunEvent("e9", "note", None, 201.0)])
    assert await store.append_events("r1", takeover.run.epoch, [RunEvent("e9", "note", None, 201.0)]) == [5]
