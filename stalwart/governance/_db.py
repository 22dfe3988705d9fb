"""Governance's access to the store: one small protocol, one implementation per dialect.

The SQL lives in :mod:`._db_sqlite` and :mod:`._db_postgres`; they use the store's own connection
(``store._db`` / ``store._pool``) until the store exposes a public hook. Row-shaped state (reviews,
policy versions and changes) goes through four generic methods over a fixed set of tables whose
column names come from this package, never from callers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from stalwart.governance._checkpoint import Checkpoint

__all__ = ["TABLES", "GovDb", "Where", "chain_insert_sql", "gov_db"]

Where = dict[str, Any]
"""Column -> value (``None`` is ``IS NULL``, a list is ``IN``, ``("<=", x)`` compares)."""

TABLES = frozenset({"reviews", "policy_versions", "policy_changes", "prompt_versions", "prompt_changes"})


class GovDb(Protocol):
    dialect: str

    # -- the audit chain -----------------------------------------------------------------------
    async def append(self, bodies: Sequence[str]) -> tuple[int, bytes]:
        """Chain ``bodies`` in order, atomically; returns (tree size, head hash) after them."""
        ...

    async def head(self) -> tuple[int, bytes]:
        """(number of entries ever appended, hash of the last one)."""
        ...

    async def start(self) -> tuple[int, bytes]:
        """(first retained seq, the hash it links to): (0, GENESIS) unless a purge happened."""
        ...

    def scan(self, start: int, chunk: int) -> AsyncIterator[list[tuple[int, str, bytes, bytes]]]:
        """Entries ``(seq, body, prev_hash, hash)`` from ``start`` on, in seq order, in chunks."""
        ...

    async def entry_hashes(self, start: int, end: int) -> list[bytes]: ...

    async def find_event(self, event_id: str) -> tuple[int, str, bytes] | None: ...

    async def bodies(
        self, *, run_ids: Sequence[str] = (), user_id: str | None = None, limit: int = 100_000
    ) -> list[tuple[int, str]]: ...

    async def events_by_type(
        self, event_types: Sequence[str], limit: int = 10_000
    ) -> list[tuple[int, str]]: ...

    async def event_counts(self) -> dict[str, int]: ...

    async def purge(self, upto_seq: int, anchor_hash: bytes, now: float, reason: str) -> int: ...

    async def log_id(self) -> str:
        """This audit log's identity: a random id created once with the database (migration 0005)."""
        ...

    async def add_checkpoint(self, cp: Checkpoint) -> None: ...

    async def checkpoints(self) -> list[Checkpoint]: ...

    # -- row-shaped state ----------------------------------------------------------------------
    async def insert(self, table: str, row: dict[str, Any], *, ignore_conflict: bool = False) -> bool: ...

    async def select(
        self, table: str, where: Where, *, order_by: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]: ...

    async def update(self, table: str, where: Where, values: dict[str, Any]) -> int: ...

    # -- compliance ----------------------------------------------------------------------------
    async def subject_runs(self, subject: str) -> list[dict[str, Any]]: ...

    async def run_payloads(self, run_ids: Sequence[str]) -> dict[str, Any]: ...

    async def scrub_runs(self, run_ids: Sequence[str], marker: str) -> int: ...

    async def compact(self) -> None:
        """Make deleted and overwritten bytes unrecoverable from the database files."""
        ...

    async def table_counts(self) -> dict[str, int]: ...


def gov_db(store: Any) -> GovDb:
    """The implementation for ``store.kind`` (``sqlite`` or ``postgres``)."""
    if store.kind == "sqlite":
        from stalwart.governance._db_sqlite import SqliteGovDb

        return SqliteGovDb(store)
    if store.kind == "postgres":
        from stalwart.governance._db_postgres import PostgresGovDb

        return PostgresGovDb(store)
    raise ValueError(f"governance has no backend for store kind {store.kind!r}")


def chain_insert_sql(dialect: str) -> str:
    """The statement that appends audit bodies to the chain inside a caller's transaction.

    ``sqlite``: one ``?`` (a body); run it with ``executemany`` in order inside ``BEGIN IMMEDIATE``;
    the connection needs governance's ``stalwart_chain_hash`` function (registered by
    :class:`AuditLog`). ``postgres``: one ``%s`` (a ``list[str]`` of bodies); a data-modifying
    statement that may be a CTE of a larger statement; the trigger chains each row.
    """
    if dialect == "sqlite":
        from stalwart.governance._db_sqlite import CHAIN_INSERT

        return CHAIN_INSERT
    if dialect == "postgres":
        from stalwart.governance._db_postgres import CHAIN_INSERT

        return CHAIN_INSERT
    raise ValueError(f"unknown dialect {dialect!r}")
