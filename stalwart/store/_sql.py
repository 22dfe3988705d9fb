"""Dialect-neutral SQL on a store's own connection, for the data-plane tables (memory, artifacts).

Statements use ``?`` placeholders; on PostgreSQL they become ``%s``. Writes on SQLite take
``BEGIN IMMEDIATE`` through the store's transaction helper, like every other writer of the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from stalwart.errors import StoreError

__all__ = ["SqlRunner"]

Params = Sequence[Any]


class SqlRunner:
    """Runs statements for one :class:`~stalwart.store.Store` (``sqlite`` or ``postgres``)."""

    def __init__(self, store: Any) -> None:
        if store.kind not in ("sqlite", "postgres"):
            raise StoreError(f"no SQL runner for a store of kind {store.kind!r}")
        self.store = store
        self.dialect: str = store.kind

    def _pg(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def sqlite_connection(self) -> sqlite3.Connection:
        """The embedded store's connection (to register functions or load extensions on it)."""
        if self.dialect != "sqlite":
            raise StoreError("not a SQLite store")
        conn: sqlite3.Connection = self.store._db
        return conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement in its own transaction; returns the affected row count."""
        return (await self.transaction([(sql, params)]))[0]

    async def transaction(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        """Run several write statements atomically; returns each one's row count."""
        counts: list[int] = []
        if self.dialect == "sqlite":
            try:
                with self.store._tx() as cur:
                    for sql, params in statements:
                        cur.execute(sql, tuple(params))
                        counts.append(cur.rowcount)
            except sqlite3.Error as exc:
                raise StoreError(f"write failed on {self.store.safe_url}: {exc}") from exc
            return counts
        import psycopg

        try:
            async with self.store._pool.connection() as conn, conn.transaction():
                for sql, params in statements:
                    cur = await conn.execute(self._pg(sql), tuple(params))
                    counts.append(cur.rowcount)
        except psycopg.Error as exc:
            raise StoreError(f"write failed on {self.store.safe_url}: {exc}") from exc
        return counts

    async def fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""
        if self.dialect == "sqlite":
            rows: list[tuple[Any, ...]] = self.store._q(sql, tuple(params))
            return rows
        import psycopg

        try:
            async with self.store._pool.connection() as conn:
                cur = await conn.execute(self._pg(sql), tuple(params))
                return list(await cur.fetchall())
        except psycopg.Error as exc:
            raise StoreError(f"query failed on {self.store.safe_url}: {exc}") from exc

    async def fetch_raw(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Like :meth:`fetch`, but the SQL is passed as written (PostgreSQL ``%s`` placeholders,
        operators such as pgvector's ``<=>``)."""
        if self.dialect == "sqlite":
            return await self.fetch(sql, params)
        import psycopg

        try:
            async with self.store._pool.connection() as conn:
                cur = await conn.execute(sql, tuple(params))
                return list(await cur.fetchall())
        except psycopg.Error as exc:
            raise StoreError(f"query failed on {self.store.safe_url}: {exc}") from exc

    async def execute_raw(self, sql: str, params: Params = ()) -> None:
        """Run one PostgreSQL statement as written (DDL such as ``CREATE EXTENSION``)."""
        if self.dialect == "sqlite":
            await self.execute(sql, params)
            return
        import psycopg

        try:
            async with self.store._pool.connection() as conn, conn.transaction():
                await conn.execute(sql, tuple(params))
        except psycopg.Error as exc:
            raise StoreError(f"statement failed on {self.store.safe_url}: {exc}") from exc
