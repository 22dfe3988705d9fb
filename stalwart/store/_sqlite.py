"""The embedded store: one SQLite file in WAL mode.

SQLite calls are microseconds, so they run directly on the event loop thread instead of paying a
thread hop per call; a lock keeps a transaction whole if another thread shares the store. Several
processes may share the file: writes take ``BEGIN IMMEDIATE`` and wait on ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stalwart.errors import LeaseLost, RunNotFound, StoreError, StoreUnavailable
from stalwart.store._audit_sql import AUDIT_INSERT_SQLITE
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

__all__ = ["SqliteStore"]

_JOURNAL_UPSERT = (
    f"INSERT INTO journal ({JOURNAL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (run_id, seq) DO UPDATE SET kind=excluded.kind, name=excluded.name, "
    "status=excluded.status, result=excluded.result, error=excluded.error, attempts=excluded.attempts, "
    "started_at=excluded.started_at, finished_at=excluded.finished_at, wake_at=excluded.wake_at, "
    "meta=excluded.meta"
)
_OUTBOX_INSERT = (
    "INSERT INTO outbox (event_id, type, run_id, payload, created_at) VALUES (?,?,?,?,?) "
    "ON CONFLICT (event_id) DO NOTHING"
)


class SqliteStore:
    """:class:`~stalwart.store.Store` on a SQLite file (WAL, ``synchronous=NORMAL``)."""

    kind = "sqlite"

    def __init__(self, path: str, *, safe_url: str | None = None) -> None:
        self.path = path
        self.safe_url = safe_url or f"sqlite:///{path}"
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.safe_url}: {exc}") from exc
        self._lock = threading.RLock()
        self._wake = asyncio.Event()

    # -- plumbing ----------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def _q(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"query failed on {self.safe_url}: {exc}") from exc

    def _poke(self) -> None:
        self._wake.set()

    def ping_sync(self) -> None:
        self._q("SELECT 1")

    async def close(self) -> None:
        with self._lock:
            self._db.close()

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        with self._tx() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            done = {r[0] for r in cur.execute("SELECT version FROM schema_migrations").fetchall()}
            for m in load_migrations("sqlite"):
                if m.version in done:
                    continue
                for stmt in _split_sql(m.sql):
                    cur.execute(stmt)
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?,?,?)",
                    (m.version, m.name, time.time()),
                )
                applied.append(f"{m.version:04d}_{m.name}")
        return applied

    async def pending_migrations(self) -> list[str]:
        try:
            done = {r[0] for r in self._q("SELECT version FROM schema_migrations")}
        except StoreError:
            done = set()
        return [f"{m.version:04d}_{m.name}" for m in load_migrations("sqlite") if m.version not in done]

    # -- runs --------------------------------------------------------------------------------
    async def create_run(
        self, run: NewRun, *, refuse_if_flag: str | None = None, audit_bodies: Sequence[str] = ()
    ) -> tuple[str | None, bool]:
        with self._tx() as cur:
            if refuse_if_flag is not None and cur.execute(
                "SELECT 1 FROM flags WHERE name=?", (refuse_if_flag,)
            ).fetchone():
                return None, False
            if run.idempotency_key is not None:
                row = cur.execute(
                    "SELECT id FROM runs WHERE org=? AND idempotency_key=?", (run.org, run.idempotency_key)
                ).fetchone()
                if row:
                    return row[0], False
            cur.execute(
                "INSERT INTO runs (id, workflow, version, wf_key, status, input, org, user_id, idempotency_key,"
                " created_at, updated_at, trace_id, parent_id, meta) VALUES (?,?,?,?,'PENDING',?,?,?,?,?,?,?,?,?)",
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
                ),
            )
            cur.execute(
                _OUTBOX_INSERT,
                (f"{run.id}:created", "run.created", run.id, dumps({"workflow": run.workflow,
                 "version": run.version, "org": run.org}), run.created_at),
            )
            if audit_bodies:
                cur.executemany(AUDIT_INSERT_SQLITE, [(b,) for b in audit_bodies])
        self._poke()
        return run.id, True

    async def fork_run(self, run: NewRun, source_id: str, from_seq: int, upto_seq: int) -> str:
        await self.create_run(run)
        with self._tx() as cur:
            cur.execute(
                f"INSERT INTO journal ({JOURNAL_COLUMNS}) SELECT ?, seq - ?, kind, name, status, result, error,"
                " attempts, started_at, finished_at, wake_at, meta FROM journal"
                " WHERE run_id=? AND seq>=? AND seq<? AND status='completed' AND kind<>'compensation'",
                (run.id, from_seq, source_id, from_seq, upto_seq),
            )
        return run.id

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._q(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?", (run_id,))
        return run_from_row(rows[0]) if rows else None

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
                where.append(f"{col}=?")
                params.append(val)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._q(
            f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [run_from_row(r) for r in rows]

    async def run_orgs(self) -> list[str]:
        return [r[0] or "" for r in self._q("SELECT DISTINCT org FROM runs ORDER BY org")]

    async def claim_runs(
        self, worker_id: str, workflows: list[str], now: float, lease_s: float, limit: int
    ) -> list[Claim]:
        if not workflows or limit <= 0:
            return []
        marks = ",".join("?" * len(workflows))
        with self._tx() as cur:
            ids = [
                r[0]
                for r in cur.execute(
                    f"SELECT id FROM (SELECT id, created_at FROM runs WHERE status='PENDING' AND wf_key IN ({marks})"
                    f" UNION ALL SELECT id, created_at FROM runs WHERE status='WAITING' AND wake_at<=?"
                    f" AND wf_key IN ({marks})"
                    f" UNION ALL SELECT id, created_at FROM runs WHERE status='RUNNING' AND lease_expires_at<?"
                    f" AND wf_key IN ({marks})) ORDER BY created_at LIMIT ?",
                    (*workflows, now, *workflows, now, *workflows, limit),
                ).fetchall()
            ]
            if not ids:
                return []
            idm = ",".join("?" * len(ids))
            cur.execute(
                f"UPDATE runs SET status='RUNNING', owner=?, epoch=epoch+1, lease_expires_at=?, updated_at=?,"
                f" wake_at=NULL WHERE id IN ({idm})",
                (worker_id, now + lease_s, now, *ids),
            )
            runs = [run_from_row(r) for r in cur.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({idm})", ids)]
            journals: dict[str, list[JournalEntry]] = {i: [] for i in ids}
            for r in cur.execute(
                f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id IN ({idm}) ORDER BY run_id, seq", ids
            ):
                journals[r[0]].append(journal_from_row(r))
        runs.sort(key=lambda r: r.created_at)
        return [Claim(run, journals[run.id]) for run in runs]

    async def renew_leases(
        self, worker_id: str, held: list[tuple[str, int]], now: float, lease_s: float
    ) -> list[str]:
        lost: list[str] = []
        if not held:
            return lost
        with self._tx() as cur:
            for run_id, epoch in held:
                cur.execute(
                    "UPDATE runs SET lease_expires_at=? WHERE id=? AND epoch=? AND status='RUNNING'",
                    (now + lease_s, run_id, epoch),
                )
                if cur.rowcount != 1:
                    lost.append(run_id)
        return lost

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
        with self._tx() as cur:
            # BEGIN IMMEDIATE serialises writers, so reading the epoch here fences as well as an
            # UPDATE would, without rewriting the run row on every step (the heartbeat renews leases).
            row = cur.execute(
                "SELECT cancel_requested, EXISTS (SELECT 1 FROM flags WHERE name='kill_switch') FROM runs"
                " WHERE id=? AND epoch=? AND status='RUNNING'",
                (run_id, epoch),
            ).fetchone()
            if row is None:
                raise LeaseLost(f"run {run_id}: lease lost (epoch {epoch} is no longer current)")
            kill = bool(row[1])
            cur.execute(_JOURNAL_UPSERT, journal_params(entry))
            if consume_signal is not None:
                cur.execute(
                    "UPDATE signals SET consumed_seq=? WHERE id=? AND consumed_seq IS NULL",
                    (entry.seq, consume_signal),
                )
            if events:
                cur.executemany(_OUTBOX_INSERT, [outbox_params(e) for e in events])
            if audit_bodies:
                cur.executemany(AUDIT_INSERT_SQLITE, [(b,) for b in audit_bodies])
        return bool(row[0]), kill

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
        with self._tx() as cur:
            cur.execute(
                "UPDATE runs SET status=?, updated_at=?, output=COALESCE(?, output), error=?,"
                " wake_at=CASE WHEN ?='WAITING' AND (cancel_requested=1 OR EXISTS (SELECT 1 FROM signals"
                " WHERE signals.run_id=runs.id AND consumed_seq IS NULL"
                " AND signals.name IN (SELECT value FROM json_each(?)))) THEN ? ELSE ? END,"
                " phase=COALESCE(?, phase), finished_at=?,"
                " owner=CASE WHEN ? THEN NULL ELSE owner END,"
                " lease_expires_at=CASE WHEN ? THEN NULL ELSE lease_expires_at END,"
                " meta=CASE WHEN ? IS NULL THEN meta ELSE json_patch(meta, ?) END"
                " WHERE id=? AND epoch=?",
                (
                    status,
                    now,
                    output_json,
                    dumps(error),
                    status,
                    dumps(_names(signal_name)),
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
                cur.execute(
                    "INSERT INTO dead_letters (run_id, workflow, version, reason, error, created_at, retries)"
                    " VALUES (?,?,?,?,?,?,0) ON CONFLICT (run_id) DO UPDATE SET reason=excluded.reason,"
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
            if events:
                cur.executemany(_OUTBOX_INSERT, [outbox_params(e) for e in events])
            if audit_bodies:
                cur.executemany(AUDIT_INSERT_SQLITE, [(b,) for b in audit_bodies])
            if notify is not None:  # e.g. a child run telling its parent, atomically with its end
                target, name, payload = notify
                cur.execute("INSERT INTO signals (run_id, name, payload, created_at) VALUES (?,?,?,?)",
                            (target, name, payload, now))
                cur.execute("UPDATE runs SET wake_at=? WHERE id=? AND status='WAITING'", (now, target))
        if status in ("PENDING", "WAITING") or notify is not None:
            self._poke()

    async def request_cancel(self, run_id: str, now: float) -> RunRecord:
        with self._tx() as cur:
            cur.execute(
                "UPDATE runs SET cancel_requested=1, updated_at=?,"
                " wake_at=CASE WHEN status='WAITING' THEN ? ELSE wake_at END WHERE id=?",
                (now, now, run_id),
            )
            if cur.rowcount != 1:
                raise RunNotFound(f"no run with id {run_id!r}")
            cur.execute(
                "UPDATE runs SET status='CANCELLED', finished_at=?, updated_at=? WHERE id=? AND status='PENDING'"
                " AND NOT EXISTS (SELECT 1 FROM journal WHERE run_id=?)",
                (now, now, run_id, run_id),
            )
            row = cur.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?", (run_id,)).fetchone()
        self._poke()
        return run_from_row(row)

    async def journal(self, run_id: str) -> list[JournalEntry]:
        return [
            journal_from_row(r)
            for r in self._q(f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id=? ORDER BY seq", (run_id,))
        ]

    # -- signals -----------------------------------------------------------------------------
    async def send_signal(self, run_id: str, name: str, payload_json: str | None, now: float) -> None:
        with self._tx() as cur:
            if not cur.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone():
                raise RunNotFound(f"no run with id {run_id!r}")
            cur.execute(
                "INSERT INTO signals (run_id, name, payload, created_at) VALUES (?,?,?,?)",
                (run_id, name, payload_json, now),
            )
            cur.execute("UPDATE runs SET wake_at=? WHERE id=? AND status='WAITING'", (now, run_id))
        self._poke()

    async def next_signal(self, run_id: str, name: str) -> SignalRecord | None:
        rows = self._q(
            "SELECT id, run_id, name, payload, created_at FROM signals WHERE run_id=? AND name=?"
            " AND consumed_seq IS NULL ORDER BY id LIMIT 1",
            (run_id, name),
        )
        return SignalRecord(*rows[0]) if rows else None

    # -- dead letters ------------------------------------------------------------------------
    async def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._q(
            f"SELECT {DLQ_COLUMNS} FROM dead_letters WHERE resolved_at IS NULL ORDER BY created_at DESC LIMIT ?",
            (limit,),
        )
        return [dlq_from_row(r) for r in rows]

    async def retry_dead_letter(self, run_id: str, now: float, *, new_generation: bool = False) -> RunRecord:
        with self._tx() as cur:
            cur.execute(
                "UPDATE runs SET status='PENDING', error=NULL, output=NULL, finished_at=NULL, owner=NULL,"
                " wake_at=NULL, lease_expires_at=NULL, phase='run', cancel_requested=0, updated_at=?,"
                " generation=generation + ?,"
                " seq_base=CASE WHEN ? THEN (SELECT COALESCE(MAX(seq) + 1, 0) FROM journal WHERE run_id=?)"
                " ELSE seq_base END"
                " WHERE id=? AND status='DEAD_LETTER'",
                (now, 1 if new_generation else 0, new_generation, run_id, run_id),
            )
            if cur.rowcount != 1:
                raise RunNotFound(f"run {run_id!r} is not in the dead-letter queue")
            cur.execute(
                "UPDATE dead_letters SET retries=retries+1, resolved_at=? WHERE run_id=?", (now, run_id)
            )
            row = cur.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?", (run_id,)).fetchone()
        self._poke()
        return run_from_row(row)

    # -- shared state ------------------------------------------------------------------------
    async def get_flag(self, name: str) -> dict[str, Any] | None:
        rows = self._q("SELECT value FROM flags WHERE name=?", (name,))
        return json.loads(rows[0][0]) if rows else None

    async def set_flag(self, name: str, value: dict[str, Any] | None, now: float) -> None:
        with self._tx() as cur:
            if value is None:
                cur.execute("DELETE FROM flags WHERE name=?", (name,))
            else:
                cur.execute(
                    "INSERT INTO flags (name, value, updated_at) VALUES (?,?,?) ON CONFLICT (name) DO UPDATE"
                    " SET value=excluded.value, updated_at=excluded.updated_at",
                    (name, dumps(value), now),
                )

    async def kv_get(self, namespace: str, key: str, now: float | None = None) -> bytes | None:
        rows = self._q("SELECT value, expires_at FROM kv WHERE namespace=? AND key=?", (namespace, key))
        if not rows:
            return None
        value, expires_at = rows[0]
        if expires_at is not None and expires_at <= (time.time() if now is None else now):
            return None
        return bytes(value)

    async def kv_put(self, namespace: str, key: str, value: bytes, *, expires_at: float | None = None) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO kv (namespace, key, value, expires_at) VALUES (?,?,?,?) ON CONFLICT (namespace, key)"
                " DO UPDATE SET value=excluded.value, expires_at=excluded.expires_at",
                (namespace, key, value, expires_at),
            )

    async def kv_put_many(self, namespace: str, items: list[tuple[str, bytes]]) -> None:
        if not items:
            return
        with self._tx() as cur:
            cur.executemany(
                "INSERT INTO kv (namespace, key, value, expires_at) VALUES (?,?,?,NULL) ON CONFLICT (namespace, key)"
                " DO UPDATE SET value=excluded.value, expires_at=NULL",
                [(namespace, k, v) for k, v in items],
            )

    async def kv_delete(self, namespace: str, key: str) -> bool:
        with self._tx() as cur:
            cur.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))
            return cur.rowcount > 0

    async def kv_delete_prefix(self, namespace: str, prefix: str) -> int:
        with self._tx() as cur:
            cur.execute(
                "DELETE FROM kv WHERE namespace=? AND substr(key, 1, ?)=?", (namespace, len(prefix), prefix)
            )
            return cur.rowcount

    async def kv_keys(self, namespace: str, prefix: str = "") -> list[str]:
        rows = self._q(
            "SELECT key FROM kv WHERE namespace=? AND substr(key, 1, ?)=? ORDER BY key",
            (namespace, len(prefix), prefix),
        )
        return [r[0] for r in rows]

    async def counter_add(self, namespace: str, key: str, delta: float, now: float) -> float:
        with self._tx() as cur:
            row = cur.execute(
                "INSERT INTO counters (namespace, key, value, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT (namespace, key) DO UPDATE SET value=value+excluded.value,"
                " updated_at=excluded.updated_at RETURNING value",
                (namespace, key, delta, now),
            ).fetchone()
        return float(row[0])

    async def counter_get(self, namespace: str, key: str) -> float:
        rows = self._q("SELECT value FROM counters WHERE namespace=? AND key=?", (namespace, key))
        return float(rows[0][0]) if rows else 0.0

    # -- leader leases and fleet counts -----------------------------------------------------
    async def acquire_leader(self, name: str, holder: str, now: float, ttl_s: float) -> LeaderLease:
        with self._tx() as cur:  # BEGIN IMMEDIATE: the write lock is held from the read on
            row = cur.execute(
                "SELECT holder, epoch, acquired_at, expires_at FROM leader_leases WHERE name=?", (name,)
            ).fetchone()
            current = None if row is None else LeaderLease(name, row[0], int(row[1]), float(row[2]), float(row[3]))
            new = decide_lease(current, name, holder, now, ttl_s)
            if new is None:
                assert current is not None
                return current
            cur.execute(
                "INSERT INTO leader_leases (name, holder, epoch, acquired_at, expires_at) VALUES (?,?,?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, epoch=excluded.epoch,"
                " acquired_at=excluded.acquired_at, expires_at=excluded.expires_at",
                (name, new.holder, new.epoch, new.acquired_at, new.expires_at),
            )
            return new

    async def release_leader(self, name: str, holder: str, epoch: int, now: float) -> bool:
        with self._tx() as cur:
            cur.execute(
                "UPDATE leader_leases SET expires_at=? WHERE name=? AND holder=? AND epoch=? AND expires_at>?",
                (now, name, holder, epoch, now),
            )
            return cur.rowcount > 0

    async def mcp_pins(self, server: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT server, tool, sha256, definition, approved_by, approved_at FROM mcp_pins"
        rows = self._q(sql + (" WHERE server=?" if server is not None else "") + " ORDER BY server, tool",
                       (server,) if server is not None else ())
        return [dict(zip(_PIN_COLUMNS, r, strict=True)) for r in rows]

    async def mcp_pin(self, server: str, pins: list[dict[str, Any]], approved_by: str, now: float) -> None:
        with self._tx() as cur:
            for p in pins:
                cur.execute(
                    "INSERT INTO mcp_pins (server, tool, sha256, definition, approved_by, approved_at)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT (server, tool) DO UPDATE SET sha256=excluded.sha256,"
                    " definition=excluded.definition, approved_by=excluded.approved_by,"
                    " approved_at=excluded.approved_at",
                    (server, p["tool"], p["sha256"], p["definition"], approved_by, now),
                )

    async def fleet_counts(self, now: float) -> FleetCounts:
        rows = self._q(FLEET_COUNTS_SQL.replace("%s", "?"), (now, now, now, now))
        return FleetCounts(*(int(v or 0) for v in rows[0]))

    async def ledger_reserve(
        self, hold_id: str, keys: list[str], decide: LedgerDecide, expires_at: float, now: float
    ) -> dict[str, tuple[float, float]] | str:
        with self._tx() as cur:
            cur.execute(
                f"DELETE FROM budget_holds WHERE expires_at<=? AND key IN ({','.join('?' * len(keys))})",
                (now, *keys),
            )
            rows: dict[str, LedgerRow] = {}
            for key in keys:
                spent = dict(
                    cur.execute(
                        "SELECT key, value FROM counters WHERE namespace=? AND key IN (?,?)",
                        (LEDGER_NS, f"{key}:tokens", f"{key}:usd"),
                    ).fetchall()
                )
                held = cur.execute(
                    "SELECT COALESCE(SUM(tokens),0), COALESCE(SUM(usd),0) FROM budget_holds WHERE key=?", (key,)
                ).fetchone()
                rows[key] = (
                    float(spent.get(f"{key}:tokens", 0.0)),
                    float(spent.get(f"{key}:usd", 0.0)),
                    float(held[0]),
                    float(held[1]),
                )
            decision = decide(rows)
            if isinstance(decision, str):
                return decision
            cur.executemany(
                "INSERT INTO budget_holds (hold_id, key, tokens, usd, expires_at) VALUES (?,?,?,?,?)",
                [(hold_id, k, t, u, expires_at) for k, (t, u) in decision.items()],
            )
        return decision

    async def ledger_settle(
        self, hold_id: str, spend: dict[str, tuple[float, float]], now: float
    ) -> dict[str, tuple[float, float, float, float]]:
        out: dict[str, tuple[float, float, float, float]] = {}
        with self._tx() as cur:
            cur.execute("DELETE FROM budget_holds WHERE hold_id=?", (hold_id,))
            for key, (tokens, usd) in spend.items():
                after = []
                for dim, delta in (("tokens", tokens), ("usd", usd)):
                    row = cur.execute(
                        "INSERT INTO counters (namespace, key, value, updated_at) VALUES (?,?,?,?)"
                        " ON CONFLICT (namespace, key) DO UPDATE SET value=value+excluded.value,"
                        " updated_at=excluded.updated_at RETURNING value",
                        (LEDGER_NS, f"{key}:{dim}", float(delta), now),
                    ).fetchone()
                    after.append(float(row[0]))
                out[key] = (after[0] - tokens, after[1] - usd, after[0], after[1])
        return out

    # -- outbox ------------------------------------------------------------------------------
    # -- run event streams --------------------------------------------------------------------
    async def append_events(self, run_id: str, epoch: int, events: Sequence[RunEvent]) -> list[int]:
        if not events:
            return []
        written: list[int] = []
        with self._tx() as cur:
            # BEGIN IMMEDIATE serialises writers: the fence and the next offset are read safely.
            if cur.execute("SELECT 1 FROM runs WHERE id=? AND epoch=? AND status='RUNNING'",
                           (run_id, epoch)).fetchone() is None:
                raise LeaseLost(f"run {run_id}: lease lost (epoch {epoch} is no longer current)")
            top = cur.execute("SELECT COALESCE(MAX(ofs), 0) FROM run_events WHERE run_id=?", (run_id,)).fetchone()[0]
            for ev in events:
                cur.execute(
                    "INSERT INTO run_events (run_id, ofs, key, kind, data, created_at) VALUES (?,?,?,?,?,?)"
                    " ON CONFLICT (run_id, key) DO NOTHING",
                    (run_id, top + 1, ev.key, ev.kind, dumps(ev.data) or "null", ev.created_at),
                )
                if cur.rowcount == 1:
                    top += 1
                    written.append(top)
        return written

    async def read_events(
        self, run_id: str, after: int = 0, limit: int = 500, *, key_prefix: str | None = None
    ) -> list[RunEvent]:
        sql = "SELECT ofs, key, kind, data, created_at FROM run_events WHERE run_id=? AND ofs>?"
        params: tuple[Any, ...] = (run_id, after)
        if key_prefix is not None:
            sql += " AND substr(key, 1, ?)=?"
            params += (len(key_prefix), key_prefix)
        rows = self._q(sql + " ORDER BY ofs LIMIT ?", (*params, limit))
        return [RunEvent(r[1], r[2], json.loads(r[3]), r[4], offset=r[0], run_id=run_id) for r in rows]

    async def outbox_after(self, after_id: int, limit: int = 500) -> list[OutboxEvent]:
        rows = self._q(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id>? ORDER BY id LIMIT ?", (after_id, limit))
        return [outbox_from_row(r) for r in rows]

    # -- wake-ups ----------------------------------------------------------------------------
    async def wait_for_work(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass
        self._wake.clear()


def _names(signal_name: str | Sequence[str] | None) -> list[str]:
    if signal_name is None:
        return []
    return [signal_name] if isinstance(signal_name, str) else list(signal_name)


def _split_sql(script: str) -> list[str]:
    """Split a migration into whole statements (trigger bodies with inner semicolons included)."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


_PIN_COLUMNS = ("server", "tool", "sha256", "definition", "approved_by", "approved_at")
