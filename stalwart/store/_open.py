"""Opening a store from a URL, with retries when the database is not up yet."""

from __future__ import annotations

import asyncio
import logging
import random

from stalwart.errors import StoreUnavailable
from stalwart.store._protocol import Store
from stalwart.store._url import parse_db_url

__all__ = ["open_store"]

_log = logging.getLogger("stalwart.store")


async def open_store(
    url: str,
    *,
    migrate: bool = False,
    attempts: int = 5,
    backoff_s: float = 0.5,
    pool_max: int = 16,
) -> Store:
    """Connect to ``url`` (see :func:`parse_db_url`), retrying with jittered backoff.

    After ``attempts`` failures it raises :class:`StoreUnavailable` naming the URL without its
    password. With ``migrate=True`` pending migrations are applied.
    """
    parsed = parse_db_url(url)
    if parsed.kind == "sqlite":
        from stalwart.store._sqlite import SqliteStore

        transient: tuple[type[BaseException], ...] = (StoreUnavailable, OSError)
    else:
        import psycopg
        import psycopg_pool

        from stalwart.store._postgres import PostgresStore

        transient = (StoreUnavailable, OSError, psycopg.OperationalError, psycopg_pool.PoolTimeout)
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            store: Store
            if parsed.kind == "sqlite":
                assert parsed.path is not None
                store = SqliteStore(parsed.path, safe_url=parsed.safe)
            else:
                pg = PostgresStore(parsed.raw, safe_url=parsed.safe, max_size=pool_max)
                await asyncio.to_thread(pg.ping_sync)
                await pg.open()
                store = pg
            if migrate:
                await store.migrate()
            return store
        except transient as exc:
            last = exc
        if attempt < attempts:
            delay = random.uniform(0, backoff_s * 2 ** (attempt - 1))
            _log.warning("database %s not reachable (attempt %d/%d): %s", parsed.safe, attempt, attempts, last)
            await asyncio.sleep(delay)
    reason = str(last).replace(parsed.raw, parsed.safe) if last else "unknown error"
    raise StoreUnavailable(
        f"cannot reach the database at {parsed.safe} after {attempts} attempts: {reason}"
    ) from None
