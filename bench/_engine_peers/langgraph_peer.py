"""LangGraph: the same 10-step workflow with the functional API, which is the closest equivalent of
a durable workflow of steps: an ``@entrypoint`` (with a checkpointer) that calls 10 ``@task``s; each
task's result is saved to the checkpointer and is replayed, not re-run, when the thread resumes.
Every run is its own ``thread_id``. ``durability="sync"`` so each write is persisted before the
next step starts, as in the other systems (LangGraph's default ``"async"`` overlaps them).

Variant ``graph``: a ``StateGraph`` of 10 trivial nodes in a chain (one checkpoint per super-step).

seq: the synchronous savers (``SqliteSaver`` / ``PostgresSaver``) with ``invoke``, their fastest path.
conc: the async savers (``AsyncSqliteSaver`` / ``AsyncPostgresSaver`` on an ``AsyncConnectionPool``
of 16, Stalwart's default pool size) with ``asyncio.gather`` over ``ainvoke`` under a semaphore of 100.
Both SQLite connections get WAL + synchronous=NORMAL, like Stalwart's.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from typing import Annotated, Any, TypedDict

from _common import CONCURRENCY, STEPS, WARMUP, Timer, parse_args, report, sqlite_path
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph


def build_func(checkpointer: Any, is_async: bool) -> Any:
    if is_async:

        @task
        async def triv(i: int) -> int:
            return i

        @entrypoint(checkpointer=checkpointer)
        async def t10(x: int) -> int:
            for i in range(STEPS):
                await triv(i)
            return x

    else:

        @task
        def triv(i: int) -> int:  # type: ignore[no-redef]
            return i

        @entrypoint(checkpointer=checkpointer)
        def t10(x: int) -> int:  # type: ignore[no-redef]
            for i in range(STEPS):
                triv(i).result()
            return x

    return t10


class State(TypedDict):
    x: int
    done: Annotated[list[int], operator.add]


def build_graph(checkpointer: Any, is_async: bool) -> Any:
    g = StateGraph(State)
    prev = START
    for i in range(STEPS):
        if is_async:

            async def node(state: State, i: int = i) -> dict[str, Any]:
                return {"done": [i]}
        else:

            def node(state: State, i: int = i) -> dict[str, Any]:  # type: ignore[misc]
                return {"done": [i]}

        g.add_node(f"s{i}", node)
        g.add_edge(prev, f"s{i}")
        prev = f"s{i}"
    g.add_edge(prev, END)
    compiled = g.compile(checkpointer=checkpointer)

    class Wrapped:
        def invoke(self, x: int, config: Any, durability: str) -> int:
            return compiled.invoke({"x": x, "done": []}, config, durability=durability)["x"]

        async def ainvoke(self, x: int, config: Any, durability: str) -> int:
            return (await compiled.ainvoke({"x": x, "done": []}, config, durability=durability))["x"]

    return Wrapped()


def cfg(i: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": f"run-{i}"}}


def run_seq(args: Any, saver: Any) -> tuple[float, list[int]]:
    wf = (build_graph if args.variant == "graph" else build_func)(saver, False)
    for i in range(WARMUP):
        wf.invoke(-1 - i, cfg(-1 - i), durability="sync")
    results = []
    with Timer() as t:
        for i in range(args.runs):
            results.append(wf.invoke(i, cfg(i), durability="sync"))
    return t.seconds, results


async def run_conc(args: Any, saver: Any) -> tuple[float, list[int]]:
    wf = (build_graph if args.variant == "graph" else build_func)(saver, True)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> int:
        async with sem:
            return await wf.ainvoke(i, cfg(i), durability="sync")

    for i in range(WARMUP):
        await one(-1 - i)
    with Timer() as t:
        results = await asyncio.gather(*(one(i) for i in range(args.runs)))
    return t.seconds, list(results)


def main() -> None:
    args = parse_args()
    expected = list(range(args.runs))
    if args.backend == "sqlite":
        path = sqlite_path(args.url)
        if args.workload == "seq":
            from langgraph.checkpoint.sqlite import SqliteSaver

            conn = sqlite3.connect(path, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            saver = SqliteSaver(conn)
            saver.setup()
            secs, res = run_seq(args, saver)
            conn.close()
        else:

            async def go() -> tuple[float, list[int]]:
                import aiosqlite
                from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

                async with aiosqlite.connect(path) as conn:
                    await conn.execute("PRAGMA journal_mode=WAL")
                    await conn.execute("PRAGMA synchronous=NORMAL")
                    saver = AsyncSqliteSaver(conn)
                    await saver.setup()
                    return await run_conc(args, saver)

            secs, res = asyncio.run(go())
    else:
        from psycopg.rows import dict_row

        kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        if args.workload == "seq":
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver

            with psycopg.connect(args.url, **kwargs) as conn:
                saver = PostgresSaver(conn)
                saver.setup()
                secs, res = run_seq(args, saver)
        else:

            async def go() -> tuple[float, list[int]]:
                from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
                from psycopg_pool import AsyncConnectionPool

                async with AsyncConnectionPool(args.url, min_size=16, max_size=16, kwargs=kwargs,
                                               open=False) as pool:
                    await pool.wait()
                    saver = AsyncPostgresSaver(pool)
                    await saver.setup()
                    return await run_conc(args, saver)

            secs, res = asyncio.run(go())
    report(args, secs, res, expected, note=args.variant or "functional")


if __name__ == "__main__":
    main()
