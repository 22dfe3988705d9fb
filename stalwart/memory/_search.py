"""Vector search over ``memory_items``: sqlite-vec, pgvector, or exact search done by Stalwart.

* SQLite: the ``sqlite-vec`` extension is loaded into the store's connection when the interpreter
  allows extension loading and the package is installed; ``vec_distance_cosine`` then ranks in SQL.
* PostgreSQL: when the server offers the ``vector`` extension (``pg_available_extensions``) it is
  created, a ``vec vector`` column is added and ``<=>`` ranks in SQL.
* Otherwise the candidates (one org and user, live, same embedder) are ranked exactly in Python.

:attr:`VectorIndex.backend` says which one is in use; every recall reports it.
"""

from __future__ import annotations

import logging
import math
from array import array
from dataclasses import dataclass
from typing import Any

from stalwart.store._sql import SqlRunner

__all__ = ["Hit", "VectorIndex", "from_blob", "to_blob"]

_log = logging.getLogger("stalwart.memory")

COLUMNS = "id, org, user_id, tier, kind, text, run_id, created_at, expires_at"


def to_blob(vector: list[float]) -> bytes:
    """float32, little-endian (sqlite-vec's blob format)."""
    a = array("f", vector)
    if a.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte floats
        raise RuntimeError("float32 arrays are required")
    import sys

    if sys.byteorder != "little":  # pragma: no cover
        a.byteswap()
    return a.tobytes()


def from_blob(blob: bytes) -> array:
    a = array("f")
    a.frombytes(bytes(blob))
    import sys

    if sys.byteorder != "little":  # pragma: no cover
        a.byteswap()
    return a


@dataclass(frozen=True, slots=True)
class Hit:
    row: tuple[Any, ...]
    score: float
    """Cosine similarity, 1.0 = same direction."""


class VectorIndex:
    """Picks and runs the search backend for one store."""

    def __init__(self, store: Any) -> None:
        self.sql = SqlRunner(store)
        self.backend: str = "exact"
        self.reason: str = "not opened yet"
        self._opened = False

    async def open(self) -> str:
        """Detect the backend (once) and return its name."""
        if self._opened:
            return self.backend
        self._opened = True
        if self.sql.dialect == "sqlite":
            self._open_sqlite()
        else:
            await self._open_postgres()
        _log.info("memory search backend: %s (%s)", self.backend, self.reason)
        return self.backend

    def _open_sqlite(self) -> None:
        conn = self.sql.sqlite_connection()
        if not hasattr(conn, "enable_load_extension"):
            self.reason = "this Python's sqlite3 cannot load extensions, so sqlite-vec is not loaded"
            return
        try:
            import sqlite_vec
        except ImportError:
            self.reason = "the sqlite-vec package is not installed (pip install 'stalwart[memory]')"
            return
        try:
            with self.sql.store._lock:
                conn.enable_load_extension(True)
                try:
                    sqlite_vec.load(conn)
                finally:
                    conn.enable_load_extension(False)
                version = conn.execute("SELECT vec_version()").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - any failure to load means: search exactly instead
            self.reason = f"sqlite-vec failed to load ({exc})"
            return
        self.backend, self.reason = "sqlite-vec", f"sqlite-vec {version} loaded into the store's connection"

    async def _open_postgres(self) -> None:
        rows = await self.sql.fetch("SELECT 1 FROM pg_available_extensions WHERE name='vector'")
        if not rows:
            self.reason = "the PostgreSQL server does not offer the pgvector extension (apt: postgresql-NN-pgvector)"
            return
        try:
            await self.sql.execute_raw("CREATE EXTENSION IF NOT EXISTS vector")
            await self.sql.execute_raw("ALTER TABLE memory_items ADD COLUMN IF NOT EXISTS vec vector")
        except Exception as exc:  # noqa: BLE001 - no privilege to create it: search exactly instead
            self.reason = f"pgvector is available but could not be enabled ({exc})"
            return
        self.backend, self.reason = "pgvector", "pgvector extension enabled on the server"

    # -- writes ----------------------------------------------------------------------------------
    def insert_sql(self) -> tuple[str, str]:
        """(``INSERT ... ON CONFLICT`` statement, how to pass the vector) for this backend."""
        cols = "id, org, user_id, tier, kind, text, run_id, content_hash, embedder, dims, embedding, created_at, expires_at"
        marks = "?,?,?,?,?,?,?,?,?,?,?,?,?"
        if self.backend == "pgvector":
            cols += ", vec"
            marks += ", CAST(? AS vector)"
        # Remembering the same text again extends its TTL and re-embeds it with the current embedder.
        sql = (
            f"INSERT INTO memory_items ({cols}) VALUES ({marks}) ON CONFLICT (org, user_id, tier, content_hash) "
            "DO UPDATE SET expires_at = CASE WHEN excluded.expires_at > memory_items.expires_at "
            "THEN excluded.expires_at ELSE memory_items.expires_at END, kind = excluded.kind, "
            "embedder = excluded.embedder, dims = excluded.dims, embedding = excluded.embedding"
            + (", vec = excluded.vec" if self.backend == "pgvector" else "")
        )
        return sql, "pgvector" if self.backend == "pgvector" else "blob"

    # -- search ----------------------------------------------------------------------------------
    async def search(
        self,
        vector: list[float],
        *,
        org: str,
        user: str,
        embedder: str,
        now: float,
        k: int,
        tier: str | None,
    ) -> list[Hit]:
        where = "org=? AND user_id=? AND embedder=? AND expires_at>?"
        params: list[Any] = [org, user, embedder, now]
        if tier is not None:
            where += " AND tier=?"
            params.append(tier)
        if self.backend == "sqlite-vec":
            rows = await self.sql.fetch(
                f"SELECT {COLUMNS}, vec_distance_cosine(embedding, ?) AS d FROM memory_items WHERE {where} "
                "ORDER BY d LIMIT ?",
                [to_blob(vector), *params, k],
            )
            return [Hit(r[:-1], 1.0 - float(r[-1])) for r in rows]
        if self.backend == "pgvector":
            pg_where = where.replace("?", "%s")
            rows = await self.sql.fetch_raw(
                f"SELECT {COLUMNS}, vec <=> %s::vector AS d FROM memory_items WHERE {pg_where} "
                "AND vec IS NOT NULL ORDER BY d LIMIT %s",
                [_pg_vector(vector), *params, k],
            )
            return [Hit(r[:-1], 1.0 - float(r[-1])) for r in rows]
        rows = await self.sql.fetch(f"SELECT {COLUMNS}, embedding FROM memory_items WHERE {where}", params)
        scores = _cosines(vector, [r[-1] for r in rows])
        hits = sorted((Hit(r[:-1], s) for r, s in zip(rows, scores, strict=True)), key=lambda h: -h.score)
        return hits[:k]


def _cosines(query: list[float], blobs: list[bytes]) -> list[float]:
    """Exact cosine similarity of ``query`` with each stored vector (numpy when installed)."""
    if not blobs:
        return []
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with scipy, a runtime dependency
        qn = math.sqrt(sum(x * x for x in query)) or 1.0
        out = []
        for b in blobs:
            v = from_blob(b)
            vn = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append(sum(a * c for a, c in zip(query, v, strict=False)) / (qn * vn))
        return out
    q = np.asarray(query, dtype=np.float32)
    m = np.frombuffer(b"".join(bytes(b) for b in blobs), dtype="<f4").reshape(len(blobs), -1)
    norms = np.linalg.norm(m, axis=1) * (float(np.linalg.norm(q)) or 1.0)
    norms[norms == 0] = 1.0
    return [float(x) for x in (m @ q) / norms]


def _pg_vector(vector: list[float]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
