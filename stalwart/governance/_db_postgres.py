"""Governance SQL for the PostgreSQL store.

Appends are plain INSERTs of the body; the ``stalwart_audit_chain`` trigger (migration 0002)
assigns ``seq``, ``prev_hash`` and ``hash`` from the one-row ``audit_head`` table, whose row lock
is held until the transaction commits. That lock is the total order of the chain across all
workers; its cost is that chain appends commit one at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg

from stalwart.errors import StoreError, StoreUnavailable
from stalwart.governance._chain import GENESIS
from stalwart.governance._checkpoint import Checkpoint
from stalwart.governance._db import TABLES, Where
from stalwart.governance._where import check_table, where_sql

__all__ = ["CHAIN_INSERT", "PostgresGovDb"]

from stalwart.store._audit_sql import AUDIT_INSERT_POSTGRES as CHAIN_INSERT  # noqa: E402
_CP_COLS = "tree_size, head_hash, root_hash, signed_at, key_id, signature, frontier, log_id"

_VACUUMED = (
    "runs", "journal", "signals", "outbox", "run_events", "dead_letters", "reviews", "kv", "memory_items", "artifacts"
)
"""Tables a subject's erasure overwrites or deletes from: vacuumed so dead tuples drop the old bytes."""

_PAYLOAD_SCRUB = (
    (
        (
            "UPDATE runs SET input=%s, output=CASE WHEN output IS NULL THEN NULL ELSE %s END,"
            " error=CASE WHEN error IS NULL THEN NULL ELSE %s END WHERE id = ANY(%s)"
        ),
        3,
    ),
    (
        (
            "UPDATE journal SET result=CASE WHEN result IS NULL THEN NULL ELSE %s END,"
            " error=CASE WHEN error IS NULL THEN NULL ELSE %s END, meta=NULL WHERE run_id = ANY(%s)"
        ),
        2,
    ),
    ("UPDATE signals SET payload=CASE WHEN payload IS NULL THEN NULL ELSE %s END WHERE run_id = ANY(%s)", 1),
    ("UPDATE outbox SET payload=%s WHERE run_id = ANY(%s)", 1),
    ("UPDATE run_events SET data=%s WHERE run_id = ANY(%s)", 1),
    ("UPDATE dead_letters SET error=CASE WHEN error IS NULL THEN NULL ELSE %s END WHERE run_id = ANY(%s)", 1),
    ("UPDATE reviews SET proposed_action=%s, args=NULL WHERE run_id = ANY(%s)", 1),
)


class PostgresGovDb:
    dialect = "postgres"

    def __init__(self, store: Any) -> None:
        self.store = store

    async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            async with self.store._pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall() if cur.description else []
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.store.safe_url} is unavailable: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"governance query failed on {self.store.safe_url}: {exc}") from exc

    # -- the audit chain -----------------------------------------------------------------------
    async def append(self, bodies: Sequence[str]) -> tuple[int, bytes]:
        rows = await self._q(
            f"WITH a AS ({CHAIN_INSERT} RETURNING seq, hash) SELECT seq, hash FROM a ORDER BY seq DESC LIMIT 1",
            (list(bodies),),
        )
        return int(rows[0][0]) + 1, bytes(rows[0][1])

    async def head(self) -> tuple[int, bytes]:
        rows = await self._q("SELECT seq, hash FROM audit_head WHERE id = 1")
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else (0, GENESIS)

    async def start(self) -> tuple[int, bytes]:
        rows = await self._q("SELECT upto_seq, anchor_hash FROM audit_purges ORDER BY upto_seq DESC LIMIT 1")
        return (int(rows[0][0]) + 1, bytes(rows[0][1])) if rows else (0, GENESIS)

    async def scan(self, start: int, chunk: int) -> AsyncIterator[list[tuple[int, str, bytes, bytes]]]:
        while True:
            rows = await self._q(
                "SELECT seq, body, prev_hash, hash FROM audit_log WHERE seq >= %s ORDER BY seq LIMIT %s",
                (start, chunk),
            )
            if not rows:
                return
            yield rows
            start = rows[-1][0] + 1

    async def entry_hashes(self, start: int, end: int) -> list[bytes]:
        rows = await self._q(
            "SELECT hash FROM audit_log WHERE seq >= %s AND seq < %s ORDER BY seq", (start, end)
        )
        return [bytes(r[0]) for r in rows]

    async def find_event(self, event_id: str) -> tuple[int, str, bytes] | None:
        rows = await self._q(
            "SELECT seq, body, hash FROM audit_log WHERE event_id = %s ORDER BY seq LIMIT 1", (event_id,)
        )
        return (int(rows[0][0]), rows[0][1], bytes(rows[0][2])) if rows else None

    async def bodies(
        self, *, run_ids: Sequence[str] = (), user_id: str | None = None, limit: int = 100_000
    ) -> list[tuple[int, str]]:
        if not run_ids and user_id is None:
            return []
        rows = await self._q(
            "SELECT seq, body FROM audit_log WHERE run_id = ANY(%s) OR user_id = %s ORDER BY seq LIMIT %s",
            (list(run_ids), user_id, limit),
        )
        return [(int(s), b) for s, b in rows]

    async def events_by_type(self, event_types: Sequence[str], limit: int = 10_000) -> list[tuple[int, str]]:
        rows = await self._q(
            "SELECT seq, body FROM audit_log WHERE event_type = ANY(%s) ORDER BY seq LIMIT %s",
            (list(event_types), limit),
        )
        return [(int(s), b) for s, b in rows]

    async def event_counts(self) -> dict[str, int]:
        return {
            t: int(n)
            for t, n in await self._q("SELECT event_type, count(*) FROM audit_log GROUP BY event_type")
        }

    async def purge(self, upto_seq: int, anchor_hash: bytes, now: float, reason: str) -> int:
        async with self.store._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO audit_purges (upto_seq, anchor_hash, purged_at, reason) VALUES (%s,%s,%s,%s)",
                (upto_seq, anchor_hash, now, reason),
            )
            cur = await conn.execute("DELETE FROM audit_log WHERE seq <= %s", (upto_seq,))
            return cur.rowcount

    async def log_id(self) -> str:
        rows = await self._q("SELECT log_id FROM audit_identity WHERE id = 1")
        if not rows:
            raise StoreError(f"the audit log of {self.store.safe_url} has no identity (migration 0005 missing)")
        return str(rows[0][0])

    async def add_checkpoint(self, cp: Checkpoint) -> None:
        await self._q(
            f"INSERT INTO audit_checkpoints ({_CP_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            (cp.tree_size, cp.head_hash, cp.root_hash, cp.signed_at, cp.key_id, cp.signature, cp.frontier,
             cp.log_id),
        )

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._q(f"SELECT {_CP_COLS} FROM audit_checkpoints ORDER BY tree_size")
        return [
            Checkpoint(int(r[0]), bytes(r[1]), bytes(r[2]), float(r[3]), r[4], bytes(r[5]), bytes(r[6]), str(r[7]))
            for r in rows
        ]

    # -- row-shaped state ----------------------------------------------------------------------
    async def insert(self, table: str, row: dict[str, Any], *, ignore_conflict: bool = False) -> bool:
        check_table(table, TABLES)
        sql = f"INSERT INTO {table} ({','.join(row)}) VALUES ({','.join(['%s'] * len(row))})"
        if ignore_conflict:
            sql += " ON CONFLICT DO NOTHING"
        sql += " RETURNING 1"
        return bool(await self._q(sql, tuple(row.values())))

    async def select(
        self, table: str, where: Where, *, order_by: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        check_table(table, TABLES)
        clause, params = where_sql(where, "%s")
        sql = f"SELECT * FROM {table}{clause}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        async with self.store._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    async def update(self, table: str, where: Where, values: dict[str, Any]) -> int:
        check_table(table, TABLES)
        clause, params = where_sql(where, "%s")
        sets = ",".join(f"{c}=%s" for c in values)
        async with self.store._pool.connection() as conn:
            cur = await conn.execute(f"UPDATE {table} SET {sets}{clause}", (*values.values(), *params))
            return cur.rowcount

    # -- compliance ----------------------------------------------------------------------------
    async def subject_runs(self, subject: str) -> list[dict[str, Any]]:
        async with self.store._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, workflow, version, org, user_id, status, created_at FROM runs WHERE user_id = %s"
                " OR (meta::jsonb ->> 'subject') = %s ORDER BY created_at",
                (subject, subject),
            )
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    async def run_payloads(self, run_ids: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rid in run_ids:
            run = await self._q("SELECT input, output, error FROM runs WHERE id=%s", (rid,))
            steps = await self._q(
                "SELECT seq, kind, name, status, result, error FROM journal WHERE run_id=%s ORDER BY seq",
                (rid,),
            )
            events = await self._q(
                "SELECT ofs, kind, data, created_at FROM run_events WHERE run_id=%s ORDER BY ofs", (rid,)
            )
            out[rid] = {"run": run[0] if run else None, "steps": steps, "events": events}
        return out

    async def scrub_runs(self, run_ids: Sequence[str], marker: str) -> int:
        if not run_ids:
            return 0
        n = 0
        async with self.store._pool.connection() as conn, conn.transaction():
            for sql, k in _PAYLOAD_SCRUB:
                cur = await conn.execute(sql, (*([marker] * k), list(run_ids)))
                n += max(cur.rowcount, 0)
        return n

    async def compact(self) -> None:
        # Dead tuples keep old bytes until VACUUM reclaims the space; VACUUM cannot run in a transaction.
        async with self.store._pool.connection() as conn:
            for table in _VACUUMED:
                await conn.execute(f"VACUUM {table}")

    async def table_counts(self) -> dict[str, int]:
        out = {}
        for t in ("audit_log", "audit_checkpoints", "reviews", "policy_versions", "runs"):
            out[t] = int((await self._q(f"SELECT count(*) FROM {t}"))[0][0])
        return out
