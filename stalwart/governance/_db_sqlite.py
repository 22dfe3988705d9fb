"""Governance SQL for the embedded SQLite store.

Writes take ``BEGIN IMMEDIATE`` through ``store._tx()``, which serialises every writer of the file
(processes included), so reading the chain head and appending after it is race-free. The chain
hash is computed by ``stalwart_chain_hash``, a Python function registered on the connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

from stalwart.errors import StoreError
from stalwart.governance._chain import GENESIS, chain_hash
from stalwart.governance._checkpoint import Checkpoint
from stalwart.governance._db import TABLES, Where
from stalwart.governance._where import check_table, where_sql

__all__ = ["CHAIN_INSERT", "SqliteGovDb", "register_functions"]

from stalwart.store._audit_sql import AUDIT_INSERT_SQLITE as CHAIN_INSERT  # noqa: E402
_HEAD = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_CP_COLS = "tree_size, head_hash, root_hash, signed_at, key_id, signature, frontier, log_id"

_PAYLOAD_SCRUB = (
    (
        (
            "UPDATE runs SET input=?, output=CASE WHEN output IS NULL THEN NULL ELSE ? END,"
            " error=CASE WHEN error IS NULL THEN NULL ELSE ? END WHERE id IN ({ids})"
        ),
        3,
    ),
    (
        (
            "UPDATE journal SET result=CASE WHEN result IS NULL THEN NULL ELSE ? END,"
            " error=CASE WHEN error IS NULL THEN NULL ELSE ? END, meta=NULL WHERE run_id IN ({ids})"
        ),
        2,
    ),
    ("UPDATE signals SET payload=CASE WHEN payload IS NULL THEN NULL ELSE ? END WHERE run_id IN ({ids})", 1),
    ("UPDATE outbox SET payload=? WHERE run_id IN ({ids})", 1),
    ("UPDATE run_events SET data=? WHERE run_id IN ({ids})", 1),
    ("UPDATE dead_letters SET error=CASE WHEN error IS NULL THEN NULL ELSE ? END WHERE run_id IN ({ids})", 1),
    ("UPDATE reviews SET proposed_action=?, args=NULL WHERE run_id IN ({ids})", 1),
)


def _udf(prev: bytes, seq: int, body: str) -> bytes:
    return chain_hash(bytes(prev), int(seq), body)


def register_functions(conn: sqlite3.Connection) -> None:
    """Register ``stalwart_chain_hash`` on a connection that appends audit entries."""
    conn.create_function("stalwart_chain_hash", 3, _udf, deterministic=True)


class SqliteGovDb:
    dialect = "sqlite"

    def __init__(self, store: Any) -> None:
        self.store = store
        register_functions(store._db)

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.store._lock:
            try:
                return self.store._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"governance query failed on {self.store.safe_url}: {exc}") from exc

    # -- the audit chain -----------------------------------------------------------------------
    async def append(self, bodies: Sequence[str]) -> tuple[int, bytes]:
        try:
            with self.store._tx() as cur:
                cur.executemany(CHAIN_INSERT, [(b,) for b in bodies])
                row = cur.execute(_HEAD).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"audit append failed on {self.store.safe_url}: {exc}") from exc
        return int(row[0]) + 1, bytes(row[1])

    async def head(self) -> tuple[int, bytes]:
        rows = self._q(_HEAD)
        return (int(rows[0][0]) + 1, bytes(rows[0][1])) if rows else (0, GENESIS)

    async def start(self) -> tuple[int, bytes]:
        rows = self._q("SELECT upto_seq, anchor_hash FROM audit_purges ORDER BY upto_seq DESC LIMIT 1")
        return (int(rows[0][0]) + 1, bytes(rows[0][1])) if rows else (0, GENESIS)

    async def scan(self, start: int, chunk: int) -> AsyncIterator[list[tuple[int, str, bytes, bytes]]]:
        while True:
            rows = self._q(
                "SELECT seq, body, prev_hash, hash FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?",
                (start, chunk),
            )
            if not rows:
                return
            yield rows
            start = rows[-1][0] + 1

    async def entry_hashes(self, start: int, end: int) -> list[bytes]:
        return [
            bytes(r[0])
            for r in self._q(
                "SELECT hash FROM audit_log WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
            )
        ]

    async def find_event(self, event_id: str) -> tuple[int, str, bytes] | None:
        rows = self._q(
            "SELECT seq, body, hash FROM audit_log WHERE event_id = ? ORDER BY seq LIMIT 1", (event_id,)
        )
        return (int(rows[0][0]), rows[0][1], bytes(rows[0][2])) if rows else None

    async def bodies(
        self, *, run_ids: Sequence[str] = (), user_id: str | None = None, limit: int = 100_000
    ) -> list[tuple[int, str]]:
        conds: list[str] = []
        params: list[Any] = []
        if run_ids:
            conds.append(f"run_id IN ({','.join('?' * len(run_ids))})")
            params.extend(run_ids)
        if user_id is not None:
            conds.append("user_id = ?")
            params.append(user_id)
        if not conds:
            return []
        return [
            (int(s), b)
            for s, b in self._q(
                f"SELECT seq, body FROM audit_log WHERE {' OR '.join(conds)} ORDER BY seq LIMIT ?",
                (*params, limit),
            )
        ]

    async def events_by_type(self, event_types: Sequence[str], limit: int = 10_000) -> list[tuple[int, str]]:
        marks = ",".join("?" * len(event_types))
        return [
            (int(s), b)
            for s, b in self._q(
                f"SELECT seq, body FROM audit_log WHERE event_type IN ({marks}) ORDER BY seq LIMIT ?",
                (*event_types, limit),
            )
        ]

    async def event_counts(self) -> dict[str, int]:
        return {
            t: int(n) for t, n in self._q("SELECT event_type, count(*) FROM audit_log GROUP BY event_type")
        }

    async def purge(self, upto_seq: int, anchor_hash: bytes, now: float, reason: str) -> int:
        with self.store._tx() as cur:
            cur.execute(
                "INSERT INTO audit_purges (upto_seq, anchor_hash, purged_at, reason) VALUES (?,?,?,?)",
                (upto_seq, anchor_hash, now, reason),
            )
            cur.execute("DELETE FROM audit_log WHERE seq <= ?", (upto_seq,))
            return cur.rowcount

    async def log_id(self) -> str:
        rows = self._q("SELECT log_id FROM audit_identity WHERE id = 1")
        if not rows:
            raise StoreError(f"the audit log of {self.store.safe_url} has no identity (migration 0005 missing)")
        return str(rows[0][0])

    async def add_checkpoint(self, cp: Checkpoint) -> None:
        with self.store._tx() as cur:
            cur.execute(
                f"INSERT INTO audit_checkpoints ({_CP_COLS}) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    cp.tree_size,
                    cp.head_hash,
                    cp.root_hash,
                    cp.signed_at,
                    cp.key_id,
                    cp.signature,
                    cp.frontier,
                    cp.log_id,
                ),
            )

    async def checkpoints(self) -> list[Checkpoint]:
        return [
            Checkpoint(int(r[0]), bytes(r[1]), bytes(r[2]), float(r[3]), r[4], bytes(r[5]), bytes(r[6]), str(r[7]))
            for r in self._q(f"SELECT {_CP_COLS} FROM audit_checkpoints ORDER BY tree_size")
        ]

    # -- row-shaped state ----------------------------------------------------------------------
    async def insert(self, table: str, row: dict[str, Any], *, ignore_conflict: bool = False) -> bool:
        check_table(table, TABLES)
        cols = ",".join(row)
        sql = f"INSERT INTO {table} ({cols}) VALUES ({','.join('?' * len(row))})"
        if ignore_conflict:
            sql += " ON CONFLICT DO NOTHING"
        with self.store._tx() as cur:
            cur.execute(sql, tuple(row.values()))
            return cur.rowcount == 1

    async def select(
        self, table: str, where: Where, *, order_by: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        check_table(table, TABLES)
        clause, params = where_sql(where, "?")
        sql = f"SELECT * FROM {table}{clause}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.store._lock:
            cur = self.store._db.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    async def update(self, table: str, where: Where, values: dict[str, Any]) -> int:
        check_table(table, TABLES)
        clause, params = where_sql(where, "?")
        sets = ",".join(f"{c}=?" for c in values)
        with self.store._tx() as cur:
            cur.execute(f"UPDATE {table} SET {sets}{clause}", (*values.values(), *params))
            return cur.rowcount

    # -- compliance ----------------------------------------------------------------------------
    async def subject_runs(self, subject: str) -> list[dict[str, Any]]:
        with self.store._lock:
            cur = self.store._db.execute(
                "SELECT id, workflow, version, org, user_id, status, created_at FROM runs WHERE user_id = ?"
                " OR json_extract(meta, '$.subject') = ? ORDER BY created_at",
                (subject, subject),
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    async def run_payloads(self, run_ids: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rid in run_ids:
            run = self._q("SELECT input, output, error FROM runs WHERE id=?", (rid,))
            steps = self._q(
                "SELECT seq, kind, name, status, result, error FROM journal WHERE run_id=? ORDER BY seq",
                (rid,),
            )
            events = self._q("SELECT ofs, kind, data, created_at FROM run_events WHERE run_id=? ORDER BY ofs", (rid,))
            out[rid] = {"run": run[0] if run else None, "steps": steps, "events": events}
        return out

    async def scrub_runs(self, run_ids: Sequence[str], marker: str) -> int:
        if not run_ids:
            return 0
        ids = ",".join("?" * len(run_ids))
        n = 0
        with self.store._lock:
            self.store._db.execute("PRAGMA secure_delete=ON")
        with self.store._tx() as cur:
            for sql, k in _PAYLOAD_SCRUB:
                cur.execute(sql.format(ids=ids), (*([marker] * k), *run_ids))
                n += max(cur.rowcount, 0)
        return n

    async def compact(self) -> None:
        if self.store.path == ":memory:":
            return
        with self.store._lock:
            self.store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.store._db.execute("VACUUM")
            self.store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def table_counts(self) -> dict[str, int]:
        out = {}
        for t in ("audit_log", "audit_checkpoints", "reviews", "policy_versions", "runs"):
            out[t] = int(self._q(f"SELECT count(*) FROM {t}")[0][0])
        return out
