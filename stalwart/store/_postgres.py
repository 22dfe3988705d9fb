"""The scale-out store: PostgreSQL through psycopg 3 and a connection pool.

A step commit is one statement (data-modifying CTEs), so it costs one round trip and one WAL
flush, the same as the floor of a bare INSERT. Claims use ``FOR UPDATE SKIP LOCKED``; idle
workers sleep on ``LISTEN stalwart_runs`` instead of polling hard.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from stalwart.errors import LeaseLost, RunNotFound, StoreError, StoreUnavailable
from stalwart.store._audit_sql import AUDIT_INSERT_POSTGRES
from stalwart.store._lease import FLEET_COUNTS_SQL, FleetCounts, LeaderLease, decide_lease
from stalwart.store._ledger import LEDGER_NS, LedgerDecide, LedgerRow
from stalwart.store._migrations import load_migrations
from stalwart.store._records import (
    Claim,
    DeadLetter,
    JournalEntry,
    NewRun,
    OutboxEvent,
    RunEvent,
    RunRecord,
    SignalRecord,
)
from stalwart.store._rows import (
    DLQ_COLUMNS,
    JOURNAL_COLUMNS,
    OUTBOX_COLUMNS,
    RUN_COLUMNS,
    TERMINAL,
    dlq_from_row,
    dumps,
    journal_from_row,
    journal_params,
    outbox_from_row,
    outbox_params,
    run_from_row,
)

__all__ = ["PostgresStore"]

_log = logging.getLogger("stalwart.store")
T = TypeVar("T")

_J = (
    "%s::text, %s::bigint, %s::text, %s::text, %s::text, %s::text, %s::text, %s::int, %s::double precision,"
    " %s::double precision, %s::double precision, %s::text"
)
_O = "%s::text, %s::text, %s::text, %s::text, %s::double precision"
_JOURNAL_CONFLICT = (
    "ON CONFLICT (run_id, seq) DO UPDATE SET kind=excluded.kind, name=excluded.name, status=excluded.status,"
    " result=excluded.result, error=excluded.error, attempts=excluded.attempts, started_at=excluded.started_at,"
    " finished_at=excluded.finished_at, wake_at=excluded.wake_at, meta=excluded.meta"
)


def _translate(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Map psycopg's exceptions to Stalwart's, once, at the boundary."""

    @functools.wraps(fn)
    async def wrapper(self: PostgresStore, *args: Any, **kwargs: Any) -> T:
        try:
            return await fn(self, *args, **kwargs)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.safe_url} is unavailable: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL query failed on {self.safe_url}: {exc}") from exc

    return wrapper


@functools.cache
def _commit_sql(n_events: int, with_signal: bool, with_audit: bool = False) -> str:
    parts = [
        "WITH r AS (UPDATE runs SET updated_at=%s, lease_expires_at=%s WHERE id=%s AND epoch=%s"
        " AND status='RUNNING' RETURNING id, cancel_requested)",
        f"j AS (INSERT INTO journal ({JOURNAL_COLUMNS}) SELECT {_J} FROM r {_JOURNAL_CONFLICT} RETURNING 1)",
    ]
    if with_signal:
        parts.append(
            "s AS (UPDATE signals SET consumed_seq=%s::bigint WHERE id=%s::bigint AND consumed_seq IS NULL"
            " AND EXISTS (SELECT 1 FROM r) RETURNING 1)"
        )
    for i in range(n_events):
        parts.append(
            f"o{i} AS (INSERT INTO outbox (event_id, type, run_id, payload, created_at) SELECT {_O} FROM r"
            " ON CONFLICT (event_id) DO NOTHING RETURNING 1)"
        )
    if with_audit:  # gated on r: a step that lost its lease commits no audit row either
        parts.append(
            "a AS (INSERT INTO audit_log (body) SELECT b FROM unnest(%s::text[]) WITH ORDINALITY AS t(b, i)"
            " WHERE EXISTS (SELECT 1 FROM r) ORDER BY i RETURNING 1)"
        )
    return ", ".join(parts) + (
        " SELECT count(*), bool_or(cancel_requested), EXISTS (SELECT 1 FROM flags WHERE name='kill_switch') FROM r"
    )


class PostgresStore:
    """:class:`~stalwart.store.Store` on PostgreSQL."""

    kind = "postgres"

    def __init__(self, url: str, *, safe_url: str, min_size: int = 1, max_size: int = 16) -> None:
        self.url = url
        self.safe_url = safe_url
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            open=False,
            name="stalwart",
        )
        self._wake = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=10)

    def ping_sync(self) -> None:
        with psycopg.connect(self.url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        await self._pool.close()

    async def _fetch(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if cur.description else []

    @_translate
    async def migrate(self) -> list[str]:
        applied: list[str] = []
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(725814)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {r[0] for r in await cur.fetchall()}
            for m in load_migrations("postgres"):
                if m.version in done:
                    continue
                await conn.execute(m.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s,%s,%s)",
                    (m.version, m.name, time.time()),
                )
                applied.append(f"{m.version:04d}_{m.name}")
        return applied

    @_translate
    async def pending_migrations(self) -> list[str]:
        exists = await self._fetch("SELECT to_regclass('schema_migrations') IS NOT NULL")
        rows = await self._fetch("SELECT version FROM schema_migrations") if exists[0][0] else []
        done = {r[0] for r in rows}
        return [f"{m.version:04d}_{m.name}" for m in load_migrations("postgres") if m.version not in done]

    # -- runs --------------------------------------------------------------------------------
    @_translate
    async def create_run(
        self, run: NewRun, *, refuse_if_flag: str | None = None, audit_bodies: Sequence[str] = ()
    ) -> tuple[str | None, bool]:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "WITH ins AS (INSERT INTO runs (id, workflow, version, wf_key, status, input, org, user_id,"
                " idempotency_key, created_at, updated_at, trace_id, parent_id, meta)"
                " SELECT %s,%s,%s,%s,'PENDING',%s,%s,%s,%s,%s::double precision,%s::double precision,%s,%s,%s"
                " WHERE NOT EXISTS (SELECT 1 FROM flags WHERE name=%s::text)"
                " ON CONFLICT (org, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id),"
                " ev AS (INSERT INTO outbox (event_id, type, run_id, payload, created_at)"
                " SELECT id || ':created', 'run.created', id, %s, %s FROM ins)"
                " SELECT id, true FROM ins UNION ALL"
                " SELECT id, false FROM runs WHERE org=%s AND idempotency_key=%s AND NOT EXISTS (SELECT 1 FROM ins)",
                (
                    run.id,
                    run.workflow,
                    run.version,
                    f"{run.workflow}@{run.version}",
                    run.input_json,
                    run.org,
                    run.user,
                    run.idempotency_key,
                    run.created_at,
                    run.created_at,
                    run.trace_id,
                    run.parent_id,
                    dumps(run.meta) or "{}",
                    refuse_if_flag,
                    dumps({"workflow": run.workflow, "version": run.version, "org": run.org}),
                    run.created_at,
                    run.org,
                    run.idempotency_key,
                ),
            )
            row = await cur.fetchone()
            if row is not None and row[1] and audit_bodies:
                await conn.execute(AUDIT_INSERT_POSTGRES, (list(audit_bodies),))
        if row is None:
            if refuse_if_flag is not None and await self._fetch("SELECT 1 FROM flags WHERE name=%s", (refuse_if_flag,)):
                return None, False
            # lost a race with a concurrent insert of the same key: read it back
            rows = await self._fetch(
                "SELECT id FROM runs WHERE org=%s AND idempotency_key=%s", (run.org, run.idempotency_key)
            )
            return rows[0][0], False
        return row[0], bool(row[1])

    @_translate
    async def fork_run(self, run: NewRun, source_id: str, from_seq: int, upto_seq: int) -> str:
        await self.create_run(run)
        await self._fetch(
            f"INSERT INTO journal ({JOURNAL_COLUMNS}) SELECT %s, seq - %s, kind, name, status, result, error,"
            " attempts, started_at, finished_at, wake_at, meta FROM journal"
            " WHERE run_id=%s AND seq>=%s AND seq<%s AND status='completed' AND kind<>'compensation'",
            (run.id, from_seq, source_id, from_seq, upto_seq),
        )
        return run.id

    @_translate
    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._fetch(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=%s", (run_id,))
        return run_from_row(rows[0]) if rows else None

    @_translate
    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        org: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        where, params = [], []
        for col, val in (("status", status), ("workflow", workflow), ("org", org)):
            if val is not None:
                where.append(f"{col}=%s")
                params.append(val)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, id DESC LIMIT %s",
            (*params, limit),
        )
        return [run_from_row(r) for r in rows]

    @_translate
    async def run_orgs(self) -> list[str]:
        return [r[0] or "" for r in await self._fetch("SELECT DISTINCT org FROM runs ORDER BY org", ())]

    @_translate
    async def claim_runs(
        self, worker_id: str, workflows: list[str], now: float, lease_s: float, limit: int
    ) -> list[Claim]:
        if not workflows or limit <= 0:
            return []
        cols = ", ".join(f"r.{c.strip()}" for c in RUN_COLUMNS.split(","))
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "WITH c AS (SELECT id FROM runs WHERE wf_key = ANY(%s) AND (status='PENDING'"
                " OR (status='WAITING' AND wake_at <= %s) OR (status='RUNNING' AND lease_expires_at < %s))"
                " ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE runs r SET status='RUNNING', owner=%s, epoch=r.epoch+1, lease_expires_at=%s,"
                f" updated_at=%s, wake_at=NULL FROM c WHERE r.id=c.id RETURNING {cols}",
                (workflows, now, now, limit, worker_id, now + lease_s, now),
            )
            runs = [run_from_row(r) for r in await cur.fetchall()]
            if not runs:
                return []
            ids = [r.id for r in runs]
            cur = await conn.execute(
                f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id = ANY(%s) ORDER BY run_id, seq", (ids,)
            )
            journals: dict[str, list[JournalEntry]] = {i: [] for i in ids}
            for r in await cur.fetchall():
                journals[r[0]].append(journal_from_row(r))
        runs.sort(key=lambda r: r.created_at)
        return [Claim(run, journals[run.id]) for run in runs]

    @_translate
    async def renew_leases(
        self, worker_id: str, held: list[tuple[str, int]], now: float, lease_s: float
    ) -> list[str]:
        if not held:
            return []
        ids = [h[0] for h in held]
        epochs = [h[1] for h in held]
        rows = await self._fetch(
            "UPDATE runs r SET lease_expires_at=%s FROM unnest(%s::text[], %s::bigint[]) AS h(id, epoch)"
            " WHERE r.id=h.id AND r.epoch=h.epoch AND r.status='RUNNING' RETURNING r.id",
            (now + lease_s, ids, epochs),
        )
        kept = {r[0] for r in rows}
        return [i for i in ids if i not in kept]

    @_translate
    async def commit_step(
        self,
        run_id: str,
        epoch: int,
        entry: JournalEntry,
        now: float,
        lease_s: float,
        *,
        consume_signal: int | None = None,
        events: list[OutboxEvent] | None = None,
        audit_bodies: Sequence[str] = (),
    ) -> tuple[bool, bool]:
        events = events or []
        params: list[Any] = [now, now + lease_s, run_id, epoch, *journal_params(entry)]
        if consume_signal is not None:
            params += [entry.seq, consume_signal]
        for ev in events:
            params += outbox_params(ev)
        if audit_bodies:
            params.append(list(audit_bodies))
        rows = await self._fetch(_commit_sql(len(events), consume_signal is not None, bool(audit_bodies)), params)
        if not rows or rows[0][0] != 1:
            raise LeaseLost(f"run {run_id}: lease lost (epoch {epoch} is no longer current)")
        return bool(rows[0][1]), bool(rows[0][2])

    @_translate
    async def set_run_state(
        self,
        run_id: str,
        epoch: int,
        status: str,
        now: float,
        *,
        output_json: str | None = None,
        error: dict[str, Any] | None = None,
        wake_at: float | None = None,
        phase: str | None = None,
        release: bool = False,
        dead_letter: DeadLetter | None = None,
        events: list[OutboxEvent] | None = None,
        meta_patch: dict[str, Any] | None = None,
        signal_name: str | Sequence[str] | None = None,
        audit_bodies: Sequence[str] = (),
        notify: tuple[str, str, str | None] | None = None,
    ) -> None:
        terminal = status in TERMINAL
        release = release or terminal
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE runs SET status=%s, updated_at=%s, output=COALESCE(%s, output), error=%s,"
                " wake_at=CASE WHEN %s::text='WAITING' AND (cancel_requested OR EXISTS (SELECT 1 FROM signals"
                " WHERE signals.run_id=runs.id AND signals.name = ANY(%s::text[]) AND consumed_seq IS NULL))"
                " THEN %s::double precision ELSE %s::double precision END,"
                " phase=COALESCE(%s, phase), finished_at=%s::double precision,"
                " owner=CASE WHEN %s THEN NULL ELSE owner END,"
                " lease_expires_at=CASE WHEN %s THEN NULL ELSE lease_expires_at END,"
                " meta=CASE WHEN %s::text IS NULL THEN meta ELSE (meta::jsonb || %s::jsonb)::text END"
                " WHERE id=%s AND epoch=%s",
                (
                    status,
                    now,
                    output_json,
                    dumps(error),
                    status,
                    [] if signal_name is None else ([signal_name] if isinstance(signal_name, str) else list(signal_name)),
                    now,
                    wake_at,
                    phase,
                    now if terminal else None,
                    release,
                    release,
                    dumps(meta_patch),
                    dumps(meta_patch),
                    run_id,
                    epoch,
                ),
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"run {run_id}: lease lost (epoch {epoch} is no longer current)")
            if dead_letter is not None:
                await conn.execute(
                    "INSERT INTO dead_letters (run_id, workflow, version, reason, error, created_at, retries)"
                    " VALUES (%s,%s,%s,%s,%s,%s,0) ON CONFLICT (run_id) DO UPDATE SET reason=excluded.reason,"
                    " error=excluded.error, created_at=excluded.created_at, resolved_at=NULL",
                    (
                        dead_letter.run_id,
                        dead_letter.workflow,
                        dead_letter.version,
                        dead_letter.reason,
                        dumps(dead_letter.error),
                        dead_letter.created_at,
                    ),
                )
            for ev in events or []:
                await conn.execute(
                    "INSERT INTO outbox (event_id, type, run_id, payload, created_at) VALUES (%s,%s,%s,%s,%s)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    outbox_params(ev),
                )
            if audit_bodies:
                await conn.execute(AUDIT_INSERT_POSTGRES, (list(audit_bodies),))
            if notify is not None:  # e.g. a child run telling its parent, atomically with its end
                target, name, payload = notify
                await conn.execute("INSERT INTO signals (run_id, name, payload, created_at) VALUES (%s,%s,%s,%s)",
                                   (target, name, payload, now))
                await conn.execute("UPDATE runs SET wake_at=%s WHERE id=%s AND status='WAITING'", (now, target))

    @_translate
    async def request_cancel(self, run_id: str, now: float) -> RunRecord:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE runs SET cancel_requested=true, updated_at=%s,"
                " wake_at=CASE WHEN status='WAITING' THEN %s ELSE wake_at END WHERE id=%s",
                (now, now, run_id),
            )
            if cur.rowcount != 1:
                raise RunNotFound(f"no run with id {run_id!r}")
            await conn.execute(
                "UPDATE runs SET status='CANCELLED', finished_at=%s, updated_at=%s WHERE id=%s AND status='PENDING'"
                " AND NOT EXISTS (SELECT 1 FROM journal WHERE run_id=%s)",
                (now, now, run_id, run_id),
            )
            cur = await conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=%s", (run_id,))
            row = await cur.fetchone()
        assert row is not None
        return run_from_row(row)

    @_translate
    async def journal(self, run_id: str) -> list[JournalEntry]:
        rows = await self._fetch(f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id=%s ORDER BY seq", (run_id,))
        return [journal_from_row(r) for r in rows]

    # -- signals -----------------------------------------------------------------------------
    @_translate
    async def send_signal(self, run_id: str, name: str, payload_json: str | None, now: float) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT 1 FROM runs WHERE id=%s", (run_id,))
            if await cur.fetchone() is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            await conn.execute(
                "INSERT INTO signals (run_id, name, payload, created_at) VALUES (%s,%s,%s,%s)",
                (run_id, name, payload_json, now),
            )
            await conn.execute("UPDATE runs SET wake_at=%s WHERE id=%s AND status='WAITING'", (now, run_id))

    @_translate
    async def next_signal(self, run_id: str, name: str) -> SignalRecord | None:
        rows = await self._fetch(
            "SELECT id, run_id, name, payload, created_at FROM signals WHERE run_id=%s AND name=%s"
            " AND consumed_seq IS NULL ORDER BY id LIMIT 1",
            (run_id, name),
        )
        return SignalRecord(*rows[0]) if rows else None

    # -- dead letters ------------------------------------------------------------------------
    @_translate
    async def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = await self._fetch(
            f"SELECT {DLQ_COLUMNS} FROM dead_letters WHERE resolved_at IS NULL ORDER BY created_at DESC LIMIT %s",
            (limit,),
        )
        return [dlq_from_row(r) for r in rows]

    @_translate
    async def retry_dead_letter(self, run_id: str, now: float, *, new_generation: bool = False) -> RunRecord:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE runs SET status='PENDING', error=NULL, output=NULL, finished_at=NULL, owner=NULL,"
                " wake_at=NULL, lease_expires_at=NULL, phase='run', cancel_requested=false, updated_at=%s,"
                " generation=generation + %s,"
                " seq_base=CASE WHEN %s THEN (SELECT COALESCE(MAX(seq) + 1, 0) FROM journal WHERE run_id=%s)"
                " ELSE seq_base END WHERE id=%s AND status='DEAD_LETTER'",
                (now, 1 if new_generation else 0, new_generation, run_id, run_id),
            )
            if cur.rowcount != 1:
                raise RunNotFound(f"run {run_id!r} is not in the dead-letter queue")
            await conn.execute(
                "UPDATE dead_letters SET retries=retries+1, resolved_at=%s WHERE run_id=%s", (now, run_id)
            )
            cur = await conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=%s", (run_id,))
            row = await cur.fetchone()
        assert row is not None
        return run_from_row(row)

    # -- shared state ------------------------------------------------------------------------
    @_translate
    async def get_flag(self, name: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT value FROM flags WHERE name=%s", (name,))
        return json.loads(rows[0][0]) if rows else None

    @_translate
    async def set_flag(self, name: str, value: dict[str, Any] | None, now: float) -> None:
        if value is None:
            await self._fetch("DELETE FROM flags WHERE name=%s", (name,))
            return
        await self._fetch(
            "INSERT INTO flags (name, value, updated_at) VALUES (%s,%s,%s) ON CONFLICT (name) DO UPDATE"
            " SET value=excluded.value, updated_at=excluded.updated_at",
            (name, dumps(value), now),
        )

    @_translate
    async def kv_get(self, namespace: str, key: str, now: float | None = None) -> bytes | None:
        rows = await self._fetch("SELECT value, expires_at FROM kv WHERE namespace=%s AND key=%s", (namespace, key))
        if not rows:
            return None
        value, expires_at = rows[0]
        if expires_at is not None and expires_at <= (time.time() if now is None else now):
            return None
        return bytes(value)

    @_translate
    async def kv_put(self, namespace: str, key: str, value: bytes, *, expires_at: float | None = None) -> None:
        await self._fetch(
            "INSERT INTO kv (namespace, key, value, expires_at) VALUES (%s,%s,%s,%s) ON CONFLICT (namespace, key)"
            " DO UPDATE SET value=excluded.value, expires_at=excluded.expires_at",
            (namespace, key, value, expires_at),
        )

    @_translate
    async def kv_put_many(self, namespace: str, items: list[tuple[str, bytes]]) -> None:
        if not items:
            return
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO kv (namespace, key, value, expires_at) VALUES (%s,%s,%s,NULL)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET value=excluded.value, expires_at=NULL",
                    [(namespace, k, v) for k, v in items],
                )

    @_translate
    async def kv_delete(self, namespace: str, key: str) -> bool:
        rows = await self._fetch("DELETE FROM kv WHERE namespace=%s AND key=%s RETURNING 1", (namespace, key))
        return bool(rows)

    @_translate
    async def kv_delete_prefix(self, namespace: str, prefix: str) -> int:
        rows = await self._fetch(
            "DELETE FROM kv WHERE namespace=%s AND left(key, %s)=%s RETURNING 1", (namespace, len(prefix), prefix)
        )
        return len(rows)

    @_translate
    async def kv_keys(self, namespace: str, prefix: str = "") -> list[str]:
        rows = await self._fetch(
            "SELECT key FROM kv WHERE namespace=%s AND left(key, %s)=%s ORDER BY key", (namespace, len(prefix), prefix)
        )
        return [r[0] for r in rows]

    @_translate
    async def counter_add(self, namespace: str, key: str, delta: float, now: float) -> float:
        rows = await self._fetch(
            "INSERT INTO counters (namespace, key, value, updated_at) VALUES (%s,%s,%s,%s)"
            " ON CONFLICT (namespace, key) DO UPDATE SET value=counters.value+excluded.value,"
            " updated_at=excluded.updated_at RETURNING value",
            (namespace, key, float(delta), now),
        )
        return float(rows[0][0])

    @_translate
    async def counter_get(self, namespace: str, key: str) -> float:
        rows = await self._fetch("SELECT value FROM counters WHERE namespace=%s AND key=%s", (namespace, key))
        return float(rows[0][0]) if rows else 0.0

    # -- leader leases and fleet counts -----------------------------------------------------
    @_translate
    async def acquire_leader(self, name: str, holder: str, now: float, ttl_s: float) -> LeaderLease:
        async with self._pool.connection() as conn, conn.transaction():
            # The placeholder row (epoch 0, expired) gives FOR UPDATE something to lock on the first
            # race; decide_lease treats it as a lease nobody holds.
            await conn.execute(
                "INSERT INTO leader_leases (name, holder, epoch, acquired_at, expires_at)"
                " VALUES (%s, '', 0, 0, 0) ON CONFLICT (name) DO NOTHING",
                (name,),
            )
            cur = await conn.execute(
                "SELECT holder, epoch, acquired_at, expires_at FROM leader_leases WHERE name=%s FOR UPDATE", (name,)
            )
            row = await cur.fetchone()
            assert row is not None
            current = LeaderLease(name, row[0], int(row[1]), float(row[2]), float(row[3]))
            new = decide_lease(current, name, holder, now, ttl_s)
            if new is None:
                return current
            await conn.execute(
                "UPDATE leader_leases SET holder=%s, epoch=%s, acquired_at=%s, expires_at=%s WHERE name=%s",
                (new.holder, new.epoch, new.acquired_at, new.expires_at, name),
            )
            return new

    @_translate
    async def release_leader(self, name: str, holder: str, epoch: int, now: float) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE leader_leases SET expires_at=%s WHERE name=%s AND holder=%s AND epoch=%s AND expires_at>%s",
                (now, name, holder, epoch, now),
            )
            return cur.rowcount > 0

    @_translate
    async def mcp_pins(self, server: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT server, tool, sha256, definition, approved_by, approved_at FROM mcp_pins"
        rows = await self._fetch(sql + (" WHERE server=%s" if server is not None else "") + " ORDER BY server, tool",
                                 (server,) if server is not None else ())
        cols = ("server", "tool", "sha256", "definition", "approved_by", "approved_at")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    @_translate
    async def mcp_pin(self, server: str, pins: list[dict[str, Any]], approved_by: str, now: float) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            for p in pins:
                await conn.execute(
                    "INSERT INTO mcp_pins (server, tool, sha256, definition, approved_by, approved_at)"
                    " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (server, tool) DO UPDATE SET sha256=excluded.sha256,"
                    " definition=excluded.definition, approved_by=excluded.approved_by,"
                    " approved_at=excluded.approved_at",
                    (server, p["tool"], p["sha256"], p["definition"], approved_by, now),
                )

    @_translate
    async def fleet_counts(self, now: float) -> FleetCounts:
        rows = await self._fetch(FLEET_COUNTS_SQL, (now, now, now, now))  # one statement, one snapshot
        return FleetCounts(*(int(v or 0) for v in rows[0]))

    @_translate
    async def ledger_reserve(
        self, hold_id: str, keys: list[str], decide: LedgerDecide, expires_at: float, now: float
    ) -> dict[str, tuple[float, float]] | str:
        async with self._pool.connection() as conn, conn.transaction():
            # One advisory lock per ledger key, taken in a fixed order (no deadlock between calls
            # that share several keys), serialises every reservation on those keys.
            for key in sorted(keys):
                await conn.execute("SELECT pg_advisory_xact_lock(7258140, hashtext(%s))", (key,))
            await conn.execute("DELETE FROM budget_holds WHERE expires_at<=%s AND key = ANY(%s)", (now, keys))
            rows: dict[str, LedgerRow] = {}
            for key in keys:
                cur = await conn.execute(
                    "SELECT key, value FROM counters WHERE namespace=%s AND key IN (%s,%s)",
                    (LEDGER_NS, f"{key}:tokens", f"{key}:usd"),
                )
                spent = {k: v for k, v in await cur.fetchall()}
                cur = await conn.execute(
                    "SELECT COALESCE(SUM(tokens),0), COALESCE(SUM(usd),0) FROM budget_holds WHERE key=%s", (key,)
                )
                held = await cur.fetchone()
                assert held is not None
                rows[key] = (
                    float(spent.get(f"{key}:tokens", 0.0)),
                    float(spent.get(f"{key}:usd", 0.0)),
                    float(held[0]),
                    float(held[1]),
                )
            decision = decide(rows)
            if isinstance(decision, str):
                return decision
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO budget_holds (hold_id, key, tokens, usd, expires_at) VALUES (%s,%s,%s,%s,%s)",
                    [(hold_id, k, t, u, expires_at) for k, (t, u) in decision.items()],
                )
        return decision

    @_translate
    async def ledger_settle(
        self, hold_id: str, spend: dict[str, tuple[float, float]], now: float
    ) -> dict[str, tuple[float, float, float, float]]:
        out: dict[str, tuple[float, float, float, float]] = {}
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM budget_holds WHERE hold_id=%s", (hold_id,))
            for key, (tokens, usd) in spend.items():
                after = []
                for dim, delta in (("tokens", tokens), ("usd", usd)):
                    cur = await conn.execute(
                        "INSERT INTO counters (namespace, key, value, updated_at) VALUES (%s,%s,%s,%s)"
                        " ON CONFLICT (namespace, key) DO UPDATE SET value=counters.value+excluded.value,"
                        " updated_at=excluded.updated_at RETURNING value",
                        (LEDGER_NS, f"{key}:{dim}", float(delta), now),
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    after.append(float(row[0]))
                out[key] = (after[0] - tokens, after[1] - usd, after[0], after[1])
        return out

    # -- outbox ------------------------------------------------------------------------------
    # -- run event streams --------------------------------------------------------------------
    @_translate
    async def append_events(self, run_id: str, epoch: int, events: Sequence[RunEvent]) -> list[int]:
        if not events:
            return []
        async with self._pool.connection() as conn, conn.transaction():
            # The run row's lock orders every writer of this run's stream (and fences a stale one),
            # so the offsets read and assigned here cannot race another transaction's.
            cur = await conn.execute(
                "SELECT 1 FROM runs WHERE id=%s AND epoch=%s AND status='RUNNING' FOR UPDATE", (run_id, epoch)
            )
            if await cur.fetchone() is None:
                raise LeaseLost(f"run {run_id}: lease lost (epoch {epoch} is no longer current)")
            cur = await conn.execute(
                "SELECT COALESCE(MAX(ofs), 0), COALESCE(array_agg(key) FILTER (WHERE key = ANY(%s)), '{}')"
                " FROM run_events WHERE run_id=%s",
                ([e.key for e in events], run_id),
            )
            top, have = await cur.fetchone()  # type: ignore[misc]
            seen = set(have)
            rows, written = [], []
            for ev in events:
                if ev.key in seen:
                    continue
                seen.add(ev.key)
                top += 1
                written.append(top)
                rows.append((run_id, top, ev.key, ev.kind, dumps(ev.data) or "null", ev.created_at))
            if rows:
                async with conn.cursor() as c:
                    await c.executemany(
                        "INSERT INTO run_events (run_id, ofs, key, kind, data, created_at)"
                        " VALUES (%s,%s,%s,%s,%s,%s)",
                        rows,
                    )
        return written

    @_translate
    async def read_events(
        self, run_id: str, after: int = 0, limit: int = 500, *, key_prefix: str | None = None
    ) -> list[RunEvent]:
        sql = "SELECT ofs, key, kind, data, created_at FROM run_events WHERE run_id=%s AND ofs>%s"
        params: list[Any] = [run_id, after]
        if key_prefix is not None:
            sql += " AND left(key, %s)=%s"
            params += [len(key_prefix), key_prefix]
        rows = await self._fetch(sql + " ORDER BY ofs LIMIT %s", [*params, limit])
        return [RunEvent(r[1], r[2], json.loads(r[3]), r[4], offset=r[0], run_id=run_id) for r in rows]

    @_translate
    async def outbox_after(self, after_id: int, limit: int = 500) -> list[OutboxEvent]:
        rows = await self._fetch(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id>%s ORDER BY id LIMIT %s", (after_id, limit)
        )
        return [outbox_from_row(r) for r in rows]

    # -- wake-ups ----------------------------------------------------------------------------
    async def wait_for_work(self, timeout: float) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen())
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _listen(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
                async with conn:
                    await conn.execute("LISTEN stalwart_runs")
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the listener is an optimisation; polling still finds work
                _log.warning("LISTEN connection to %s failed: %s; retrying", self.safe_url, exc)
                self._wake.set()
                await asyncio.sleep(1.0)
