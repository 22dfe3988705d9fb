"""The raw floor: one INSERT+COMMIT per step, nothing else.

sqlite3: WAL + synchronous=NORMAL, one connection, explicit BEGIN/INSERT/COMMIT per step.
psycopg: autocommit, each INSERT is its own transaction; sync ``psycopg.Connection`` (the true floor),
or with variant ``async`` an ``AsyncConnection`` from a pool of 16 (what an asyncio engine pays).

Workload ``conc`` is an equivalent, not the same thing: 1,000 "runs" of 10 steps as asyncio tasks
under a semaphore of 100, each step an awaited trivial coroutine and then its INSERT+COMMIT.
sqlite3 has one writer, so its tasks share one connection (its runs/s is the seq figure plus asyncio
overhead); psycopg uses an AsyncConnectionPool of 16 (Stalwart's default pool size).
"""

from __future__ import annotations

import asyncio
import sqlite3

from _common import CONCURRENCY, STEPS, WARMUP, Timer, parse_args, report

DDL_SQLITE = "CREATE TABLE IF NOT EXISTS journal (run_id INTEGER, seq INTEGER, output TEXT, PRIMARY KEY (run_id, seq))"
DDL_PG = "CREATE TABLE IF NOT EXISTS journal (run_id BIGINT, seq INT, output TEXT, PRIMARY KEY (run_id, seq))"


async def triv(i: int) -> int:
    return i


def sqlite_seq(path: str, runs: int) -> tuple[float, list[int]]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(DDL_SQLITE)

    def one(run: int) -> int:
        for s in range(STEPS):
            db.execute("BEGIN")
            db.execute("INSERT INTO journal VALUES (?,?,?)", (run, s, str(s)))
            db.execute("COMMIT")
        return run

    for i in range(WARMUP):
        one(-1 - i)
    with Timer() as t:
        results = [one(i) for i in range(runs)]
    db.close()
    return t.seconds, results


async def sqlite_conc(path: str, runs: int) -> tuple[float, list[int]]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(DDL_SQLITE)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(run: int) -> int:
        async with sem:
            for s in range(STEPS):
                out = await triv(s)
                db.execute("BEGIN")
                db.execute("INSERT INTO journal VALUES (?,?,?)", (run, s, str(out)))
                db.execute("COMMIT")
            return run

    for i in range(WARMUP):
        await one(-1 - i)
    with Timer() as t:
        results = await asyncio.gather(*(one(i) for i in range(runs)))
    db.close()
    return t.seconds, list(results)


def pg_seq(url: str, runs: int) -> tuple[float, list[int]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DDL_PG)

        def one(run: int) -> int:
            for s in range(STEPS):
                conn.execute("INSERT INTO journal VALUES (%s,%s,%s)", (run, s, str(s)))
            return run

        for i in range(WARMUP):
            one(-1 - i)
        with Timer() as t:
            results = [one(i) for i in range(runs)]
    return t.seconds, results


async def pg_conc(url: str, runs: int) -> tuple[float, list[int]]:
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(url, min_size=16, max_size=16, kwargs={"autocommit": True}, open=False) as pool:
        await pool.wait()
        async with pool.connection() as c:
            await c.execute(DDL_PG)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(run: int) -> int:
            async with sem:
                for s in range(STEPS):
                    out = await triv(s)
                    async with pool.connection() as c:
                        await c.execute("INSERT INTO journal VALUES (%s,%s,%s)", (run, s, str(out)))
                return run

        for i in range(WARMUP):
            await one(-1 - i)
        with Timer() as t:
            results = await asyncio.gather(*(one(i) for i in range(runs)))
    return t.seconds, list(results)


async def pg_seq_async(url: str, runs: int) -> tuple[float, list[int]]:
    """The floor as an asyncio program pays it: psycopg's AsyncConnection through a pool of 16."""
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(url, min_size=16, max_size=16, kwargs={"autocommit": True}, open=False) as pool:
        await pool.wait()
        async with pool.connection() as c:
            await c.execute(DDL_PG)

        async def one(run: int) -> int:
            for s in range(STEPS):
                out = await triv(s)
                async with pool.connection() as c:
                    await c.execute("INSERT INTO journal VALUES (%s,%s,%s)", (run, s, str(out)))
            return run

        for i in range(WARMUP):
            await one(-1 - i)
        with Timer() as t:
            results = [await one(i) for i in range(runs)]
    return t.seconds, results


def main() -> None:
    args = parse_args()
    expected = list(range(args.runs))
    if args.backend == "sqlite":
        path = args.url[len("sqlite:///"):]
        if args.workload == "seq":
            secs, res = sqlite_seq(path, args.runs)
        else:
            secs, res = asyncio.run(sqlite_conc(path, args.runs))
    else:
        if args.workload == "seq" and args.variant == "async":
            secs, res = asyncio.run(pg_seq_async(args.url, args.runs))
        elif args.workload == "seq":
            secs, res = pg_seq(args.url, args.runs)
        else:
            secs, res = asyncio.run(pg_conc(args.url, args.runs))
    report(args, secs, res, expected, note=args.variant or "sync" if args.backend == "postgres" else "")


if __name__ == "__main__":
    main()
