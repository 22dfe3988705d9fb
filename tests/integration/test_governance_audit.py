"""The audit log against the real databases: tamper detection, append-only, step transactions."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import psycopg
import pytest

from stalwart.errors import StoreError
from stalwart.governance import (
    GENESIS,
    AuditEvent,
    AuditLog,
    chain_hash,
    chain_insert_sql,
    verify_chain,
)
from stalwart.store import open_store

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def store(db_url):  # type: ignore[no-untyped-def]
    s = await open_store(db_url, migrate=True)
    yield s
    await s.close()


class Attacker:
    """Someone with owner access to the database: triggers off, rows rewritten at will."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _run(self, fn: Any) -> Any:
        if self.store.kind == "sqlite":
            conn = sqlite3.connect(self.store.path, isolation_level=None)
            try:
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
                    conn.execute(f"DROP TRIGGER {name}")
                return fn(conn, "?")
            finally:
                conn.close()
        with psycopg.connect(self.store.url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            return fn(conn, "%s")

    def rows(self) -> list[tuple[int, str, bytes, bytes]]:
        return self._run(
            lambda c, m: [
                (int(s), b, bytes(p), bytes(h))
                for s, b, p, h in c.execute(
                    "SELECT seq, body, prev_hash, hash FROM audit_log ORDER BY seq"
                ).fetchall()
            ]
        )

    def rewrite(self, rows: list[tuple[int, str, bytes, bytes]]) -> None:
        def go(c: Any, m: str) -> None:
            c.execute("DELETE FROM audit_log")
            for r in rows:
                c.execute(f"INSERT INTO audit_log (seq, body, prev_hash, hash) VALUES ({m},{m},{m},{m})", r)

        self._run(go)

    def sql(self, sql: str) -> None:
        self._run(lambda c, m: c.execute(sql))


def rechain(bodies: list[str]) -> list[tuple[int, str, bytes, bytes]]:
    out, prev = [], GENESIS
    for i, b in enumerate(bodies):
        h = chain_hash(prev, i, b)
        out.append((i, b, prev, h))
        prev = h
    return out


async def filled(store: Any, n: int = 40, every: int = 10, **kw: Any) -> AuditLog:
    audit = AuditLog(store, checkpoint_every=every, clock=Clock(), **kw)
    for i in range(n):
        await audit.append(
            [
                AuditEvent(
                    "step.completed", action="step", run_id=f"run-{i % 4}", org_id="acme", details={"i": i}
                )
            ]
        )
    return audit


async def test_intact_log_verifies(store) -> None:  # type: ignore[no-untyped-def]
    audit = await filled(store)
    report = await verify_chain(store, await audit.public_key())
    assert report.ok and report.checked == 40 and report.checkpoints == 4, report
    assert (await verify_chain(store, await audit.public_key(), merkle=True)).ok


async def test_one_changed_byte_is_named(store) -> None:  # type: ignore[no-untyped-def]
    audit = await filled(store)
    att = Attacker(store)
    rows = att.rows()
    seq, body, prev, h = rows[17]
    rows[17] = (seq, body.replace('"i":17', '"i":71'), prev, h)
    att.rewrite(rows)
    report = await verify_chain(store, await audit.public_key())
    assert not report.ok
    assert report.first_bad_seq == 17
    assert report.first_bad_event_id == json.loads(body)["event_id"]
    assert "changed" in report.reason


async def test_deleted_last_entry_is_a_truncated_tail(store) -> None:  # type: ignore[no-untyped-def]
    audit = await filled(store)
    Attacker(store).sql("DELETE FROM audit_log WHERE seq = 39")
    report = await verify_chain(store, await audit.public_key())
    assert not report.ok and report.first_bad_seq == 39 and "truncated" in report.reason


async def test_deleted_middle_entry_is_found(store) -> None:  # type: ignore[no-untyped-def]
    audit = await filled(store)
    Attacker(store).sql("DELETE FROM audit_log WHERE seq = 12")
    report = await verify_chain(store, await audit.public_key())
    assert not report.ok and report.first_bad_seq == 12 and "missing" in report.reason


async def test_inserted_entry_is_found(store) -> None:  # type: ignore[no-untyped-def]
    audit = await filled(store)
    att = Attacker(store)
    rows = att.rows()
    forged = AuditEvent("review.decided", actor="user:mallory", event_id="forged", timestamp=1.0).body()
    naive = [*rows[:5], (5, forged, rows[4][3], b"\0" * 32), *[(s + 1, b, p, h) for s, b, p, h in rows[5:]]]
    att.rewrite(naive)
    report = await verify_chain(store, await audit.public_key())
    assert not report.ok and report.first_bad_seq == 5 and report.first_bad_event_id == "forged"
    # Rehashing the whole chain does not help without the signing key: the checkpoints disagree.
    att.rewrite(rechain([*[r[1] for r in rows[:5]], forged, *[r[1] for r in rows[5:]]]))
    report = await verify_chain(store, await audit.public_key())
    assert not report.ok and "rewritten" in report.reason and report.first_bad_seq == 9


async def test_reordered_entries_are_found(store) -> None:  # type: ignore[no-untyped-def]
    audit = await filled(store)
    att = Attacker(store)
    rows = att.rows()
    rows[21], rows[22] = (
        (21, rows[22][1], rows[21][2], rows[21][3]),
        (22, rows[21][1], rows[22][2], rows[22][3]),
    )
    att.rewrite(rows)
    report = await verify_chain(store, await audit.public_key())
    assert not report.ok and report.first_bad_seq == 21


async def test_wrong_key_and_forged_checkpoints_fail(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    audit = await filled(store, checkpoint_dir=tmp_path / "anchor")
    other = Ed25519PrivateKey.generate().public_key()
    report = await verify_chain(store, other)
    assert not report.ok and "signature" in report.reason
    # The anchored copies outlive the database's: deleting the tail and its checkpoints is still found.
    Attacker(store).sql("DELETE FROM audit_checkpoints WHERE tree_size >= 30")
    Attacker(store).sql("DELETE FROM audit_log WHERE seq >= 25")
    # Without the anchor only PostgreSQL's chain head still remembers the lost tail.
    assert (await verify_chain(store, await audit.public_key())).ok is (store.kind == "sqlite")
    report = await verify_chain(store, await audit.public_key(), checkpoint_dir=tmp_path / "anchor")
    assert not report.ok and "truncated" in report.reason and report.first_bad_seq == 25


async def test_append_only_is_enforced_by_the_database(store) -> None:  # type: ignore[no-untyped-def]
    await (await filled(store, n=3)).checkpoint()
    statements = [
        "UPDATE audit_log SET body = body WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 2",
        "DELETE FROM audit_checkpoints",
    ]
    if store.kind == "sqlite":
        for sql in statements:
            with pytest.raises(sqlite3.DatabaseError, match="append-only"), store._tx() as cur:
                cur.execute(sql)
        with pytest.raises(sqlite3.DatabaseError, match="chain head"), store._tx() as cur:
            cur.execute(
                "INSERT INTO audit_log (seq, body, prev_hash, hash) VALUES (3, '{}', zeroblob(32),"
                " zeroblob(32))"
            )
    else:
        for sql in [*statements, "TRUNCATE audit_log"]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                async with store._pool.connection() as conn:
                    await conn.execute(sql)
    assert (await verify_chain(store)).ok


async def test_entries_join_the_callers_transaction(store) -> None:  # type: ignore[no-untyped-def]
    """What the engine's commit_step does: the audit rows commit or roll back with the step."""
    audit = AuditLog(store, checkpoint_every=1000, clock=Clock())
    ok = audit.prepare([AuditEvent("step.completed", run_id="r1", details={"seq": 0})])
    lost = audit.prepare([AuditEvent("step.completed", run_id="r1", details={"seq": 1})])
    sql = chain_insert_sql(store.kind)
    if store.kind == "sqlite":
        with store._tx() as cur:
            cur.executemany(sql, ok.params("sqlite"))
        with pytest.raises(RuntimeError), store._tx() as cur:
            cur.executemany(sql, lost.params("sqlite"))
            raise RuntimeError("lease lost")
    else:
        async with store._pool.connection() as conn:
            # The lead's single-statement commit: the audit CTE is gated on the lease check (r).
            gated = (
                "WITH r AS (SELECT 1 AS ok WHERE %s), a AS (INSERT INTO audit_log (body) SELECT b FROM"
                " unnest(%s::text[]) WITH ORDINALITY AS t(b, i) WHERE EXISTS (SELECT 1 FROM r) ORDER BY i"
                " RETURNING 1) SELECT (SELECT count(*) FROM a)"
            )
            assert (await (await conn.execute(gated, (True, list(ok.bodies)))).fetchone())[0] == 1
            assert (await (await conn.execute(gated, (False, list(lost.bodies)))).fetchone())[0] == 0
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute(sql, (list(lost.bodies),))
                    raise RuntimeError("lease lost")
    events = await audit.events(run_ids=["r1"])
    assert [e.details["seq"] for e in events] == [0]
    await audit.checkpoint()
    assert (await verify_chain(store)).ok


async def test_concurrent_appenders_keep_one_order(store) -> None:  # type: ignore[no-untyped-def]
    audit = AuditLog(store, checkpoint_every=50)

    async def worker(w: int) -> None:
        for i in range(25):
            await audit.append(
                [
                    AuditEvent("step.completed", run_id=f"w{w}", details={"i": i}),
                    AuditEvent("tool.called", run_id=f"w{w}", details={"i": i}),
                ]
            )

    await asyncio.gather(*(worker(w) for w in range(8)))
    await audit.checkpoint()
    report = await verify_chain(store, await audit.public_key(), merkle=True)
    assert report.ok and report.checked == 400, report


async def test_inclusion_and_consistency_proofs(store) -> None:  # type: ignore[no-untyped-def]
    audit = await filled(store, n=37, every=8)
    key = await audit.public_key()
    target = (await audit.events(run_ids=["run-2"]))[3]
    proof = await audit.prove(target.event_id)
    assert proof.verify(key) and proof.index == 14 and proof.checkpoint.tree_size == 37
    assert json.loads(proof.body)["event_id"] == target.event_id
    bad = type(proof)(proof.event_id, proof.index + 1, proof.entry_hash, proof.path, proof.checkpoint)
    assert not bad.verify(key)
    cons = await audit.consistency(16, 37)
    assert cons.verify(key)
    assert not type(cons)(cons.old, cons.new, cons.path[:-1]).verify(key)
    with pytest.raises(KeyError):
        await audit.prove("no-such-event")


async def test_retention_purge_keeps_the_chain_verifiable(store) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    audit = AuditLog(store, checkpoint_every=5, clock=clock)
    for i in range(10):
        await audit.append(
            [AuditEvent("step.completed", org_id="short" if i < 6 else "long", details={"i": i})]
        )
    clock.t += 40 * 86_400
    deleted = await audit.purge_expired(operator="dpo", retention_days={"short": 30, "long": 365})
    assert deleted == 6
    report = await verify_chain(store, await audit.public_key())
    assert report.ok and report.checked == 5, report  # 4 kept + the audited purge
    purged = [e for e in await audit.events(user_id="") if e.event_type == "audit.purged"]
    assert purged and purged[0].details["upto_seq"] == 5
    with pytest.raises((StoreError, sqlite3.DatabaseError, psycopg.Error)):
        if store.kind == "sqlite":
            with store._tx() as cur:
                cur.execute("DELETE FROM audit_log WHERE seq = 7")
        else:
            async with store._pool.connection() as conn:
                await conn.execute("DELETE FROM audit_log WHERE seq = 7")
